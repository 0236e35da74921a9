"""Small file helpers shared by the loaders: path checks, audio discovery, CSV reading.

Every check raises :class:`~fewshot.exceptions.DataError` naming the loader, the
path that was checked and what is expected there.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from ...exceptions import DataError

__all__ = [
    "AUDIO_EXTENSIONS",
    "resolve_root",
    "require_dir",
    "require_file",
    "find_audio",
    "read_csv",
    "check_exist",
]

#: File extensions (lower case, without the dot) that count as audio.
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3", "au", "aiff", "aif")


def resolve_root(path: str | Path | None, *, loader: str, expected: str) -> Path:
    """Absolute, user-expanded ``path``; a missing or empty path raises.

    Parameters
    ----------
    path : str or Path or None
        The path as the user typed it.
    loader : str
        Loader name, used in the message.
    expected : str
        What the path should hold (one phrase), used in the message.
    """
    if path is None or not str(path).strip():
        raise DataError(f"{loader}: no path given; expected {expected}")
    p = Path(str(path).strip()).expanduser()
    resolved = p.resolve()
    if not resolved.exists():
        raise DataError(f"{loader}: {resolved} not found; expected {expected}")
    return resolved


def require_dir(path: Path, *, loader: str, expected: str) -> Path:
    """Return ``path`` if it is a folder, else raise naming it and ``expected``."""
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "not found"
        raise DataError(f"{loader}: {path} {what}; expected {expected}")
    return path


def require_file(path: Path, *, loader: str, expected: str) -> Path:
    """Return ``path`` if it is a file, else raise naming it and ``expected``."""
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise DataError(f"{loader}: {path} {what}; expected {expected}")
    return path


def is_audio(path: Path) -> bool:
    """True for a visible file whose extension is one of :data:`AUDIO_EXTENSIONS`."""
    return (
        not path.name.startswith(".")
        and path.suffix[1:].lower() in AUDIO_EXTENSIONS
        and path.is_file()
    )


def find_audio(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursively, hidden entries skipped), sorted by path."""
    found = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if is_audio(p):
            found.append(p)
    return sorted(found)


def read_csv(path: Path, *, loader: str, required: Iterable[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV file with a header; check that the ``required`` columns are present.

    Column names are stripped of whitespace and a UTF-8 BOM; cell values are
    stripped. Returns the header and one dict per data row (blank rows skipped).

    Raises
    ------
    DataError
        Unreadable file, no header, or a required column missing (the message
        names the file, the missing column and the columns found).
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise DataError(f"{loader}: {path} is empty; expected a CSV header line") from None
            rows = []
            for line_no, values in enumerate(reader, start=2):
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    raise DataError(
                        f"{loader}: {path} line {line_no} has {len(values)} fields, "
                        f"the header has {len(header)} ({', '.join(header)})"
                    )
                rows.append({h: v.strip() for h, v in zip(header, values, strict=True)})
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{loader}: cannot read {path} as a UTF-8 CSV file ({err})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(
            f"{loader}: {path} has no {missing[0]!r} column; columns found: {', '.join(header) or '(none)'}"
        )
    return header, rows


def check_exist(paths: Iterable[Path], *, loader: str, listed_in: Path | str) -> None:
    """Raise if any of ``paths`` is not a file, naming the first and how many are missing."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(
            f"{loader}: audio file {missing[0]} listed in {listed_in} not found{more}; "
            "check that the dataset folder is complete"
        )
