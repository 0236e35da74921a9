"""Clips dropped by ``--on-error skip``: read ``skipped.csv`` and describe them in the report."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

__all__ = ["read_skipped", "skipped_markdown"]


def read_skipped(run_dir: str | Path) -> list[dict]:
    """Rows ``{"path", "reason"}`` of ``run_dir/skipped.csv`` (empty when no clip was skipped)."""
    path = Path(run_dir) / "skipped.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def skipped_markdown(run_dirs: Sequence[str | Path], *, limit: int = 20) -> list[str]:
    """Report lines listing the skipped clips of each run folder (none when nothing was skipped)."""
    lines: list[str] = []
    for d in run_dirs:
        rows = read_skipped(d)
        if not rows:
            continue
        if not lines:
            lines = ["## Skipped clips", "",
                     "Clips that could not be used (unreadable, zero-length, silent or non-finite audio) were "
                     "dropped for every method (`--on-error skip`), so results still pair.", ""]
        lines += [f"`{d}`: {len(rows)} clip(s) skipped (listed in `{Path(d) / 'skipped.csv'}`)", ""]
        lines += [f"- `{r['path']}`: {r['reason']}" for r in rows[:limit]]
        if len(rows) > limit:
            lines.append(f"- … and {len(rows) - limit} more")
        lines.append("")
    return lines
