"""Extreme Learning Machine with the reference hidden-size grid, fast by construction.

An ELM [#]_ draws a random hidden layer ``H = relu(X·W + b)`` (``W``, ``b`` i.i.d. N(0, 1),
as elmarc's ``RandomLayer``, pons-code-facts A6) and fits only the output weights by least
squares on one-hot targets; prediction is the argmax of ``H·W₂``. (The reference used ±1
targets; the solution is linear in the targets and the all-ones part adds the same value
to every class, so the argmax is the same.)

Differences from the reference, on purpose:

- **Standardized inputs** (training statistics). elmarc fed raw features to N(0, 1) weights
  (C-A5), which makes the result depend on the feature scale.
- **Ridge by default.** ``W₂ = (HᵀH + λI)⁻¹ HᵀT`` with ``λ = alpha · mean_j ‖H[:, j]‖²``
  (relative to the mean diagonal of ``HᵀH``, so alpha means the same whatever the feature
  scale or the number of clips; default ``alpha=1e-2``). The plain
  pseudo-inverse (``solver="pinv"``, cut-off ``max(n, h)·eps·σ_max`` as ``scipy.linalg.pinv``)
  interpolates the training set and collapses towards chance when h ≈ n_train; the
  reference's ``pinv2`` had only its cut-off as regulariser. Measured on two 4-class
  toy problems (100 training clips, 30 features, 300 test clips), test accuracy at
  h = 100 = n_train: pinv 0.26 / 0.24, alpha 1e-3: 0.39 / 0.37, alpha 1e-2: 0.49 / 0.48,
  alpha 1e-1: 0.56 / 0.56; at h = 400 and 2,500 alpha ≤ 1e-2 changes nothing (0.53–0.64).
  alpha is not tuned (the grid is the reference's hidden sizes).
- **One random layer per fit**, drawn from ``numpy_rng(random_state, "elm", ...)`` and shared
  by every inner fold and the final model, so the chosen h is the one validated
  (elmarc re-drew it for the final fit, C-A4). With a validation split the final model is
  the selected one itself (same units, same training part), kept rather than recomputed.

Why it is fast: the hidden sizes are nested (size h uses the first h units of one
projection; the N(0, 1) draws are sequential, so ``ELMClassifier(n_hidden=h)`` draws exactly
those units), so one projection serves all sizes. Ridge solves share one Gram matrix: for
h ≤ n the normal equations use leading blocks of ``HᵀH``; for h > n the dual form uses
``H_h·H_hᵀ`` (n × n), accumulated size after size. Each size then costs one small Cholesky.

References
----------
.. [#] G.-B. Huang, Q.-Y. Zhu, C.-K. Siew, "Extreme learning machine: theory and
   applications", Neurocomputing 70, 2006.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.linalg
import scipy.special
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ..exceptions import ParameterError
from ..seeds import numpy_rng
from ._backend import Backend
from ._tuning import TunedClassifier, fit_scaler, resolve_seed

__all__ = ["ELMClassifier", "PlainELMGrid", "HIDDEN_SIZES", "ridge_lambda", "nested_output_weights"]

HIDDEN_SIZES = (100, 250, 500, 1200, 1800, 2500)
_ACTIVATIONS = {
    "relu": lambda a: np.maximum(a, 0.0),
    "tanh": np.tanh,
    "sigmoid": scipy.special.expit,
}
_LAMBDA_FLOOR = 1e-10


def draw_projection(seed: int | None, n_features: int, n_hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """N(0, 1) input weights [shape=(n_features, n_hidden)] and biases [shape=(n_hidden,)].

    Row ``j`` of the draw is hidden unit ``j``; sequential draws make the first h units of a
    larger draw identical to a draw of h units.
    """
    s = resolve_seed(seed)
    weights = numpy_rng(s, "elm", "input_weights").standard_normal((n_hidden, n_features)).T
    biases = numpy_rng(s, "elm", "biases").standard_normal(n_hidden)
    return weights, biases


def ridge_lambda(col_sq_norm_sum: float, h: int, alpha: float) -> float:
    """λ = alpha · (sum of the h squared column norms) / h, floored at 1e-10."""
    return max(alpha * float(col_sq_norm_sum) / h, _LAMBDA_FLOOR)


def nested_output_weights(H, T, sizes, *, alpha: float, solver: str, xp: Backend | None = None) -> dict:
    """Output weights for every hidden size in ``sizes``, size h using ``H[:, :h]``.

    Parameters
    ----------
    H : np.ndarray or torch.Tensor [shape=(n, max(sizes))]
        Hidden activations of the training part (float64, on ``xp``'s device).
    T : np.ndarray or torch.Tensor [shape=(n, n_classes)]
        One-hot targets.
    sizes : iterable of int
    alpha : float
        Relative ridge (see :func:`ridge_lambda`); used when ``solver="ridge"``.
    solver : {"ridge", "pinv"}
    xp : Backend, optional
        Array backend of ``H`` (default: numpy on the CPU).

    Returns
    -------
    dict h → array [shape=(h, n_classes)]
    """
    xp = xp or Backend("cpu")
    n = H.shape[0]
    sizes = sorted(set(int(h) for h in sizes))
    out: dict = {}
    if solver == "pinv":
        eps = np.finfo(np.float64).eps
        for h in sizes:
            out[h] = xp.pinv(H[:, :h], max(n, h) * eps) @ T
        return out
    csum = (H * H).sum(0).cumsum(0)
    primal = [h for h in sizes if h <= n]
    dual = [h for h in sizes if h > n]
    if primal:  # normal equations on leading blocks of one Gram matrix
        p = primal[-1]
        G = H[:, :p].T @ H[:, :p]
        R = H[:, :p].T @ T
        eye = xp.eye(p)
        for h in primal:
            lam = ridge_lambda(csum[h - 1], h, alpha)
            out[h] = xp.spd_solve(G[:h, :h] + lam * eye[:h, :h], R[:h])
    if dual:  # dual form: H_h·H_hᵀ accumulated size after size
        K = xp.zeros(n, n)
        eye = xp.eye(n)
        done = 0
        for h in dual:
            K += H[:, done:h] @ H[:, done:h].T
            done = h
            lam = ridge_lambda(csum[h - 1], h, alpha)
            out[h] = H[:, :h].T @ xp.spd_solve(K + lam * eye, T)
    return out


class ELMClassifier(TunedClassifier):
    """Extreme Learning Machine that tunes its number of hidden units.

    Parameters
    ----------
    n_hidden : int or tuple of int, default=(100, 250, 500, 1200, 1800, 2500)
        Hidden sizes to choose from (an int fixes the size: no tuning).
    activation : {"relu", "tanh", "sigmoid"}, default="relu"
    alpha : float, default=1e-2
        Relative ridge: λ = alpha · mean squared norm of a hidden unit's activations.
    solver : {"ridge", "pinv"}, default="ridge"
        ``"pinv"`` is the reference's plain pseudo-inverse (no ridge).
    random_state : int or None, default=None
        Seed of the random hidden layer and of the inner folds (None = 0).
    device : str, default="cpu"
        Torch device of the projection and solves.
    loo_max : int, default=50
        Leave-one-out inner CV up to this many training clips.

    Attributes
    ----------
    classes_, best_params_ (``{"n_hidden": h}``), cv_scores_, candidates_, tuning_
        As :class:`~fewshot.classifiers.svm.SVMClassifier`.
    scaler_ : StandardScaler
    input_weights_ : np.ndarray [shape=(n_features, h)]
    biases_ : np.ndarray [shape=(h,)]
    output_weights_ : np.ndarray [shape=(h, n_classes)]

    Notes
    -----
    Fixed default when some class has one example: the smallest size (100 by default).
    """

    _parameter_constraints = {
        "n_hidden": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "solver": [StrOptions({"ridge", "pinv"})],
        "random_state": [Integral, None],
        "device": [str, torch.device],
        "loo_max": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(
        self,
        n_hidden=HIDDEN_SIZES,
        *,
        activation="relu",
        alpha=1e-2,
        solver="ridge",
        random_state=None,
        device="cpu",
        loo_max=50,
    ):
        self.n_hidden = n_hidden
        self.activation = activation
        self.alpha = alpha
        self.solver = solver
        self.random_state = random_state
        self.device = device
        self.loo_max = loo_max

    def _sizes(self) -> list[int]:
        return [self.n_hidden] if isinstance(self.n_hidden, Integral) else [int(h) for h in self.n_hidden]

    def _check_params(self) -> None:
        sizes = self.n_hidden if not isinstance(self.n_hidden, Integral) else [self.n_hidden]
        if not sizes or any(not isinstance(h, Integral) or h < 1 for h in sizes):
            raise ParameterError(f"n_hidden must be a positive int or a tuple of them; got {self.n_hidden!r}")

    def _candidates(self, n_features: int) -> list[dict]:
        return [{"n_hidden": h} for h in self._sizes()]

    def _default_params(self, n_features: int) -> dict:
        return {"n_hidden": min(self._sizes())}

    def _prepare(self, X, y) -> None:
        self._W, self._b = draw_projection(self.random_state, X.shape[1], max(self._sizes()))

    def _hidden(self, A: np.ndarray, W: np.ndarray, b: np.ndarray, xp: Backend):
        return xp.activation(self.activation, xp.asarray(A) @ xp.asarray(W) + xp.asarray(b))

    def _score(self, X_train, y_train, X_test, y_test, candidates) -> np.ndarray:
        xp = Backend(self.device)
        scaler = fit_scaler(X_train)
        H = self._hidden(scaler.transform(X_train), self._W, self._b, xp)
        H_test = self._hidden(scaler.transform(X_test), self._W, self._b, xp)
        T = xp.asarray(np.eye(len(self.classes_))[y_train])
        sizes = [c["n_hidden"] for c in candidates]
        weights = nested_output_weights(H, T, sizes, alpha=self.alpha, solver=self.solver, xp=xp)
        self._reuse = (X_train, scaler, H, weights)  # a validation split's final fit is this one
        return np.array([np.mean(xp.numpy((H_test[:, :h] @ weights[h]).argmax(1)) == y_test) for h in sizes])

    def _fit_final(self, X, y, params) -> None:
        xp = Backend(self.device)
        h = params["n_hidden"]
        self.input_weights_, self.biases_ = self._W[:, :h].copy(), self._b[:h].copy()
        reuse = self.__dict__.pop("_reuse", None)
        del self._W, self._b
        if reuse is not None and reuse[0] is X and h in reuse[3]:  # same training part: same model
            self.scaler_, W2 = reuse[1], reuse[3][h]
        else:
            self.scaler_ = fit_scaler(X)
            H = self._hidden(self.scaler_.transform(X), self.input_weights_, self.biases_, xp)
            T = xp.asarray(np.eye(len(self.classes_))[y])
            W2 = nested_output_weights(H, T, [h], alpha=self.alpha, solver=self.solver, xp=xp)[h]
        self.output_weights_ = xp.numpy(W2)

    def _decision(self, X) -> np.ndarray:
        xp = Backend(self.device)
        H = self._hidden(self.scaler_.transform(X), self.input_weights_, self.biases_, xp)
        out = xp.numpy(H @ xp.asarray(self.output_weights_))
        return out[:, 1] - out[:, 0] if out.shape[1] == 2 else out


class PlainELMGrid(ELMClassifier):
    """The plain (slow) reference: a loop over hidden sizes, each with its own projection and solve.

    Same units (the same sequential draws), targets, λ and selection as
    :class:`ELMClassifier`, computed the textbook way in numpy/scipy: for every size,
    ``relu(A·W_h + b_h)`` and then ``solve(HᵀH + λI, HᵀT)`` or ``scipy.linalg.pinv(H)·T``.
    Used by the tests and ``scripts/bench_grids.py``; not registered.
    """

    def _score(self, X_train, y_train, X_test, y_test, candidates) -> np.ndarray:
        scaler = fit_scaler(X_train)
        A, B = scaler.transform(X_train), scaler.transform(X_test)
        T = np.eye(len(self.classes_))[y_train]
        scores = []
        for c in candidates:
            h = c["n_hidden"]
            W, b = draw_projection(self.random_state, A.shape[1], h)
            H = _ACTIVATIONS[self.activation](A @ W + b)
            H_test = _ACTIVATIONS[self.activation](B @ W + b)
            if self.solver == "pinv":
                W2 = scipy.linalg.pinv(H) @ T
            else:
                lam = ridge_lambda((H * H).sum(), h, self.alpha)
                W2 = np.linalg.solve(H.T @ H + lam * np.eye(h), H.T @ T)
            scores.append(np.mean(np.argmax(H_test @ W2, 1) == y_test))
        return np.array(scores)
