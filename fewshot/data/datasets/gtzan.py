"""``gtzan``: GTZAN genres with the fault-filtered (artist-filtered) split.

The split is the one of Kereliuk et al. [#]_ as listed in jongpillee/music_dataset_split
(MIT licence; shipped with fewshot as package data in ``gtzan_split/``, licence
beside it): 443 training, 197 validation and 290 test files. It is the split used
by Pons & Serra (ICASSP 2019) for GTZAN.

Layout: the folder holding ``genres/<genre>/<genre>.<id>.<ext>`` (the original
archive), or ``genres_original/<genre>/...`` (a common re-packaging), or the
``genres`` folder itself (``<genre>/<genre>.<id>.<ext>``). ``<ext>`` is ``wav`` or
the original ``au``.

Folds: ``"train"``, ``"valid"`` and ``"test"``; ``"test"`` is the only test fold,
trained on ``"train"`` and validated on ``"valid"``. A listed file that is missing
or unreadable (zero length, undecodable header, such as ``jazz.00054`` in some
copies) is dropped and reported in :attr:`Dataset.notes`; if fewer than half the
listed files can be read, loading fails.

References
----------
.. [#] C. Kereliuk, B. L. Sturm and J. Larsen, "Deep Learning and Music
   Adversaries", IEEE Trans. Multimedia 17(11), 2015.
.. [#] G. Tzanetakis and P. Cook, "Musical genre classification of audio
   signals", IEEE Trans. Speech and Audio Processing 10(5), 2002.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ...exceptions import DataError
from ._base import DATASETS, Clip, Dataset, folder_id
from ._files import require_dir, resolve_root

__all__ = ["load_gtzan", "gtzan_lists"]

LAYOUT = "the GTZAN folder holding genres/<genre>/<genre>.<id>.wav or .au (or the genres folder itself)"
CITATION = (
    'G. Tzanetakis and P. Cook, "Musical genre classification of audio signals", IEEE Transactions on '
    "Speech and Audio Processing 10(5), 2002. Split: C. Kereliuk, B. L. Sturm and J. Larsen, "
    '"Deep Learning and Music Adversaries", IEEE Transactions on Multimedia 17(11), 2015 '
    "(lists from jongpillee/music_dataset_split, MIT licence)."
)
FOLDS = ("train", "valid", "test")
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def gtzan_lists() -> dict[str, list[str]]:
    """The shipped split: ``{"train": [...], "valid": [...], "test": [...]}``.

    Entries are ``<genre>/<genre>.<id>.wav`` relative to GTZAN's ``genres/`` folder.
    """
    folder = resources.files(__package__).joinpath("gtzan_split")
    out = {}
    for fold in FOLDS:
        text = folder.joinpath(f"{fold}_filtered.txt").read_text(encoding="utf-8")
        out[fold] = [line.strip() for line in text.splitlines() if line.strip()]
    return out


def _genre_root(root: Path) -> Path:
    for sub in ("genres", "genres_original"):
        if (root / sub).is_dir():
            return root / sub
    if any((root / g).is_dir() for g in GENRES):
        return root
    raise DataError(
        f"gtzan: no genres/ folder and no genre folders ({', '.join(GENRES[:3])}, ...) in {root}; expected {LAYOUT}"
    )


def _readable(path: Path) -> bool:
    import soundfile

    try:
        return soundfile.info(str(path)).frames > 0
    except Exception:  # any decoder failure means unreadable
        return False


@DATASETS.register("gtzan", description="GTZAN genres, fault-filtered train/valid/test split",
                   layout=LAYOUT, citation=CITATION)
def load_gtzan(path: str | Path | None = None, *, seed: int = 0, n_folds: int = 5) -> Dataset:
    """Load GTZAN with the fault-filtered split.

    Parameters
    ----------
    path : str or Path
        The GTZAN folder (holding ``genres/``) or the ``genres`` folder.
    seed, n_folds : int
        Unused: the published split is always used.

    Returns
    -------
    Dataset
        Folds ``train``/``valid``/``test``; ``test_folds=["test"]``;
        ``splits={"test": (("train",), ("valid",))}``; groups = file (the
        split is already artist-filtered). Dropped files are listed in ``notes``.

    Raises
    ------
    DataError
        Missing folder, no genre folders, or fewer than half the listed files readable.
    """
    root = resolve_root(path, loader="gtzan", expected=LAYOUT)
    require_dir(root, loader="gtzan", expected=LAYOUT)
    base = _genre_root(root)
    clips, dropped = [], []
    lists = gtzan_lists()
    for fold in FOLDS:
        for entry in lists[fold]:
            genre = entry.split("/")[0]
            rel = Path(entry)
            found = None
            for candidate in (base / rel, base / rel.with_suffix(".au")):
                if candidate.is_file():
                    found = candidate
                    break
            if found is None or not _readable(found):
                dropped.append(f"{entry} ({fold}, {'unreadable' if found else 'missing'})")
                continue
            clips.append(Clip(str(found), genre, fold, entry))
    total = sum(len(v) for v in lists.values())
    if len(clips) * 2 < total:
        raise DataError(
            f"gtzan: only {len(clips)} of the {total} listed files found and readable under {base} "
            f"(e.g. {dropped[0].split(' ')[0]} as .wav or .au); expected {LAYOUT}"
        )
    notes = []
    if dropped:
        shown = "; ".join(dropped[:5]) + (f"; and {len(dropped) - 5} more" if len(dropped) > 5 else "")
        notes.append(f"gtzan: dropped {len(dropped)} of {total} listed files: {shown}")
    return Dataset(
        name="gtzan",
        id=folder_id("gtzan", root),
        clips=clips,
        classes=sorted({c.label for c in clips}),
        test_folds=["test"],
        splits={"test": (("train",), ("valid",))},
        official_folds=True,
        citation=CITATION,
        notes=notes,
    )
