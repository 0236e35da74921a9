"""``urbansound8k``: UrbanSound8K with its ten official folds.

Layout (as distributed)::

    UrbanSound8K/
      metadata/UrbanSound8K.csv   slice_file_name,fsID,start,end,salience,fold,classID,class
      audio/fold1/ ... audio/fold10/

Labels are the ``class`` column (``air_conditioner`` ... ``street_music``); folds
are the ``fold`` column, ``"1"``..``"10"``, used as published (leave one fold
out); the group of a clip is its Freesound recording id ``fsID``.

References
----------
.. [#] J. Salamon, C. Jacoby and J. P. Bello, "A Dataset and Taxonomy for Urban
   Sound Research", Proc. ACM Multimedia, 2014.
"""

from __future__ import annotations

from pathlib import Path

from ...exceptions import DataError
from ._base import DATASETS, Clip, Dataset, _natural_key, folder_id
from ._files import check_exist, read_csv, require_file, resolve_root

__all__ = ["load_urbansound8k"]

LAYOUT = "the UrbanSound8K folder holding metadata/UrbanSound8K.csv and audio/fold1..fold10"
CITATION = (
    'J. Salamon, C. Jacoby and J. P. Bello, "A Dataset and Taxonomy for Urban Sound Research", '
    "Proc. 22nd ACM International Conference on Multimedia, Orlando, 2014."
)


@DATASETS.register("urbansound8k", description="UrbanSound8K, 10 classes, official folds 1-10",
                   layout=LAYOUT, citation=CITATION)
def load_urbansound8k(path: str | Path | None = None, *, seed: int = 0, n_folds: int = 5) -> Dataset:
    """Load UrbanSound8K with its official folds.

    Parameters
    ----------
    path : str or Path
        The ``UrbanSound8K`` folder.
    seed, n_folds : int
        Unused: the official folds are always used.

    Returns
    -------
    Dataset
        Test folds ``"1"``..``"10"``, ``official_folds=True``, groups = ``fsID``.

    Raises
    ------
    DataError
        Missing folder, metadata file or audio file; metadata without the
        expected columns.
    """
    root = resolve_root(path, loader="urbansound8k", expected=LAYOUT)
    meta = require_file(root / "metadata" / "UrbanSound8K.csv", loader="urbansound8k", expected=LAYOUT)
    _, rows = read_csv(meta, loader="urbansound8k", required=("slice_file_name", "fsID", "fold", "class"))
    if not rows:
        raise DataError(f"urbansound8k: {meta} lists no clips; expected one row per clip")
    clips = []
    for line_no, row in enumerate(rows, start=2):
        fold = row["fold"]
        if not fold.isdigit():
            raise DataError(f"urbansound8k: {meta} line {line_no}: fold must be 1..10; got {fold!r}")
        fold = str(int(fold))
        audio = root / "audio" / f"fold{fold}" / row["slice_file_name"]
        clips.append(Clip(str(audio), row["class"], fold, row["fsID"]))
    check_exist((Path(c.path) for c in clips), loader="urbansound8k", listed_in=meta)
    return Dataset(
        name="urbansound8k",
        id=folder_id("urbansound8k", root),
        clips=clips,
        classes=sorted({c.label for c in clips}),
        test_folds=sorted({c.fold for c in clips}, key=_natural_key),
        official_folds=True,
        citation=CITATION,
    )
