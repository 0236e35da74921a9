"""Hyper-parameter selection that never sees the test fold.

Every registered classifier tunes itself inside ``fit(X, y, *, X_val=None, y_val=None)``;
the test fold is never an argument, so it cannot influence the choice. The rule,
applied in this order:

1. **One candidate** (a fixed setting such as ``ELMClassifier(n_hidden=500)``): no tuning,
   ``tuning_ = "fixed"``.
2. **A validation split** (``X_val``, ``y_val``; GTZAN has one): every candidate is fitted on
   the training part and scored on the validation part; the final model is then fitted on
   the **training part only**, as the reference did (pons-code-facts C-A3).
   ``tuning_ = "validation"``.
3. **Inner cross-validation on the training data itself**, when every class has at least two
   examples: leave-one-out when ``n_samples <= loo_max`` (50 by default, i.e. up to 5 shots
   × 10 classes; every clip then serves once as inner test), otherwise stratified k-fold
   with ``k = min(5, smallest class count)``, folds shuffled with the seed
   ``derive_seed(random_state, "inner_folds")``. ``tuning_ = "loo"`` or ``"kfold"``.
4. **Some class has a single example** (n = 1): nothing can be held out, so each classifier
   uses fixed, documented defaults (svm: rbf, γ = 1/n_features, C = 2; elm: the smallest
   hidden size, 100; logreg: C = 1). ``tuning_ = "default"``.

Scores are accuracies, averaged over inner folds without weights (as ``GridSearchCV``).
Ties go to the **first** candidate in grid order whose mean is within ``1e-12`` of the best
(deterministic, immune to summation-order rounding). Features are standardized with the
statistics of each fit's own training part (inner folds included), never with held-out rows.

``random_state=None`` means seed 0: fits are reproducible, and no global RNG is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from ..exceptions import ParameterError
from ..seeds import derive_seed
from ._backend import blas_threads_for

__all__ = [
    "TIE_TOLERANCE",
    "TuningResult",
    "inner_splits",
    "first_best",
    "resolve_seed",
    "fit_scaler",
]

TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class TuningResult:
    """Outcome of :func:`select`: the chosen index (None = defaults), scores and mode."""

    index: int | None
    scores: np.ndarray | None
    mode: str


def resolve_seed(random_state: int | None) -> int:
    """``None`` → 0; an int is used as is (the project never touches a global RNG)."""
    return 0 if random_state is None else int(random_state)


def fit_scaler(X: np.ndarray) -> StandardScaler:
    """A ``StandardScaler`` fitted on ``X`` (the training part of one fit)."""
    return StandardScaler().fit(X)


def inner_splits(
    y: np.ndarray, *, random_state: int | None = None, loo_max: int = 50
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Inner cross-validation folds on the training labels ``y`` (encoded or not).

    Parameters
    ----------
    y : np.ndarray [shape=(n_samples,)]
        Training labels.
    random_state : int or None
        Seed of the shuffled stratified folds (None = 0).
    loo_max : int
        Leave-one-out when ``n_samples <= loo_max``.

    Returns
    -------
    list of (train_index, test_index) or None
        None when some class has a single example (no tuning possible).
    """
    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    n = len(y)
    if counts.min() < 2:
        return None
    if n <= loo_max:
        every = np.arange(n)
        return [(np.delete(every, i), np.array([i])) for i in range(n)]
    k = int(min(5, counts.min()))
    seed = derive_seed(resolve_seed(random_state), "inner_folds") % (2**32)
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in folds.split(np.zeros((n, 1)), y)]


def first_best(scores: np.ndarray) -> int:
    """Index of the first score within :data:`TIE_TOLERANCE` of the maximum."""
    scores = np.asarray(scores, dtype=np.float64)
    return int(np.flatnonzero(scores >= scores.max() - TIE_TOLERANCE)[0])


def fold_means(fold_scores: np.ndarray) -> np.ndarray:
    """Unweighted mean over folds of a (n_folds, n_candidates) array, as ``GridSearchCV``."""
    per_candidate = np.ascontiguousarray(np.asarray(fold_scores, dtype=np.float64).T)
    return np.average(per_candidate, axis=1)


def _validate_params(estimator: BaseEstimator) -> None:
    """Run scikit-learn's parameter validation, re-raised as :class:`ParameterError`."""
    try:
        estimator._validate_params()
    except ValueError as err:  # InvalidParameterError is a ValueError
        raise ParameterError(str(err)) from None


