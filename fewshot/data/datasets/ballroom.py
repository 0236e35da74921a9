"""``ballroom`` and ``extended_ballroom``: dance styles, class folders, 10 fixed folds.

Layouts::

    BallroomData/<style>/*.wav          ChaChaCha, Jive, Quickstep, Rumba-American,
                                        Rumba-International, Rumba-Misc, Samba, Tango,
                                        VienneseWaltz, Waltz
    extended_ballroom/<style>/*.mp3     Chacha, Foxtrot, Jive, Pasodoble, Quickstep, Rumba,
                                        Salsa, Samba, Slowwaltz, Tango, Viennesewaltz, Waltz,
                                        Wcswing

For ``ballroom`` the three ``Rumba-*`` folders form one class ``Rumba`` (the usual
8 styles). Sub-folders holding no audio are skipped (and noted).

Folds: neither set publishes folds, so both use **10 stratified folds drawn once
from a fixed seed**, ``derive_seed(0, "folds", LOADER)`` with ``LOADER`` the
loader name, over the files sorted by their path relative to the dataset folder.
They are the same for every ``--seed``, every ``n_folds`` and wherever the folder
lives, so results on these sets are comparable across runs (as in the reference
protocol, which uses 10-fold cross-validation with fixed folds).

References
----------
.. [#] F. Gouyon, A. Klapuri, S. Dixon, M. Alonso, G. Tzanetakis, C. Uhle and
   P. Cano, "An experimental comparison of audio tempo induction algorithms",
   IEEE Trans. Audio, Speech and Language Processing 14(5), 2006.
.. [#] U. Marchand and G. Peeters, "The Extended Ballroom Dataset", ISMIR 2016
   late-breaking session.
"""

from __future__ import annotations

from pathlib import Path

from ...seeds import derive_seed
from ._base import DATASETS, Clip, Dataset, assign_folds, folder_id
from ._files import require_dir, resolve_root
from ._folder import scan_class_folders

__all__ = ["load_ballroom", "load_extended_ballroom", "N_FOLDS"]

#: Number of fixed folds of both Ballroom sets.
N_FOLDS = 10
LAYOUT_BALLROOM = "the BallroomData folder holding one sub-folder per style (ChaChaCha, Jive, ..., Waltz)"
LAYOUT_EXTENDED = "the extended_ballroom folder holding one sub-folder per style (Chacha, Foxtrot, ..., Wcswing)"
CITATION_BALLROOM = (
    "F. Gouyon, A. Klapuri, S. Dixon, M. Alonso, G. Tzanetakis, C. Uhle and P. Cano, "
    '"An experimental comparison of audio tempo induction algorithms", IEEE Transactions on Audio, '
    "Speech and Language Processing 14(5), 2006."
)
CITATION_EXTENDED = (
    'U. Marchand and G. Peeters, "The Extended Ballroom Dataset", Late-Breaking Demo Session of the '
    "17th International Society for Music Information Retrieval Conference (ISMIR), 2016."
)


def _rumba(name: str) -> str:
    return "Rumba" if name.startswith("Rumba") else name


def _load(loader: str, path: str | Path | None, *, layout: str, citation: str, label_of=None) -> Dataset:
    root = resolve_root(path, loader=loader, expected=layout)
    require_dir(root, loader=loader, expected=layout)
    pairs, notes = scan_class_folders(root, loader=loader, expected=layout, label_of=label_of, skip_empty=True)
    labels = [label for _, label in pairs]
    groups = [p.relative_to(root).as_posix() for p, _ in pairs]
    folds = assign_folds(labels, groups, n_folds=N_FOLDS, seed=derive_seed(0, "folds", loader))
    return Dataset(
        name=loader,
        id=folder_id(loader, root),
        clips=[Clip(str(p), lab, f, g) for (p, lab), f, g in zip(pairs, folds, groups, strict=True)],
        classes=sorted(set(labels)),
        test_folds=[str(k) for k in range(1, N_FOLDS + 1)],
        official_folds=False,
        citation=citation,
        notes=notes,
    )


@DATASETS.register("ballroom", description="Ballroom, 8 dance styles, 10 fixed folds",
                   layout=LAYOUT_BALLROOM, citation=CITATION_BALLROOM)
def load_ballroom(path: str | Path | None = None, *, seed: int = 0, n_folds: int = 5) -> Dataset:
    """Load the Ballroom set (Rumba-* folders merged into ``Rumba``).

    Parameters
    ----------
    path : str or Path
        The ``BallroomData`` folder.
    seed, n_folds : int
        Ignored: the 10 folds come from a fixed seed (see the module docstring).

    Returns
    -------
    Dataset
        Test folds ``"1"``..``"10"``.
    """
    return _load("ballroom", path, layout=LAYOUT_BALLROOM, citation=CITATION_BALLROOM, label_of=_rumba)


@DATASETS.register("extended_ballroom", description="Extended Ballroom, 13 dance styles, 10 fixed folds",
                   layout=LAYOUT_EXTENDED, citation=CITATION_EXTENDED)
def load_extended_ballroom(path: str | Path | None = None, *, seed: int = 0, n_folds: int = 5) -> Dataset:
    """Load the Extended Ballroom set.

    Parameters
    ----------
    path : str or Path
        The ``extended_ballroom`` folder.
    seed, n_folds : int
        Ignored: the 10 folds come from a fixed seed (see the module docstring).

    Returns
    -------
    Dataset
        Test folds ``"1"``..``"10"``.
    """
    return _load("extended_ballroom", path, layout=LAYOUT_EXTENDED, citation=CITATION_EXTENDED)
