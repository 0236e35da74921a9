"""The n-shot sampler shared by both protocols.

For test fold ``f`` and run ``r`` the training pool is every other fold (or the
dataset's official training split); ``n`` clips per class are drawn without
replacement with the seed ``derive_seed(seed, "subset", dataset_id, f, n, r)``.
The draw is therefore reproducible, identical for every method (results pair
up), and never touches the test fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import DataError, ParameterError
from ..seeds import numpy_rng
from .datasets import Dataset

__all__ = ["Subset", "parse_n", "default_runs", "sample_subset"]


@dataclass(frozen=True)
class Subset:
    """The indices one unit trains and tests on.

    Attributes
    ----------
    train : np.ndarray of int64
        Indices of the n-shot training clips (class-sorted, then by draw order).
    valid : np.ndarray of int64
        The dataset's own validation split (empty for cross-validation sets).
    test : np.ndarray of int64
        The whole test fold.
    capped : bool
        True when ``--cap`` reduced n for at least one class.
    """

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    capped: bool = False


def parse_n(value: str | int) -> int | str:
    """Parse one n value: a positive int or ``"all"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        text = str(value).strip().lower()
        if text == "all":
            return "all"
        try:
            n = int(text)
        except ValueError:
            raise ParameterError(f"n must be a positive int or 'all'; got {value!r}") from None
    if n < 1:
        raise ParameterError(f"n must be a positive int or 'all'; got {n}")
    return n


def default_runs(n: int | str) -> int:
    """Runs per n when ``--runs`` is not given: 20 for n ≤ 2, 10 for n ≤ 10, 5 above (and for 'all')."""
    if n == "all":
        return 5
    if n <= 2:
        return 20
    if n <= 10:
        return 10
    return 5


def sample_subset(
    dataset: Dataset, fold: str, n: int | str, run: int, *, seed: int, cap: bool = False
) -> Subset:
    """Draw the n-shot training subset of one (fold, n, run) unit.

    Parameters
    ----------
    dataset : Dataset
    fold : str
        Test fold.
    n : int or "all"
        Clips per class; ``"all"`` takes the whole training pool.
    run : int
        Run index (from 0).
    seed : int
        The user's ``--seed``.
    cap : bool, default=False
        If a class has fewer than ``n`` clips in the pool, take all of them
        instead of failing.

    Returns
    -------
    Subset

    Raises
    ------
    DataError
        A class has fewer than ``n`` clips in the training pool and ``cap`` is off.
    """
    train, valid, test = dataset.split(fold)
    if n == "all":
        return Subset(np.sort(train), valid, test, False)
    y = dataset.y
    rng = numpy_rng(seed, "subset", dataset.id, str(fold), int(n), int(run))
    chosen: list[np.ndarray] = []
    capped = False
    for k, name in enumerate(dataset.classes):
        pool = train[y[train] == k]
        if len(pool) < n:
            if not cap:
                raise DataError(
                    f"class {name!r} has {len(pool)} clips in the training pool of fold {fold!r}, "
                    f"fewer than n={n}; lower n or pass --cap to use all {len(pool)}"
                )
            capped = True
            if len(pool) == 0:
                continue
        take = rng.permutation(pool)[: min(int(n), len(pool))]
        chosen.append(take)
    if not chosen:
        raise DataError(f"the training pool of fold {fold!r} has no clips; check the dataset's folds")
    return Subset(np.concatenate(chosen).astype(np.int64), valid, test, capped)
