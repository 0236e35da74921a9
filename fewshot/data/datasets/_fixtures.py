"""Tiny generated copies of every supported layout, for tests and doctests.

Every writer creates WAV files (sines at a per-class frequency plus a little
noise, so classes are easy to separate) and the real metadata format of the
layout, and returns the folder to give the loader. All take a ``seed`` and are
deterministic.

Examples
--------
>>> import tempfile
>>> from fewshot.data.datasets import load_dataset
>>> root = write_tone_folder(tempfile.mkdtemp(), classes=2, clips=5)
>>> ds = load_dataset(str(root), n_folds=5)
>>> ds.classes, len(ds)
(['tone0', 'tone1'], 10)
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .gtzan import gtzan_lists

__all__ = [
    "tone",
    "write_wav",
    "write_tone_folder",
    "write_csv_dataset",
    "write_urbansound8k",
    "write_esc50",
    "write_gtzan",
    "write_ballroom",
    "write_tut",
]

BALLROOM_FOLDERS = ("ChaChaCha", "Jive", "Quickstep", "Rumba-American", "Rumba-International", "Rumba-Misc",
                    "Samba", "Tango", "VienneseWaltz", "Waltz")
EXTENDED_BALLROOM_FOLDERS = ("Chacha", "Foxtrot", "Jive", "Pasodoble", "Quickstep", "Rumba", "Salsa", "Samba",
                             "Slowwaltz", "Tango", "Viennesewaltz", "Waltz", "Wcswing")
TUT_CLASSES = ("beach", "bus", "cafe/restaurant", "car", "city_center")


def tone(k: int, *, seconds: float = 0.5, sr: int = 16000, rng: np.random.Generator | None = None) -> np.ndarray:
    """Class ``k``'s sound: a sine at ``220 * 2**(k/2)`` Hz plus a little noise, float32 [n_samples]."""
    rng = rng if rng is not None else np.random.default_rng(k)
    n = max(1, int(round(seconds * sr)))
    t = np.arange(n) / sr
    freq = 220.0 * 2 ** (k / 2) * rng.uniform(0.98, 1.02)
    x = 0.5 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) + 0.05 * rng.standard_normal(n)
    return x.astype(np.float32)


def write_wav(path: str | Path, waveform: np.ndarray, sr: int, *, format: str = "WAV") -> Path:
    """Write ``waveform`` (float32 [n_samples]) as a 16-bit file (WAV or AU), creating folders."""
    import soundfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Encoding in memory and writing the bytes is much faster than letting libsndfile write the path.
    buffer = io.BytesIO()
    soundfile.write(buffer, waveform, sr, subtype="PCM_16", format=format)
    path.write_bytes(buffer.getvalue())
    return path


