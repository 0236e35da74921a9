"""Feature-space classifiers: ``svm``, ``elm``, ``knn``, ``logreg``.

Every registered classifier is a scikit-learn estimator (``fit`` / ``predict`` /
``get_params``, ``classes_``) that tunes its own hyper-parameters inside
``fit(X, y, *, X_val=None, y_val=None)`` by the rule in :mod:`fewshot.classifiers._tuning`:
a validation split when given, otherwise inner cross-validation on the training data
(leave-one-out up to 50 clips), fixed defaults when a class has one example. The test fold
is never an argument. Features are standardized with training statistics only.

Examples
--------
>>> from fewshot.classifiers import create_classifier, list_classifiers
>>> list_classifiers()
['elm', 'knn', 'logreg', 'svm']
>>> create_classifier("elm", random_state=3, n_hidden=100)
ELMClassifier(n_hidden=100, random_state=3)
"""

from __future__ import annotations

import inspect

from .._registry import Registry
from ..exceptions import ParameterError
from ._tuning import inner_splits
from .elm import HIDDEN_SIZES, ELMClassifier, PlainELMGrid
from .linear import LOGREG_CS, LogRegClassifier
from .neighbors import KNNClassifier
from .svm import CS, GAMMAS, PlainSVMGrid, SVMClassifier

__all__ = [
    "CLASSIFIERS",
    "create_classifier",
    "list_classifiers",
    "SVMClassifier",
    "ELMClassifier",
    "KNNClassifier",
    "LogRegClassifier",
    "PlainSVMGrid",
    "PlainELMGrid",
    "inner_splits",
    "GAMMAS",
    "CS",
    "HIDDEN_SIZES",
    "LOGREG_CS",
]

CLASSIFIERS = Registry("classifier")

# ``deterministic``: no randomness in the model itself (the ELM draws a random hidden layer).
# A deterministic classifier on fixed features and the whole pool gives the same row in every
# run, so protocols evaluate it once per fold (its inner-fold shuffle is seeded from run 0).
_CLASSES = {
    "svm": (SVMClassifier, "SVM, rbf/linear grid (32 candidates) on precomputed kernels", True),
    "elm": (ELMClassifier, "Extreme Learning Machine, ReLU, hidden units 100–2500, ridge", False),
    "knn": (KNNClassifier, "1-nearest neighbour, cosine distance, no tuning", True),
    "logreg": (LogRegClassifier, "multinomial logistic regression linear probe, C tuned", True),
}


def _factory(cls):
    accepted = set(inspect.signature(cls).parameters)

    def make(*, random_state=None, device="cpu", **params):
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise ParameterError(
                f"{cls.__name__} has no parameter {unknown[0]!r}; accepted: {', '.join(sorted(accepted))}"
            )
        if "random_state" in accepted:
            params["random_state"] = random_state
        if "device" in accepted:
            params["device"] = device
        return cls(**params)

    make.__doc__ = cls.__doc__
    return make


for _name, (_cls, _description, _deterministic) in _CLASSES.items():
    CLASSIFIERS.register(_name, description=_description, estimator=_cls, deterministic=_deterministic)(
        _factory(_cls)
    )


def create_classifier(name: str, *, random_state: int | None = None, device: str = "cpu", **params):
    """Build the classifier registered as ``name``.

    Parameters
    ----------
    name : str
        ``"svm"``, ``"elm"``, ``"knn"`` or ``"logreg"``; an unknown name lists the valid ones.
    random_state : int or None
        Seed of the classifier's randomness (ELM projection, inner folds); ignored by knn.
        Protocols pass ``derive_seed(seed, "classifier", dataset_id, fold, n, run)``.
    device : str
        Torch device for the svm kernels and the elm; ignored by knn and logreg.
    **params
        Constructor arguments of the estimator (e.g. ``n_hidden=500``, ``solver="pinv"``).

    Returns
    -------
    sklearn estimator
    """
    return CLASSIFIERS.create(name, random_state=random_state, device=device, **params)


def list_classifiers() -> list[str]:
    """Registered classifier names, sorted."""
    return CLASSIFIERS.names()
