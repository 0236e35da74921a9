"""Support vector machine with the reference grid, fast by construction.

The grid is Choi's, as elmarc used it (pons-code-facts A6): rbf with
γ ∈ {2⁻³, 2⁻⁵, 2⁻⁷, 2⁻⁹, 2⁻¹¹, 2⁻¹³, 1/n_features} × C ∈ {0.1, 2, 8, 32}, then the linear
kernel × the same C: 32 candidates, in that order (ties go to the first). Features are
standardized on each fit's training part (elmarc had no scaling, C-A5; Choi searched it).

Why it is fast: libsvm spends a direct rbf fit computing one kernel entry at a time, each a
3,500-long dot product. Here each (inner) fold computes one Gram matrix and one squared-distance
matrix (numpy on the CPU, torch on ``device`` otherwise, see ``_backend``), every γ costs one
``exp`` and every candidate
one ``SVC(kernel="precomputed")`` fit: 51× the plain grid at 1,000 × 3,500
(perf-baselines §3), same choices and accuracies (tests/test_classifiers.py).

Selection follows :mod:`fewshot.classifiers._tuning`; the reference tuned on the test folds
(C-A2), this never does.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils._param_validation import Interval

from ..exceptions import ParameterError
from ._backend import Backend
from ._tuning import TunedClassifier, fit_scaler

__all__ = ["SVMClassifier", "PlainSVMGrid", "svm_candidates", "GAMMAS", "CS"]

GAMMAS = (2.0**-3, 2.0**-5, 2.0**-7, 2.0**-9, 2.0**-11, 2.0**-13, "auto")
CS = (0.1, 2.0, 8.0, 32.0)


def svm_candidates(gammas, Cs, kernels, n_features: int) -> list[dict]:
    """Grid in order: rbf γ (outer) × C (inner), then linear × C. ``"auto"`` = 1/n_features."""
    out = []
    if "rbf" in kernels:
        for g in gammas:
            gamma = 1.0 / n_features if g == "auto" else float(g)
            out += [{"kernel": "rbf", "gamma": gamma, "C": float(C)} for C in Cs]
    if "linear" in kernels:
        out += [{"kernel": "linear", "C": float(C)} for C in Cs]
    return out


def _gram_and_distances(A: np.ndarray, B: np.ndarray | None, xp: Backend):
    """Linear kernel ``B·Aᵀ`` and squared distances ‖b−a‖² (float64, on ``xp``'s device).

    ``B=None`` means ``B = A`` (the training block; its diagonal distances are exactly 0).
    Distances use ‖b‖² + ‖a‖² − 2 b·a, as libsvm does, clamped at 0.
    """
    a = xp.asarray(A)
    b = a if B is None else xp.asarray(B)
    gram = b @ a.T
    na = (a * a).sum(1)
    nb = na if B is None else (b * b).sum(1)
    dist = nb[:, None] + na[None, :] - 2.0 * gram
    dist[dist < 0] = 0.0
    if B is None:
        idx = np.arange(len(A))
        dist[idx, idx] = 0.0
    return gram, dist


def _kernel(params: dict, gram, dist, xp: Backend) -> np.ndarray:
    return xp.numpy(gram if params["kernel"] == "linear" else xp.exp(-params["gamma"] * dist))


class SVMClassifier(TunedClassifier):
    """SVM (libsvm ``SVC``) that tunes kernel, γ and C on precomputed kernels.

    Parameters
    ----------
    gammas : tuple, default=(2⁻³, 2⁻⁵, 2⁻⁷, 2⁻⁹, 2⁻¹¹, 2⁻¹³, "auto")
        rbf widths; ``"auto"`` is 1/n_features.
    Cs : tuple of float, default=(0.1, 2, 8, 32)
        Regularisation constants, tried for every kernel.
    kernels : tuple of {"rbf", "linear"}, default=("rbf", "linear")
    random_state : int or None, default=None
        Seed of the shuffled inner folds (None = 0).
    device : str, default="cpu"
        Torch device of the Gram / distance matrices (libsvm itself runs on the CPU).
    loo_max : int, default=50
        Leave-one-out inner CV up to this many training clips.

    Attributes
    ----------
    classes_ : np.ndarray
    best_params_ : dict
        ``{"kernel", "gamma", "C"}`` of the final model.
    cv_scores_ : np.ndarray [shape=(n_candidates,)] or None
        Mean selection accuracy per candidate (None without tuning).
    candidates_ : list of dict
    tuning_ : str
        ``"validation"``, ``"loo"``, ``"kfold"``, ``"default"`` (n = 1) or ``"fixed"``.
    scaler_ : StandardScaler
        Fitted on the training part only.
    svc_ : SVC
        The final ``SVC(kernel="precomputed")``.
    support_vectors_ : np.ndarray
        Standardized training rows that are support vectors.

    Notes
    -----
    Fixed defaults when some class has one example: rbf, γ = 1/n_features, C = 2 (linear,
    C = 2 when ``kernels`` has no rbf). With one example per class and an rbf kernel, every
    pairwise SVM puts both clips at the bound, so C hardly matters.
    """

    _parameter_constraints = {
        "gammas": [tuple, list],
        "Cs": [tuple, list],
        "kernels": [tuple, list],
        "random_state": [Integral, None],
        "device": [str, torch.device],
        "loo_max": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, gammas=GAMMAS, Cs=CS, kernels=("rbf", "linear"), *, random_state=None, device="cpu", loo_max=50):
        self.gammas = gammas
        self.Cs = Cs
        self.kernels = kernels
        self.random_state = random_state
        self.device = device
        self.loo_max = loo_max

    def _check_params(self) -> None:
        bad = [k for k in self.kernels if k not in ("rbf", "linear")]
        if bad or not self.kernels:
            raise ParameterError(f"kernels must be a non-empty tuple of 'rbf', 'linear'; got {self.kernels!r}")
        for g in self.gammas:
            if not (g == "auto" or (isinstance(g, Real) and g > 0)):
                raise ParameterError(f"gammas must hold positive floats or 'auto'; got {g!r}")
        if "rbf" in self.kernels and not self.gammas:
            raise ParameterError("gammas must not be empty when kernels has 'rbf'")
        if not self.Cs or any(not isinstance(c, Real) or c <= 0 for c in self.Cs):
            raise ParameterError(f"Cs must be a non-empty tuple of positive floats; got {self.Cs!r}")

    def _candidates(self, n_features: int) -> list[dict]:
        return svm_candidates(self.gammas, self.Cs, self.kernels, n_features)

    def _default_params(self, n_features: int) -> dict:
        if "rbf" not in self.kernels:
            return {"kernel": "linear", "C": 2.0}
        return {"kernel": "rbf", "gamma": 1.0 / n_features, "C": 2.0}

    def _score(self, X_train, y_train, X_test, y_test, candidates) -> np.ndarray:
        scaler = fit_scaler(X_train)
        A, B = scaler.transform(X_train), scaler.transform(X_test)
        xp = Backend(self.device)
        g_tr, d_tr = _gram_and_distances(A, None, xp)
        g_te, d_te = _gram_and_distances(A, B, xp)
        scores = np.empty(len(candidates))
        cached_key, cached = None, None
        for i, params in enumerate(candidates):
            key = (params["kernel"], params.get("gamma"))
            if key != cached_key:  # one kernel per γ, shared by every C
                cached_key, cached = key, (_kernel(params, g_tr, d_tr, xp), _kernel(params, g_te, d_te, xp))
            svc = SVC(kernel="precomputed", C=params["C"]).fit(cached[0], y_train)
            scores[i] = np.mean(svc.predict(cached[1]) == y_test)
        return scores

    def _fit_final(self, X, y, params) -> None:
        self.scaler_ = fit_scaler(X)
        A = self.scaler_.transform(X)
        xp = Backend(self.device)
        gram, dist = _gram_and_distances(A, None, xp)
        self.svc_ = SVC(kernel="precomputed", C=params["C"]).fit(_kernel(params, gram, dist, xp), y)
        self.support_vectors_ = A[self.svc_.support_]
        self.n_fit_ = len(A)

    def _test_kernel(self, X) -> np.ndarray:
        """Kernel against the training rows; only support-vector columns are non-zero (unused)."""
        B = self.scaler_.transform(X)
        xp = Backend(self.device)
        gram, dist = _gram_and_distances(self.support_vectors_, B, xp)
        full = np.zeros((len(B), self.n_fit_))
        full[:, self.svc_.support_] = _kernel(self.best_params_, gram, dist, xp)
        return full

    def _decision(self, X) -> np.ndarray:
        return self.svc_.decision_function(self._test_kernel(X))

    def predict(self, X):
        """Predicted labels (libsvm's one-vs-one vote, as ``SVC.predict``)."""
        kernel = self._test_kernel(self._validated(X))
        return self.classes_[self.svc_.predict(kernel)]


class PlainSVMGrid(SVMClassifier):
    """The plain (slow) reference: ``GridSearchCV`` over ``make_pipeline(StandardScaler(), SVC())``.

    Same candidates, folds, selection rule and final fit on the training part as
    :class:`SVMClassifier`; every candidate refits libsvm on raw rows, computing its own
    kernel entries. Used by the tests and ``scripts/bench_grids.py``; not registered.
    """

    def _grid_scores(self, X, y, X_val, y_val, splits, candidates) -> np.ndarray:
        if splits is None:  # validation split: one predefined fold
            n = len(X)
            X = np.vstack([X, X_val])
            y = np.concatenate([y, y_val])
            splits = [(np.arange(n), np.arange(n, len(X)))]
        grid = [{f"svc__{k}": [v] for k, v in c.items()} for c in candidates]
        search = GridSearchCV(make_pipeline(StandardScaler(), SVC()), grid, scoring="accuracy", cv=splits, refit=False)
        search.fit(X, y)
        return np.asarray(search.cv_results_["mean_test_score"], dtype=np.float64)

    def _fit_final(self, X, y, params) -> None:
        self.pipeline_ = make_pipeline(StandardScaler(), SVC(**params)).fit(X, y)

    def _decision(self, X) -> np.ndarray:
        return self.pipeline_.decision_function(X)

    def predict(self, X):
        """Predicted labels of the final pipeline."""
        X = self._validated(X)
        return self.classes_[self.pipeline_.predict(X)]
