"""Dataset loaders (registry :data:`DATASETS`) and :func:`load_dataset`.

``--dataset`` accepts a folder (``folder`` loader), a CSV file (``csv`` loader),
``LOADER:PATH`` (split at the first colon) or ``synth[:key=value,...]``.
"""

from __future__ import annotations

from pathlib import Path

from ...exceptions import DataError, ParameterError

# Importing the loader modules registers them.
from . import _csv, _folder, ballroom, esc50, gtzan, synth, tut, urbansound8k  # noqa: E402,F401,I001
from ._base import DATASETS, Clip, Dataset, assign_folds, check_dataset, folder_id

__all__ = ["DATASETS", "Clip", "Dataset", "assign_folds", "check_dataset", "folder_id", "load_dataset"]


def load_dataset(spec: str, *, seed: int = 0, n_folds: int = 5) -> Dataset:
    """Load a dataset from a ``--dataset`` specification.

    Parameters
    ----------
    spec : str
        ``synth``, ``synth:classes=10,clips=40,seconds=4,seed=0``, ``LOADER:PATH``,
        a folder or a CSV file.
    seed : int, default=0
        The user's ``--seed``; folds that the dataset does not publish are drawn
        from ``derive_seed(seed, "folds", dataset_id)``.
    n_folds : int, default=5
        Number of folds to make where the dataset publishes none.

    Returns
    -------
    Dataset

    Raises
    ------
    ParameterError
        Unknown loader name (the message lists the valid ones).
    DataError
        Missing path, bad metadata, a class with no clips.
    """
    spec = str(spec).strip()
    if not spec:
        raise ParameterError("--dataset is empty; give a folder, a CSV file, LOADER:PATH or synth")
    name, sep, rest = spec.partition(":")
    if name == "synth":
        return check_dataset(DATASETS.create("synth", path=rest or None, seed=seed, n_folds=n_folds))
    if sep and name in DATASETS:
        path = rest
    elif sep and not Path(spec).exists() and len(name) > 1:
        DATASETS.get(name)  # raises: unknown loader, lists the valid ones
        path = rest
    else:
        path = spec
        p = Path(spec).expanduser()
        if not p.exists():
            raise DataError(f"--dataset {spec!r}: no such file or folder ({p.resolve()}); "
                            "give a folder of class sub-folders, a CSV file, LOADER:PATH or synth")
        name = "csv" if p.is_file() else "folder"
    return check_dataset(DATASETS.create(name, path=path, seed=seed, n_folds=n_folds))
