"""``esc50``: ESC-50 with its five official folds.

Layout (as in the ``karolpiczak/ESC-50`` repository)::

    ESC-50/
      meta/esc50.csv   filename,fold,target,category,esc10,src_file,take
      audio/*.wav

Labels are the ``category`` column (``dog``, ``rain``...); folds are the ``fold``
column, ``"1"``..``"5"``, used as published; the group of a clip is its
Freesound source file ``src_file`` (the official folds already keep a source
in one fold).

References
----------
.. [#] K. J. Piczak, "ESC: Dataset for Environmental Sound Classification",
   Proc. ACM Multimedia, 2015.
"""

from __future__ import annotations

from pathlib import Path

from ...exceptions import DataError
from ._base import DATASETS, Clip, Dataset, _natural_key, folder_id
from ._files import check_exist, read_csv, require_file, resolve_root

__all__ = ["load_esc50"]

LAYOUT = "the ESC-50 folder holding meta/esc50.csv and audio/*.wav"
CITATION = (
    'K. J. Piczak, "ESC: Dataset for Environmental Sound Classification", '
    "Proc. 23rd ACM International Conference on Multimedia, Brisbane, 2015, pp. 1015-1018."
)


@DATASETS.register("esc50", description="ESC-50, 50 classes, official folds 1-5",
                   layout=LAYOUT, citation=CITATION)
def load_esc50(path: str | Path | None = None, *, seed: int = 0, n_folds: int = 5) -> Dataset:
    """Load ESC-50 with its official folds.

    Parameters
    ----------
    path : str or Path
        The ``ESC-50`` folder (holding ``meta/`` and ``audio/``).
    seed, n_folds : int
        Unused: the official folds are always used.

    Returns
    -------
    Dataset
        Test folds ``"1"``..``"5"``, ``official_folds=True``, groups = ``src_file``.

    Raises
    ------
    DataError
        Missing folder, metadata file or audio file; metadata without the
        expected columns.
    """
    root = resolve_root(path, loader="esc50", expected=LAYOUT)
    meta = require_file(root / "meta" / "esc50.csv", loader="esc50", expected=LAYOUT)
    _, rows = read_csv(meta, loader="esc50", required=("filename", "fold", "category", "src_file"))
    if not rows:
        raise DataError(f"esc50: {meta} lists no clips; expected one row per clip")
    clips = []
    for line_no, row in enumerate(rows, start=2):
        fold = row["fold"]
        if not fold.isdigit():
            raise DataError(f"esc50: {meta} line {line_no}: fold must be 1..5; got {fold!r}")
        clips.append(Clip(str(root / "audio" / row["filename"]), row["category"], str(int(fold)),
                          row["src_file"]))
    check_exist((Path(c.path) for c in clips), loader="esc50", listed_in=meta)
    return Dataset(
        name="esc50",
        id=folder_id("esc50", root),
        clips=clips,
        classes=sorted({c.label for c in clips}),
        test_folds=sorted({c.fold for c in clips}, key=_natural_key),
        official_folds=True,
        citation=CITATION,
    )
