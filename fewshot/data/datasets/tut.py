"""``tut2016`` and ``tut2017``: TUT Acoustic Scenes (DCASE 2016/2017 task 1).

Development-set layout (as distributed)::

    TUT-acoustic-scenes-2017-development/
      meta.txt                          audio/b020_90_100.wav<TAB>beach[<TAB>b020]
      evaluation_setup/fold1_train.txt  audio/...wav<TAB>label
      evaluation_setup/fold1_evaluate.txt
      ... fold4_*
      audio/*.wav

Labels come from ``meta.txt``. Folds ``"1"``..``"4"`` are the published ones: a
clip's fold is the ``fold{k}_evaluate.txt`` that lists it; test fold ``k`` trains
on the other three (the published ``fold{k}_train.txt``, which is checked not to
hold fold ``k``). Clips listed in no ``evaluate`` file are dropped and noted.
Groups are recording locations: the third ``meta.txt`` column, else the file
name's prefix (``a001_10_20.wav`` -> ``a001``).

``tut2017`` evaluation set: the clips of the 2017 evaluation set form one more
test fold, ``"evaluation"``, trained on every development clip (the DCASE 2017
protocol, and the test split of the reference few-data study). The evaluation
folder is taken from the ``evaluation`` argument or, when that is not given, from
a sibling folder named like the development folder with ``development`` replaced
by ``evaluation`` (``TUT-acoustic-scenes-2017-evaluation``). Its labels come from
its ``meta.txt`` (file, label), else from ``evaluation_setup/evaluate.txt``.

References
----------
.. [#] A. Mesaros, T. Heittola and T. Virtanen, "TUT database for acoustic scene
   classification and sound event detection", EUSIPCO 2016.
.. [#] A. Mesaros, T. Heittola, A. Diment, B. Elizalde, A. Shah, E. Vincent,
   B. Raj and T. Virtanen, "DCASE 2017 Challenge setup: tasks, datasets and
   baseline system", DCASE 2017 Workshop.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...exceptions import DataError
from ._base import DATASETS, Clip, Dataset, folder_id
from ._files import check_exist, require_dir, require_file, resolve_root

__all__ = ["load_tut2016", "load_tut2017", "location_of", "read_list"]

LAYOUT = "a TUT-acoustic-scenes-{year}-development folder holding meta.txt, evaluation_setup/fold1..4_*.txt and audio/"
CITATION_2016 = (
    'A. Mesaros, T. Heittola and T. Virtanen, "TUT database for acoustic scene classification and sound '
    'event detection", 24th European Signal Processing Conference (EUSIPCO), 2016.'
)
CITATION_2017 = (
    "A. Mesaros, T. Heittola, A. Diment, B. Elizalde, A. Shah, E. Vincent, B. Raj and T. Virtanen, "
    '"DCASE 2017 Challenge setup: tasks, datasets and baseline system", Proc. DCASE 2017 Workshop.'
)
_LOCATION = re.compile(r"^([A-Za-z]*\d+)_")
_FOLD_FILE = re.compile(r"^fold(\d+)_evaluate\.txt$")


def location_of(file_name: str) -> str:
    """Recording location id from a TUT file name: ``a001_10_20.wav`` -> ``a001`` (else the stem)."""
    stem = Path(file_name).name
    m = _LOCATION.match(stem)
    return m.group(1) if m else Path(stem).stem


def read_list(path: Path, *, loader: str, min_fields: int = 1) -> list[list[str]]:
    """Rows of a DCASE list file (tab-separated, else whitespace-separated); blank lines skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{loader}: cannot read {path} ({err})") from None
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split())]
        fields = [f for f in fields if f]
        if len(fields) < min_fields:
            raise DataError(
                f"{loader}: {path} line {line_no} has {len(fields)} field(s); expected at least {min_fields} "
                "(file<TAB>label)"
            )
        rows.append(fields)
    return rows


def _development(loader: str, root: Path, layout: str) -> tuple[list[Clip], list[str], list[str]]:
    meta = require_file(root / "meta.txt", loader=loader, expected=layout)
    setup = require_dir(root / "evaluation_setup", loader=loader, expected=layout)
    labels: dict[str, str] = {}
    groups: dict[str, str] = {}
    for fields in read_list(meta, loader=loader, min_fields=2):
        rel = fields[0]
        if rel in labels:
            raise DataError(f"{loader}: {meta} lists {rel} more than once")
        labels[rel] = fields[1]
        groups[rel] = fields[2] if len(fields) > 2 else location_of(rel)
    fold_files = sorted(
        ((int(m.group(1)), p) for p in setup.iterdir() if (m := _FOLD_FILE.match(p.name))), key=lambda t: t[0]
    )
    if not fold_files:
        raise DataError(f"{loader}: no fold<k>_evaluate.txt in {setup}; expected {layout}")
    fold_of: dict[str, str] = {}
    for k, path in fold_files:
        for fields in read_list(path, loader=loader):
            rel = fields[0]
            if rel not in labels:
                raise DataError(f"{loader}: {path} lists {rel}, which {meta} does not")
            if len(fields) > 1 and fields[1] != labels[rel]:
                raise DataError(
                    f"{loader}: {path} labels {rel} {fields[1]!r} but {meta} says {labels[rel]!r}"
                )
            if rel in fold_of and fold_of[rel] != str(k):
                raise DataError(f"{loader}: {rel} is in the evaluate lists of folds {fold_of[rel]} and {k}")
            fold_of[rel] = str(k)
    notes = []
    folds = [str(k) for k, _ in fold_files]
    for k in folds:
        train_file = setup / f"fold{k}_train.txt"
        if not train_file.is_file():
            continue
        listed = {fields[0] for fields in read_list(train_file, loader=loader)}
        leak = sorted(r for r in listed if fold_of.get(r) == k)
        if leak:
            raise DataError(f"{loader}: {train_file} lists {leak[0]}, which fold{k}_evaluate.txt tests on")
        expected = {r for r, f in fold_of.items() if f != k}
        if listed != expected:
            notes.append(
                f"{loader}: {train_file.name} differs from the other folds' evaluate lists "
                f"({len(listed ^ expected)} files); fold {k} trains on the other folds' evaluate lists"
            )
    unused = [r for r in labels if r not in fold_of]
    if unused:
        notes.append(f"{loader}: dropped {len(unused)} clip(s) of {meta.name} in no evaluate list, e.g. {unused[0]}")
    clips = [Clip(str(root / rel), labels[rel], fold_of[rel], groups[rel]) for rel in labels if rel in fold_of]
    check_exist((Path(c.path) for c in clips), loader=loader, listed_in=meta)
    return clips, folds, notes


