"""``folder``: one sub-folder per class holding audio files, or a ``manifest.csv``.

The class of a file is the name of the top-level sub-folder it sits in (files may
be nested deeper). Audio files are those ending in one of
:data:`~fewshot.data.datasets._files.AUDIO_EXTENSIONS`; hidden files and folders
are skipped. If the folder holds a ``manifest.csv``, it is read with the ``csv``
loader's rules instead (paths relative to the folder).

Folds: ``n_folds`` stratified folds drawn from ``derive_seed(seed, "folds",
dataset_id)``, one file per group. Groups are paths relative to the folder, so
moving the folder changes neither its id nor its folds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ...exceptions import DataError
from ...seeds import derive_seed
from ._base import DATASETS, Clip, Dataset, assign_folds, folder_id
from ._csv import dataset_from_csv
from ._files import AUDIO_EXTENSIONS, find_audio, is_audio, require_dir, resolve_root

__all__ = ["load_folder", "scan_class_folders"]

LAYOUT = (
    "one sub-folder per class holding audio files (" + ", ".join(AUDIO_EXTENSIONS[:6])
    + "), or a manifest.csv with columns path,label[,fold,group]"
)
CITATION = "User-provided data: cite its creators."


def scan_class_folders(
    root: Path,
    *,
    loader: str,
    expected: str,
    label_of: Callable[[str], str] | None = None,
    skip_empty: bool = False,
) -> tuple[list[tuple[Path, str]], list[str]]:
    """List ``(file, label)`` pairs of a class-folder layout, sorted by path.

    Parameters
    ----------
    root : Path
        The folder holding one sub-folder per class.
    loader : str
        Loader name for messages.
    expected : str
        What ``root`` should hold, for messages.
    label_of : callable, optional
        Maps a sub-folder name to its class (to merge folders); identity by default.
    skip_empty : bool, default=False
        Skip (and note) sub-folders without audio instead of failing.

    Returns
    -------
    pairs : list of (Path, str)
    notes : list of str
        Things skipped (audio files directly in ``root``, empty sub-folders).

    Raises
    ------
    DataError
        No class sub-folder, or a class sub-folder with no audio file.
    """
    notes = []
    require_dir(root, loader=loader, expected=expected)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise DataError(f"{loader}: {root} has no sub-folders; expected {expected}")
    pairs: list[tuple[Path, str]] = []
    for sub in subdirs:
        files = find_audio(sub)
        if not files and skip_empty:
            notes.append(f"{loader}: ignored sub-folder {sub} (no audio files)")
            continue
        if not files:
            raise DataError(
                f"{loader}: class folder {sub} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}); "
                "every class needs at least one clip"
            )
        label = label_of(sub.name) if label_of else sub.name
        pairs.extend((f, label) for f in files)
    if not pairs:
        raise DataError(f"{loader}: no audio files in the sub-folders of {root}; expected {expected}")
    loose = [p for p in root.iterdir() if is_audio(p)]
    if loose:
        notes.append(f"{loader}: ignored {len(loose)} audio file(s) directly in {root} (not in a class folder)")
    return sorted(pairs), notes


@DATASETS.register("folder", description="class sub-folders of audio files (or a manifest.csv)",
                   layout=LAYOUT, citation=CITATION)
def load_folder(path: str | Path | None = None, *, seed: int = 0, n_folds: int = 5) -> Dataset:
    """Load a folder of class sub-folders (or with a ``manifest.csv``).

    Parameters
    ----------
    path : str or Path
        The folder. Its id is ``folder-<folder name>``.
    seed : int, default=0
        The user's ``--seed``; folds are drawn from ``derive_seed(seed, "folds", id)``.
    n_folds : int, default=5
        Number of stratified folds.

    Returns
    -------
    Dataset

    Raises
    ------
    DataError
        Missing folder, no class sub-folder, a class sub-folder without audio.
    """
    root = resolve_root(path, loader="folder", expected=LAYOUT)
    require_dir(root, loader="folder", expected=LAYOUT)
    dataset_id = folder_id("folder", root)
    manifest = root / "manifest.csv"
    if manifest.is_file():
        return dataset_from_csv(manifest, name="folder", dataset_id=dataset_id, seed=seed, n_folds=n_folds)
    pairs, notes = scan_class_folders(root, loader="folder", expected=LAYOUT)
    labels = [label for _, label in pairs]
    # Groups are paths relative to the folder, so folds do not depend on where the folder lives.
    groups = [p.relative_to(root).as_posix() for p, _ in pairs]
    folds = assign_folds(labels, groups, n_folds=n_folds, seed=derive_seed(seed, "folds", dataset_id))
    return Dataset(
        name="folder",
        id=dataset_id,
        clips=[Clip(str(p), lab, f, g) for (p, lab), f, g in zip(pairs, folds, groups, strict=True)],
        classes=sorted(set(labels)),
        test_folds=[str(k) for k in range(1, n_folds + 1)],
        official_folds=False,
        citation=CITATION,
        notes=notes,
    )
