"""Linear probe: multinomial logistic regression on standardized features.

The usual way to read out a frozen embedding. The inverse regularisation C is tuned on
a small grid, ``C ∈ {0.01, 0.1, 1, 10}``, by the same rule as the other classifiers
(:mod:`fewshot.classifiers._tuning`: validation split, else leave-one-out / stratified
inner CV, never the test fold); with a single example in some class the fixed default is
C = 1 (scikit-learn's). Within one fold the Cs are fitted from small to large with warm
starts (lbfgs), which changes the path, not the optimum.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval

from ..exceptions import ParameterError
from ._tuning import TunedClassifier, fit_scaler

__all__ = ["LogRegClassifier", "LOGREG_CS"]

LOGREG_CS = (0.01, 0.1, 1.0, 10.0)


class LogRegClassifier(TunedClassifier):
    """Multinomial logistic regression (L2, lbfgs) that tunes C.

    Parameters
    ----------
    Cs : tuple of float, default=(0.01, 0.1, 1, 10)
        Inverse regularisation strengths to choose from (one value: no tuning).
    max_iter : int, default=1000
    random_state : int or None, default=None
        Seed of the shuffled inner folds (None = 0).
    loo_max : int, default=50
        Leave-one-out inner CV up to this many training clips.

    Attributes
    ----------
    classes_, best_params_ (``{"C": c}``), cv_scores_, candidates_, tuning_
        As :class:`~fewshot.classifiers.svm.SVMClassifier`.
    scaler_ : StandardScaler
    model_ : LogisticRegression
    n_iter_ : np.ndarray
        lbfgs iterations of the final fit.
    """

    _parameter_constraints = {
        "Cs": [tuple, list],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": [Integral, None],
        "loo_max": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, Cs=LOGREG_CS, *, max_iter=1000, random_state=None, loo_max=50):
        self.Cs = Cs
        self.max_iter = max_iter
        self.random_state = random_state
        self.loo_max = loo_max

    def _check_params(self) -> None:
        if not self.Cs or any(not isinstance(c, Real) or c <= 0 for c in self.Cs):
            raise ParameterError(f"Cs must be a non-empty tuple of positive floats; got {self.Cs!r}")

    def _candidates(self, n_features: int) -> list[dict]:
        return [{"C": float(c)} for c in self.Cs]

    def _default_params(self, n_features: int) -> dict:
        return {"C": 1.0}

    def _model(self, C: float, warm_start: bool = False) -> LogisticRegression:
        return LogisticRegression(C=C, max_iter=self.max_iter, warm_start=warm_start)

    def _score(self, X_train, y_train, X_test, y_test, candidates) -> np.ndarray:
        scaler = fit_scaler(X_train)
        A, B = scaler.transform(X_train), scaler.transform(X_test)
        scores = np.empty(len(candidates))
        model = self._model(1.0, warm_start=True)
        for i in sorted(range(len(candidates)), key=lambda j: candidates[j]["C"]):
            model.set_params(C=candidates[i]["C"]).fit(A, y_train)
            scores[i] = np.mean(model.predict(B) == y_test)
        return scores

    def _fit_final(self, X, y, params) -> None:
        self.scaler_ = fit_scaler(X)
        self.model_ = self._model(params["C"]).fit(self.scaler_.transform(X), y)
        self.n_iter_ = self.model_.n_iter_

    def _decision(self, X) -> np.ndarray:
        return self.model_.decision_function(self.scaler_.transform(X))

    def predict_proba(self, X):
        """Class probabilities [shape=(n_samples, n_classes)]."""
        X = self._validated(X)
        return self.model_.predict_proba(self.scaler_.transform(X))