class TunedClassifier(ClassifierMixin, BaseEstimator):
    """Base of the self-tuning classifiers: label encoding, validation split, selection.

    Subclasses define ``_candidates(n_features)``, ``_default_params(n_features)``,
    ``_score(X_train, y_train, X_test, y_test, candidates) -> accuracies``,
    ``_fit_final(X, y, params)`` and ``_decision(X) -> scores``; optionally
    ``_prepare(X, y)`` (e.g. draw random weights) and ``_check_params()``.
    Labels inside these methods are encoded as ``0..n_classes-1``; held-out labels
    unseen in training are ``-1`` (always wrong).
    """

    def _prepare(self, X: np.ndarray, y: np.ndarray) -> None:
        """Hook run after validation and before tuning."""

    def _check_params(self) -> None:
        """Hook for checks that ``_parameter_constraints`` cannot express."""

    def _grid_scores(self, X, y, X_val, y_val, splits, candidates) -> np.ndarray:
        """Mean accuracy per candidate; the fast subclasses score all candidates per fold at once."""
        if splits is None:
            return np.asarray(self._score(X, y, X_val, y_val, candidates), dtype=np.float64)
        per_fold = [self._score(X[tr], y[tr], X[te], y[te], candidates) for tr, te in splits]
        return fold_means(np.asarray(per_fold, dtype=np.float64))

    def _select(self, X, y, X_val, y_val, candidates) -> TuningResult:
        if len(candidates) == 1:
            return TuningResult(0, None, "fixed")
        if X_val is not None:
            scores = self._grid_scores(X, y, X_val, y_val, None, candidates)
            return TuningResult(first_best(scores), scores, "validation")
        splits = inner_splits(y, random_state=self.random_state, loo_max=self.loo_max)
        if splits is None:
            return TuningResult(None, None, "default")
        scores = self._grid_scores(X, y, None, None, splits, candidates)
        mode = "loo" if len(splits) == len(y) and len(splits[0][1]) == 1 else "kfold"
        return TuningResult(first_best(scores), scores, mode)

    def fit(self, X, y, *, X_val=None, y_val=None):
        """Select hyper-parameters without the test fold, then fit the final model.

        Parameters
        ----------
        X : array-like [shape=(n_samples, n_features)]
            Training features.
        y : array-like [shape=(n_samples,)]
            Training labels (at least two classes).
        X_val, y_val : array-like or None
            Optional validation split used only for selection; the final model is fitted
            on ``X, y`` alone. Give both or neither.

        Returns
        -------
        self
        """
        _validate_params(self)
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ParameterError(
                f"y must hold at least 2 classes to fit a classifier; got 1 class ({self.classes_[0]!r})"
            )
        X_val, yv = self._check_validation(X, X_val, y_val)
        with blas_threads_for(len(X)):
            self._fit_tuned(X, y_enc, X_val, yv)
        return self

    def _fit_tuned(self, X, y_enc, X_val, yv) -> None:
        self._prepare(X, y_enc)
        candidates = self._candidates(X.shape[1])
        result = self._select(X, y_enc, X_val, yv, candidates)
        self.candidates_ = candidates
        self.cv_scores_ = result.scores
        self.tuning_ = result.mode
        if result.index is None:
            self.best_params_ = self._default_params(X.shape[1])
        else:
            self.best_params_ = dict(candidates[result.index])
        self._fit_final(X, y_enc, self.best_params_)

    def _check_validation(self, X, X_val, y_val):
        if (X_val is None) != (y_val is None):
            raise ParameterError("X_val and y_val must be given together; got only one of them")
        if X_val is None:
            return None, None
        X_val = check_array(X_val, dtype=np.float64)
        y_val = np.asarray(y_val).ravel()
        if X_val.shape[1] != X.shape[1]:
            raise ParameterError(f"X_val must have the training's {X.shape[1]} features; got {X_val.shape[1]}")
        if len(y_val) != len(X_val):
            raise ParameterError(f"y_val must have one label per X_val row ({len(X_val)}); got {len(y_val)}")
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        yv = np.array([index.get(v, -1) for v in y_val.tolist()], dtype=np.int64)  # unseen: -1
        return X_val, yv

    def _validated(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=np.float64)

    def decision_function(self, X):
        """Class scores [shape=(n_samples, n_classes)], or (n_samples,) for two classes."""
        X = self._validated(X)
        with blas_threads_for(len(X)):
            return self._decision(X)

    def predict(self, X):
        """Predicted labels [shape=(n_samples,)]."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(np.int64)]
        return self.classes_[np.argmax(scores, axis=1)]
