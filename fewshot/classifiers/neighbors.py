"""1-nearest-neighbour classifier with cosine distance (the few-data kNN baselines).

The reference kNN baselines (pons-code-facts B9: ``knn_audioset``, ``knn_mfcc``) use
1-NN with cosine distance on raw features. Here the features are standardized on the
training part by default, as every fewshot classifier (``standardize=False`` reproduces
the reference). There is nothing to tune. Ties (equal distances) go to the training row
that comes first.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..exceptions import ParameterError
from ._tuning import _validate_params, fit_scaler

__all__ = ["KNNClassifier"]


class KNNClassifier(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbour classifier, cosine or Euclidean, k = 1 by default.

    Parameters
    ----------
    n_neighbors : int, default=1
        Neighbours voting (ties between classes go to the class of the nearest voter).
    metric : {"cosine", "euclidean"}, default="cosine"
    standardize : bool, default=True
        Standardize features with training statistics before measuring distances.

    Attributes
    ----------
    classes_ : np.ndarray
    scaler_ : StandardScaler or None
    X_fit_ : np.ndarray [shape=(n_samples, n_features)]
        Training rows (standardized, and L2-normalized for cosine).
    y_fit_ : np.ndarray of int
        Encoded training labels.
    best_params_ : dict
        Always ``{"n_neighbors": k}`` (no tuning), for symmetry with the tuned classifiers.
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "metric": [StrOptions({"cosine", "euclidean"})],
        "standardize": ["boolean"],
    }

    def __init__(self, n_neighbors=1, *, metric="cosine", standardize=True):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.standardize = standardize

    def _rows(self, X: np.ndarray) -> np.ndarray:
        if self.scaler_ is not None:
            X = self.scaler_.transform(X)
        if self.metric == "cosine":
            norms = np.linalg.norm(X, axis=1, keepdims=True)
            X = X / np.where(norms > 0, norms, 1.0)
        return X

    def fit(self, X, y, *, X_val=None, y_val=None):
        """Store the (standardized) training rows.

        Parameters
        ----------
        X : array-like [shape=(n_samples, n_features)]
        y : array-like [shape=(n_samples,)]
        X_val, y_val : ignored
            Accepted so that every classifier is fitted the same way; there is nothing to tune.

        Returns
        -------
        self
        """
        _validate_params(self)
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, self.y_fit_ = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ParameterError(
                f"y must hold at least 2 classes to fit a classifier; got 1 class ({self.classes_[0]!r})"
            )
        self.scaler_ = fit_scaler(X) if self.standardize else None
        self.X_fit_ = self._rows(X)
        self.best_params_ = {"n_neighbors": self.n_neighbors}
        return self

    def _distances(self, X) -> np.ndarray:
        check_is_fitted(self)
        Q = self._rows(validate_data(self, X, reset=False, dtype=np.float64))
        if self.metric == "cosine":
            return 1.0 - Q @ self.X_fit_.T
        sq = (Q * Q).sum(1)[:, None] + (self.X_fit_ * self.X_fit_).sum(1)[None, :] - 2.0 * Q @ self.X_fit_.T
        return np.maximum(sq, 0.0)

    def predict(self, X):
        """Label of the nearest training row (majority of the k nearest when k > 1).

        Vote ties between classes go to the class of the nearest voter.
        """
        dist = self._distances(X)
        k = min(self.n_neighbors, dist.shape[1])
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        rows = np.arange(len(dist))
        votes = np.zeros((len(dist), len(self.classes_)))
        np.add.at(votes, (np.repeat(rows, k), self.y_fit_[order].ravel()), 1.0)
        votes[rows, self.y_fit_[order[:, 0]]] += 0.5
        return self.classes_[np.argmax(votes, axis=1)]