def write_tone_folder(
    root: str | Path, *, classes: int = 3, clips: int = 6, seconds: float = 0.5, sr: int = 16000, seed: int = 0
) -> Path:
    """Write a ``folder`` dataset: ``root/tone<k>/clip<j>.wav``, easy to classify.

    Parameters
    ----------
    root : str or Path
        Folder to create (may exist).
    classes : int, default=3
    clips : int, default=6
        Clips per class.
    seconds : float, default=0.5
    sr : int, default=16000
    seed : int, default=0

    Returns
    -------
    Path
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for k in range(classes):
        for j in range(clips):
            write_wav(root / f"tone{k}" / f"clip{j:03d}.wav", tone(k, seconds=seconds, sr=sr, rng=rng), sr)
    return root


def write_csv_dataset(
    root: str | Path, *, classes: int = 3, clips: int = 6, folds: int | None = None, groups: bool = False,
    seconds: float = 0.2, sr: int = 16000, seed: int = 0, name: str = "index.csv",
) -> Path:
    """Write ``root/audio/*.wav`` and ``root/<name>`` (``path,label[,fold][,group]``); return the CSV path.

    With ``folds``, clip ``j`` of each class gets fold ``j % folds + 1``; with
    ``groups``, clips ``2i`` and ``2i+1`` of a class share group ``g<k>_<i>``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    header = ["path", "label"] + (["fold"] if folds else []) + (["group"] if groups else [])
    lines = [",".join(header)]
    for k in range(classes):
        for j in range(clips):
            rel = f"audio/tone{k}_{j:03d}.wav"
            write_wav(root / rel, tone(k, seconds=seconds, sr=sr, rng=rng), sr)
            row = [rel, f"tone{k}"] + ([str(j % folds + 1)] if folds else []) + ([f"g{k}_{j // 2}"] if groups else [])
            lines.append(",".join(row))
    path = root / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_urbansound8k(
    root: str | Path, *, classes: int = 3, per_fold: int = 1, seconds: float = 0.2, sr: int = 16000, seed: int = 0
) -> Path:
    """Write ``root/UrbanSound8K`` (metadata CSV + ``audio/fold1..fold10``); return that folder.

    Each fold holds ``per_fold`` clips per class; clip ``j`` of a fold comes from
    Freesound id ``1000 * fold + j`` (so two classes share a source, as sources are
    per fold in the real data).
    """
    base = Path(root) / "UrbanSound8K"
    rng = np.random.default_rng(seed)
    names = ["air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling"][:classes]
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    for fold in range(1, 11):
        for k, name in enumerate(names):
            for j in range(per_fold):
                fs_id = 1000 * fold + j
                file = f"{fs_id}-{k}-0-{j}.wav"
                write_wav(base / "audio" / f"fold{fold}" / file, tone(k, seconds=seconds, sr=sr, rng=rng), sr)
                lines.append(f"{file},{fs_id},0.0,{seconds},1,{fold},{k},{name}")
    (base / "metadata").mkdir(parents=True, exist_ok=True)
    (base / "metadata" / "UrbanSound8K.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return base


def write_esc50(
    root: str | Path, *, classes: int = 3, per_fold: int = 2, seconds: float = 0.2, sr: int = 16000, seed: int = 0
) -> Path:
    """Write ``root/ESC-50`` (``meta/esc50.csv`` + ``audio/``); return that folder.

    Each of the 5 folds holds ``per_fold`` clips per class, all takes of one
    source file (``src_file``) per fold and class.
    """
    base = Path(root) / "ESC-50"
    rng = np.random.default_rng(seed)
    names = ["dog", "rooster", "pig", "cow", "frog"][:classes]
    lines = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for k, name in enumerate(names):
            src = f"{100000 + 10 * fold + k}"
            for j in range(per_fold):
                take = "ABCDEFGH"[j]
                file = f"{fold}-{src}-{take}-{k}.wav"
                write_wav(base / "audio" / file, tone(k, seconds=seconds, sr=sr, rng=rng), sr)
                lines.append(f"{file},{fold},{k},{name},{k == 0},{src},{take}")
    (base / "meta").mkdir(parents=True, exist_ok=True)
    (base / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return base


def write_gtzan(
    root: str | Path,
    *,
    ext: str = "wav",
    nest: str = "genres",
    skip: tuple[str, ...] = (),
    corrupt: tuple[str, ...] = (),
    only: int | None = None,
    seconds: float = 0.02,
    sr: int = 8000,
    seed: int = 0,
) -> Path:
    """Write every file of the fault-filtered GTZAN lists (tiny clips); return the GTZAN folder.

    Parameters
    ----------
    ext : {"wav", "au"}
        Extension of the written files (``au`` is the original GTZAN format).
    nest : str
        Sub-folder holding the genre folders (``"genres"``; ``""`` puts them in ``root/GTZAN``).
    skip : tuple of str
        List entries (``jazz/jazz.00054.wav``) not to write.
    corrupt : tuple of str
        List entries written as zero-byte files (unreadable).
    only : int, optional
        Write only the first ``only`` entries of each list.
    """
    base = Path(root) / "GTZAN"
    genres_dir = base / nest if nest else base
    rng = np.random.default_rng(seed)
    genres = sorted({e.split("/")[0] for entries in gtzan_lists().values() for e in entries})
    for entries in gtzan_lists().values():
        for entry in entries[:only]:
            if entry in skip:
                continue
            path = (genres_dir / entry).with_suffix("." + ext)
            path.parent.mkdir(parents=True, exist_ok=True)
            if entry in corrupt:
                path.write_bytes(b"")
                continue
            wave = tone(genres.index(entry.split("/")[0]), seconds=seconds, sr=sr, rng=rng)
            write_wav(path, wave, sr, format=ext.upper())
    return base


def write_ballroom(
    root: str | Path, *, extended: bool = False, clips: int = 10, seconds: float = 0.05, sr: int = 8000,
    seed: int = 0,
) -> Path:
    """Write ``root/BallroomData`` (or ``root/extended_ballroom``) class folders; return that folder.

    ``clips`` files per folder (``BallroomData`` also gets an empty ``nada`` folder
    and a stray list file, as some copies have).
    """
    base = Path(root) / ("extended_ballroom" if extended else "BallroomData")
    rng = np.random.default_rng(seed)
    folders = EXTENDED_BALLROOM_FOLDERS if extended else BALLROOM_FOLDERS
    for k, name in enumerate(folders):
        for j in range(clips):
            write_wav(base / name / f"{name.lower()}-{j:03d}.wav", tone(k, seconds=seconds, sr=sr, rng=rng), sr)
    if not extended:
        (base / "nada").mkdir(exist_ok=True)
        (base / "allBallroomFiles").write_text("\n".join(str(p) for p in sorted(base.rglob("*.wav"))))
    return base


def write_tut(
    root: str | Path,
    *,
    year: int = 2017,
    classes: int = 3,
    locations: int = 4,
    segments: int = 2,
    evaluation: bool = True,
    seconds: float = 0.1,
    sr: int = 16000,
    seed: int = 0,
) -> Path:
    """Write a TUT Acoustic Scenes development set (and, for 2017, the evaluation set).

    ``locations`` recording locations per class, ``segments`` clips per location
    (``a003_10_20.wav`` style names); location ``i`` of each class is in fold
    ``i % 4 + 1``. Files: ``meta.txt``, ``evaluation_setup/fold{k}_train.txt``,
    ``fold{k}_evaluate.txt``, ``fold{k}_test.txt``, ``audio/``. The evaluation
    set (``year=2017`` and ``evaluation``) is a sibling folder holding
    ``meta.txt`` and ``audio/<i>.wav``, ``segments`` clips per class.

    Returns
    -------
    Path
        The development folder ``root/TUT-acoustic-scenes-<year>-development``.
    """
    dev = Path(root) / f"TUT-acoustic-scenes-{year}-development"
    rng = np.random.default_rng(seed)
    names = TUT_CLASSES[:classes]
    meta, fold_of = [], {}
    for k, name in enumerate(names):
        for i in range(locations):
            location = f"{'abcde'[k]}{i + 1:03d}"
            for s in range(segments):
                rel = f"audio/{location}_{10 * s}_{10 * s + 10}.wav"
                write_wav(dev / rel, tone(k, seconds=seconds, sr=sr, rng=rng), sr)
                meta.append((rel, name, location))
                fold_of[rel] = i % 4 + 1
    lines = [f"{r}\t{n}\t{loc}" if year >= 2017 else f"{r}\t{n}" for r, n, loc in meta]
    (dev / "meta.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    setup = dev / "evaluation_setup"
    setup.mkdir(exist_ok=True)
    for f in range(1, 5):
        train = [f"{r}\t{n}" for r, n, _ in meta if fold_of[r] != f]
        test = [(r, n) for r, n, _ in meta if fold_of[r] == f]
        (setup / f"fold{f}_train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
        (setup / f"fold{f}_evaluate.txt").write_text("\n".join(f"{r}\t{n}" for r, n in test) + "\n", encoding="utf-8")
        (setup / f"fold{f}_test.txt").write_text("\n".join(r for r, _ in test) + "\n", encoding="utf-8")
    if year >= 2017 and evaluation:
        ev = Path(root) / f"TUT-acoustic-scenes-{year}-evaluation"
        lines, i = [], 0
        for k, name in enumerate(names):
            for _ in range(segments):
                i += 1
                write_wav(ev / "audio" / f"{i}.wav", tone(k, seconds=seconds, sr=sr, rng=rng), sr)
                lines.append(f"audio/{i}.wav\t{name}")
        (ev / "meta.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dev