def _evaluation(loader: str, root: Path, dev_classes: set[str]) -> list[Clip]:
    expected = "the TUT evaluation folder holding meta.txt (file, label) and audio/"
    require_dir(root, loader=loader, expected=expected)
    source = root / "meta.txt"
    if not source.is_file():
        source = root / "evaluation_setup" / "evaluate.txt"
    require_file(source, loader=loader, expected=expected)
    rows = read_list(source, loader=loader, min_fields=2)
    clips = []
    for fields in rows:
        if fields[1] not in dev_classes:
            raise DataError(
                f"{loader}: {source} labels {fields[0]} {fields[1]!r}, not a class of the development set"
            )
        group = fields[2] if len(fields) > 2 else location_of(fields[0])
        clips.append(Clip(str(root / fields[0]), fields[1], "evaluation", f"evaluation/{group}"))
    if not clips:
        raise DataError(f"{loader}: {source} lists no clips; expected one line per evaluation clip")
    check_exist((Path(c.path) for c in clips), loader=loader, listed_in=source)
    return clips


def _load(loader: str, year: str, path, *, citation: str, evaluation=None) -> Dataset:
    layout = LAYOUT.format(year=year)
    root = resolve_root(path, loader=loader, expected=layout)
    require_dir(root, loader=loader, expected=layout)
    clips, folds, notes = _development(loader, root, layout)
    classes = sorted({c.label for c in clips})
    splits = {k: (tuple(f for f in folds if f != k), ()) for k in folds}
    test_folds = list(folds)
    if evaluation is None and loader == "tut2017" and "development" in root.name:
        sibling = root.with_name(root.name.replace("development", "evaluation"))
        evaluation = sibling if sibling.is_dir() else None
    dataset_id = folder_id(loader, root)
    if evaluation:
        eval_root = Path(str(evaluation)).expanduser().resolve()
        clips = clips + _evaluation(loader, eval_root, set(classes))
        splits["evaluation"] = (tuple(folds), ())
        test_folds.append("evaluation")
        dataset_id += "+eval"
        notes.append(f"{loader}: evaluation set {eval_root} is test fold 'evaluation'")
    return Dataset(
        name=loader,
        id=dataset_id,
        clips=clips,
        classes=classes,
        test_folds=test_folds,
        splits=splits,
        official_folds=True,
        citation=citation,
        notes=notes,
    )


@DATASETS.register("tut2016", description="TUT Acoustic Scenes 2016 (DCASE 2016 task 1), folds 1-4",
                   layout=LAYOUT.format(year=2016), citation=CITATION_2016)
def load_tut2016(path: str | Path | None = None, *, seed: int = 0, n_folds: int = 5) -> Dataset:
    """Load the TUT Acoustic Scenes 2016 development set with its four folds.

    Parameters
    ----------
    path : str or Path
        The ``TUT-acoustic-scenes-2016-development`` folder.
    seed, n_folds : int
        Unused: the published folds are always used.

    Returns
    -------
    Dataset
        Test folds ``"1"``..``"4"``; groups = recording location.
    """
    return _load("tut2016", "2016", path, citation=CITATION_2016)


@DATASETS.register(
    "tut2017",
    description="TUT Acoustic Scenes 2017 (DCASE 2017 task 1), folds 1-4 (+ evaluation set)",
    layout=LAYOUT.format(year=2017) + "; a sibling ...-evaluation folder (meta.txt, audio/) adds test fold "
    "'evaluation'",
    citation=CITATION_2017,
)
def load_tut2017(
    path: str | Path | None = None, *, seed: int = 0, n_folds: int = 5, evaluation: str | Path | bool | None = None
) -> Dataset:
    """Load the TUT Acoustic Scenes 2017 development set, and the evaluation set if present.

    Parameters
    ----------
    path : str or Path
        The ``TUT-acoustic-scenes-2017-development`` folder.
    seed, n_folds : int
        Unused: the published folds are always used.
    evaluation : str or Path or False, optional
        The evaluation-set folder. ``None`` (default) looks for the sibling
        ``...-evaluation`` folder; ``False`` leaves the evaluation set out.

    Returns
    -------
    Dataset
        Test folds ``"1"``..``"4"`` and, with the evaluation set, ``"evaluation"``
        (trained on all four development folds; the id gets ``+eval``).
    """
    return _load("tut2017", "2017", path, citation=CITATION_2017, evaluation=evaluation)
