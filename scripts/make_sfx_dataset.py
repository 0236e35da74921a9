#!/usr/bin/env python3
"""Build ``sonicpi_samples``: a tiny folder dataset from Debian's ``sonic-pi-samples``.

The package ships 165 short CC0 samples from freesound.org (``/usr/share/sonic-pi/
samples/*.flac``) named ``<category>_<name>.flac``. The category prefix is the
class (``tabla``, ``drum``, ``elec``, ``loop``, ``bd``, ``ambi``, ``mehackit``,
``perc``, ``bass``, ``glitch``; categories with fewer than ``--min-per-class``
files are dropped). It is a smoke-test-sized dataset (about 150 clips, 8-26 per
class), a mix of acoustic recordings (tabla, drum kit, perc, ambi) and
electronic / synthesised sounds (elec, bd, bass, glitch): use it for small
sanity checks, not for conclusions. See docs/real-audio.md.

    apt-get install sonic-pi-samples
    .venv/bin/python scripts/make_sfx_dataset.py      # -> data_local/sonicpi_samples/<class>/<name>.wav
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parents[1]
SRC = Path("/usr/share/sonic-pi/samples")
DEFAULT_OUT = REPO / "data_local" / "sonicpi_samples"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", type=Path, default=SRC, help=f"sample folder (default {SRC})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument("--sr", type=int, default=22050)
    ap.add_argument("--duration", type=float, default=4.0, help="pad or crop every clip to this length (0: keep)")
    ap.add_argument("--min-per-class", type=int, default=8)
    ap.add_argument("--force", action="store_true", help="delete the output folder first")
    args = ap.parse_args(argv)

    files = sorted(args.src.glob("*.flac"))
    if not files:
        sys.exit(f"no .flac files in {args.src}: apt-get install sonic-pi-samples")
    by_class: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        by_class[f.stem.split("_")[0]].append(f)
    kept = {c: fs for c, fs in sorted(by_class.items()) if len(fs) >= args.min_per_class}
    dropped = {c: len(fs) for c, fs in by_class.items() if c not in kept}
    if args.force and args.out.exists():
        shutil.rmtree(args.out)
    n_fix = int(round(args.duration * args.sr))
    fade = int(0.02 * args.sr)
    for c, fs in kept.items():
        (args.out / c).mkdir(parents=True, exist_ok=True)
        for f in fs:
            x, sr = sf.read(str(f), dtype="float32", always_2d=True)
            y = x.mean(axis=1)
            if sr != args.sr:
                y = soxr.resample(y, sr, args.sr)
            if n_fix:
                if y.size > n_fix:  # crop with a short fade-out
                    y = y[:n_fix].copy()
                    y[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
                y = np.pad(y, (0, n_fix - y.size))
            peak = float(np.max(np.abs(y)))
            if peak > 0.99:
                y *= 0.99 / peak
            sf.write(str(args.out / c / (f.stem + ".wav")), y, args.sr, subtype="PCM_16")
    total = sum(len(fs) for fs in kept.values())
    print(f"{len(kept)} classes, {total} clips -> {args.out}")
    print("per class:", {c: len(fs) for c, fs in kept.items()})
    print("dropped (too few files):", dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
