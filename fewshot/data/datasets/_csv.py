"""``csv``: a CSV index of audio files with columns ``path,label`` and optional ``fold,group``.

Paths are relative to the CSV file's folder (absolute paths are kept). Folds:

- a ``fold`` column is used as published: every fold label is a test fold, the
  others train (cross-validation), except that fold labels ``train``, ``valid``
  (or ``validation``) and ``test`` mean one fixed split: ``test`` is the only test
  fold, trained on ``train`` and validated on ``valid``;
- without a ``fold`` column, ``n_folds`` stratified folds are drawn from
  ``derive_seed(seed, "folds", dataset_id)``, keeping the clips of one ``group``
  (default: the file itself) in one fold.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...exceptions import DataError
from ...seeds import derive_seed
from ._base import DATASETS, Clip, Dataset, _natural_key, assign_folds, folder_id
from ._files import check_exist, read_csv, require_file, resolve_root

__all__ = ["load_csv", "dataset_from_csv"]

LAYOUT = "a CSV file with columns path,label (optional fold,group); paths relative to the CSV"
CITATION = "User-provided data: cite its creators."
_SPLIT_NAMES = {"train": "train", "valid": "valid", "validation": "valid", "test": "test"}


def dataset_from_csv(
    csv_path: Path, *, name: str, dataset_id: str, seed: int = 0, n_folds: int = 5, citation: str = CITATION
) -> Dataset:
    """Build a :class:`Dataset` from a ``path,label[,fold,group]`` CSV file.

    Parameters
    ----------
    csv_path : Path
        Absolute path of the CSV file.
    name : str
        Loader name recorded in the dataset (``csv`` or ``folder``).
    dataset_id : str
        The dataset's stable id (seeds the folds when the CSV has none).
    seed : int, default=0
        The user's ``--seed``.
    n_folds : int, default=5
        Folds to draw when the CSV has no ``fold`` column.
    citation : str, optional

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        No ``path`` or ``label`` column, an empty cell, a fold missing on some
        rows, a listed file that does not exist.
    """
    header, rows = read_csv(csv_path, loader=name, required=("path", "label"))
    if not rows:
        raise DataError(f"{name}: {csv_path} has a header but no rows; expected one row per audio file")
    base = csv_path.parent
    has_fold = "fold" in header and any(r["fold"] for r in rows)
    has_group = "group" in header
    paths, labels, folds, groups = [], [], [], []
    for line_no, row in enumerate(rows, start=2):
        for column in ("path", "label") + (("fold",) if has_fold else ()):
            if not row[column]:
                raise DataError(f"{name}: {csv_path} line {line_no}: empty {column!r} cell")
        p = Path(row["path"]).expanduser()
        p = Path(os.path.normpath(p if p.is_absolute() else base / p))
        paths.append(p)
        labels.append(row["label"])
        folds.append(row["fold"] if has_fold else "")
        # The default group is the path as written (not resolved), so folds do not depend on the location.
        groups.append((row["group"] if has_group else "") or row["path"])
    check_exist(paths, loader=name, listed_in=csv_path)
    splits: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    if has_fold:
        present = set(folds)
        canonical = {f.lower(): f for f in present}
        split_names = sorted(set(canonical) & set(_SPLIT_NAMES))
        others = sorted(set(canonical) - set(_SPLIT_NAMES), key=_natural_key)
        if split_names and (others or not {"train", "test"} <= set(canonical)):
            what = f"other values ({', '.join(map(repr, others[:3]))})" if others else "no 'train' and 'test' pair"
            raise DataError(
                f"{name}: {csv_path}: unknown fold values: the fold column mixes split names "
                f"({', '.join(split_names)}) with {what}; use train/valid/test or fold labels such as 1..5"
            )
        if set(canonical) <= set(_SPLIT_NAMES) and {"train", "test"} <= set(canonical):
            valid = tuple(canonical[k] for k in ("valid", "validation") if k in canonical)
            test_folds = [canonical["test"]]
            splits = {canonical["test"]: ((canonical["train"],), valid)}
        else:
            test_folds = sorted(present, key=_natural_key)
    else:
        folds = assign_folds(labels, groups, n_folds=n_folds, seed=derive_seed(seed, "folds", dataset_id))
        test_folds = [str(k) for k in range(1, n_folds + 1)]
    clips = [Clip(str(p), lab, f, g) for p, lab, f, g in zip(paths, labels, folds, groups, strict=True)]
    return Dataset(
        name=name,
        id=dataset_id,
        clips=clips,
        classes=sorted(set(labels)),
        test_folds=test_folds,
        splits=splits,
        official_folds=has_fold,
        citation=citation,
    )


@DATASETS.register("csv", description="CSV index of audio files (path,label[,fold,group])",
                   layout=LAYOUT, citation=CITATION)
def load_csv(path: str | Path | None = None, *, seed: int = 0, n_folds: int = 5) -> Dataset:
    """Load a dataset from a CSV index (columns ``path,label``, optional ``fold,group``).

    Parameters
    ----------
    path : str or Path
        The CSV file. Its id is ``csv-<file stem>``.
    seed : int, default=0
        The user's ``--seed`` (only used when the CSV has no ``fold`` column).
    n_folds : int, default=5
        Folds to draw when the CSV has no ``fold`` column.

    Returns
    -------
    Dataset

    Examples
    --------
    ``index.csv`` next to an ``audio/`` folder::

        path,label,fold
        audio/dog_1.wav,dog,1
        audio/cat_1.wav,cat,2
    """
    csv_path = resolve_root(path, loader="csv", expected="a CSV file with columns path,label")
    require_file(csv_path, loader="csv", expected="a CSV file with columns path,label (optional fold,group)")
    return dataset_from_csv(csv_path, name="csv", dataset_id=folder_id("csv", csv_path), seed=seed,
                            n_folds=n_folds)
