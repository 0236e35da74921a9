"""The dataset contract: a list of clips, their classes, folds and a stable id.

A :class:`Dataset` is what every protocol consumes. Loaders (one module each,
registered in :data:`DATASETS`) only build it; they never touch the network.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..._registry import Registry
from ...exceptions import DataError, ParameterError

__all__ = ["Clip", "Dataset", "DATASETS", "assign_folds", "check_dataset"]

#: Registry of dataset loaders. Each factory takes ``path`` (``str | None``) and
#: keyword options (``seed``, ``n_folds``, loader-specific ones) and returns a
#: :class:`Dataset`. Entry metadata: ``layout`` (what the folder must hold) and
#: ``citation``.
DATASETS = Registry("dataset")


@dataclass(frozen=True)
class Clip:
    """One labelled audio clip.

    Attributes
    ----------
    path : str
        Absolute path of the audio file, or a pseudo path (``synth:<i>``) for
        built-in data that has no file.
    label : str
        Class name as the dataset spells it.
    fold : str
        Fold or split label as the dataset names it ("1".."10", "train", "test").
    group : str
        Clips of one group (same source recording, same artist) never straddle
        folds that we make ourselves. Defaults to the path.
    """

    path: str
    label: str
    fold: str
    group: str = ""


@dataclass
class Dataset:
    """A labelled audio dataset with folds.

    Attributes
    ----------
    name : str
        Loader name (``folder``, ``urbansound8k``, ``synth``...).
    id : str
        Stable identity: loader + folder name (not the path as typed), plus the
        options that change its content, e.g. ``urbansound8k-UrbanSound8K`` or
        ``synth-c10-n40-s4.0-seed0``. Used in seeds, cache keys and run folders.
    clips : list of Clip
    classes : list of str
        Sorted class names; ``y[i] = classes.index(clips[i].label)``.
    test_folds : list of str
        Folds that serve as test folds, in order.
    splits : dict
        ``test_fold -> (train_folds, valid_folds)``. Missing entries mean "every
        other fold trains, no validation split" (cross-validation).
    official_folds : bool
        True when folds come from the dataset's publishers (never reshuffled).
    citation : str
    reader : callable, optional
        ``reader(clip) -> (waveform float32 [n_samples] or [n_samples, n_channels], sr)``
        for clips with no file (``synth``). None means decode ``clip.path``.
    identity : callable, optional
        ``identity(clip) -> str`` for the audio cache key of a clip with no file.
    """

    name: str
    id: str
    clips: list[Clip]
    classes: list[str]
    test_folds: list[str]
    splits: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    official_folds: bool = False
    citation: str = ""
    reader: Callable[[Clip], tuple[np.ndarray, int]] | None = None
    identity: Callable[[Clip], str] | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def labels(self) -> list[str]:
        """Class name of every clip, in clip order."""
        return [c.label for c in self.clips]

    @property
    def y(self) -> np.ndarray:
        """Integer class index of every clip, ``int64 [n_clips]``."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[c.label] for c in self.clips], dtype=np.int64)

    @property
    def folds(self) -> list[str]:
        """Every fold label present, sorted naturally ("2" before "10")."""
        return sorted({c.fold for c in self.clips}, key=_natural_key)

    def split(self, test_fold: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices of the training pool, validation split and test fold.

        Parameters
        ----------
        test_fold : str

        Returns
        -------
        train, valid, test : np.ndarray of int64
            ``valid`` is empty unless the dataset publishes a validation split.
        """
        if test_fold not in self.test_folds:
            raise ParameterError(
                f"fold {test_fold!r} is not a test fold of dataset {self.id!r}; "
                f"valid folds: {', '.join(self.test_folds)}"
            )
        folds = np.array([c.fold for c in self.clips])
        if test_fold in self.splits:
            train_folds, valid_folds = self.splits[test_fold]
            train = np.flatnonzero(np.isin(folds, list(train_folds)))
            valid = np.flatnonzero(np.isin(folds, list(valid_folds)))
        else:
            other_tests = set(self.test_folds)
            train = np.flatnonzero((folds != test_fold) & np.isin(folds, list(other_tests)))
            valid = np.array([], dtype=np.int64)
        test = np.flatnonzero(folds == test_fold)
        return train.astype(np.int64), valid.astype(np.int64), test.astype(np.int64)

    def subset(self, indices: Sequence[int]) -> list[Clip]:
        """The clips at ``indices``."""
        return [self.clips[int(i)] for i in indices]


def _natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def assign_folds(
    labels: Sequence[str], groups: Sequence[str], *, n_folds: int, seed: int
) -> list[str]:
    """Stratified, group-aware folds from a seed, labelled ``"1".."n_folds"``.

    Clips sharing a group always land in the same fold. Used only where a
    dataset publishes no folds; official folds are never reshuffled.

    Parameters
    ----------
    labels, groups : sequence of str, length n_clips
    n_folds : int
        At least 2 and at most the number of groups.
    seed : int
        Seed of the shuffle (derive it with :func:`fewshot.seeds.derive_seed`).

    Returns
    -------
    list of str, length n_clips
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups))
    if n_folds < 2:
        raise ParameterError(f"n_folds must be at least 2; got {n_folds}")
    if n_groups < n_folds:
        raise DataError(
            f"cannot make {n_folds} folds from {n_groups} groups of clips; lower --folds-count or add clips"
        )
    largest = max(list(labels).count(c) for c in set(labels))
    if largest < n_folds:
        raise DataError(
            f"cannot make {n_folds} stratified folds when the largest class has {largest} clips; "
            "lower --folds-count or add clips"
        )
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed % (2**32))
    out = [""] * len(labels)
    dummy = np.zeros(len(labels))
    import warnings

    with warnings.catch_warnings():
        # sklearn warns when a class has fewer members than n_folds; that is fine here.
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, test) in enumerate(splitter.split(dummy, list(labels), list(groups))):
            for i in test:
                out[i] = str(k + 1)
    return out


def check_dataset(ds: Dataset) -> Dataset:
    """Validate a freshly loaded dataset; raise :class:`DataError` naming the problem."""
    if not ds.clips:
        raise DataError(f"dataset {ds.id!r} has no clips")
    counts = {c: 0 for c in ds.classes}
    for clip in ds.clips:
        if clip.label not in counts:
            raise DataError(f"dataset {ds.id!r}: clip {clip.path} has label {clip.label!r} not in its classes")
        counts[clip.label] += 1
    empty = [c for c, k in counts.items() if k == 0]
    if empty:
        raise DataError(f"dataset {ds.id!r}: class {empty[0]!r} has no clips")
    folded: dict[str, str] = {}
    for name in ds.classes:
        norm = " ".join(name.casefold().split())
        if norm in folded:
            raise DataError(
                f"dataset {ds.id!r}: labels differ only by case or whitespace: {folded[norm]!r} and {name!r}; "
                "spell each class one way in the metadata"
            )
        folded[norm] = name
    paths = [c.path for c in ds.clips]
    if len(set(paths)) != len(paths):
        dup = next(p for p in paths if paths.count(p) > 1)
        raise DataError(f"dataset {ds.id!r}: path {dup} is listed more than once")
    missing = [f for f in ds.test_folds if f not in set(c.fold for c in ds.clips)]
    if missing:
        raise DataError(f"dataset {ds.id!r}: test fold {missing[0]!r} has no clips")
    return ds


def folder_id(loader: str, path: str | Path) -> str:
    """Stable id from the loader and the folder's name (not the path as typed)."""
    p = Path(path).resolve()
    name = p.stem if p.is_file() else p.name
    return f"{loader}-{name}"
