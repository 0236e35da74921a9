#!/usr/bin/env python3
"""Build ``gm_instruments``: a real-sample instrument-recognition folder dataset.

Every clip is a short random melody (or chord sequence) for one General-MIDI
instrument, written to a MIDI file by a tiny pure-Python writer below (no
``mido``), rendered by ``fluidsynth`` with one of the GM soundfonts Debian ships
(recorded instrument samples, several sample sets per instrument), then mixed to
mono with a little noise and a random level, and saved as 16-bit WAV.

Layout (the ``folder`` loader's: one sub-folder per class)::

    <out>/<class>/<soundfont>_<index>.wav     e.g. violin/timgm6mb_017.wav
    <out>/metadata.csv                        one row per clip: every random choice

Each clip has its own melody, drawn from ``SeedSequence([seed, class_index,
clip_index])``, so no two clips share material; the soundfont is in the file
name (a domain label for cross-soundfont tests). The build is deterministic for a
given seed and soundfont set, and resumable (existing WAVs are kept unless
``--force``). See docs/real-audio.md.

Needs: ``fluidsynth`` and the soundfont packages (scripts/make_gm_dataset.sh
installs them), numpy and soundfile.

    .venv/bin/python scripts/make_gm_dataset.py            # 10 classes x 48 clips x 4 s, 22.05 kHz
    .venv/bin/python scripts/make_gm_dataset.py --verify-only
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "data_local" / "gm_instruments"

#: Soundfonts looked for by default: short name -> (Debian package, path).
#: Four distinct sample sets (MuseScore General reuses some FluidR3 material but
#: re-samples many instruments; TimGM6mb and the Csound GM bank are independent).
SOUNDFONTS = {
    "fluidr3": ("fluid-soundfont-gm", "/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    "musescore": ("musescore-general-soundfont-small", "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
    "timgm6mb": ("timgm6mb-soundfont", "/usr/share/sounds/sf2/TimGM6mb.sf2"),
    "csoundgm": ("csound-soundfont", "/usr/share/sounds/sf2/sf_GMbank.sf2"),
}


@dataclass(frozen=True)
class Instrument:
    name: str
    program: int  # GM program number, 0-based
    low: int  # playable MIDI range
    high: int
    poly: bool  # may play chords
    sustained: bool  # bowed/blown/organ: gets mod-wheel vibrato, longer notes


#: Ten GM instruments from different families (keyboard, plucked, bowed, brass,
#: woodwind, mallet, organ, reed).
INSTRUMENTS = [
    Instrument("piano", 0, 36, 96, True, False),
    Instrument("acoustic_guitar", 24, 40, 79, True, False),
    Instrument("violin", 40, 55, 93, False, True),
    Instrument("cello", 42, 36, 72, False, True),
    Instrument("trumpet", 56, 55, 82, False, True),
    Instrument("flute", 73, 60, 96, False, True),
    Instrument("clarinet", 71, 50, 89, False, True),
    Instrument("church_organ", 19, 36, 84, True, True),
    Instrument("marimba", 12, 45, 96, True, False),
    Instrument("alto_sax", 65, 49, 80, False, True),
]

SCALES = {
    "major": [0, 2, 4, 5, 7, 9, 11],
    "minor": [0, 2, 3, 5, 7, 8, 10],
    "harmonic_minor": [0, 2, 3, 5, 7, 8, 11],
    "dorian": [0, 2, 3, 5, 7, 9, 10],
    "pentatonic": [0, 2, 4, 7, 9],
}

TPQ = 480  # MIDI ticks per quarter note
STEPS = [-4, -3, -2, -1, 0, 1, 2, 3, 4]  # melodic steps in scale degrees
STEP_P = [0.03, 0.07, 0.15, 0.22, 0.06, 0.22, 0.15, 0.07, 0.03]


# --------------------------------------------------------------------------- MIDI


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, events: list[tuple[float, int, bytes]], tempo_bpm: float, end_s: float) -> None:
    """Write a format-0 MIDI file. ``events``: (time_s, order, message bytes)."""
    us_per_beat = int(round(60e6 / tempo_bpm))
    ticks_per_s = TPQ * 1e6 / us_per_beat
    body = [(0, -1, b"\xff\x51\x03" + us_per_beat.to_bytes(3, "big"))]
    body += [(int(round(t * ticks_per_s)), order, msg) for t, order, msg in events]
    body.sort(key=lambda e: (e[0], e[1]))
    track, last = bytearray(), 0
    for tick, _, msg in body:
        track += _vlq(tick - last) + msg
        last = tick
    end_tick = max(last, int(round(end_s * ticks_per_s)))
    track += _vlq(end_tick - last) + b"\xff\x2f\x00"
    data = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TPQ) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)
    path.write_bytes(data)


# ------------------------------------------------------------------------ melodies


def compose(inst: Instrument, rng: np.random.Generator, duration: float) -> tuple[list, dict]:
    """Random melody / chord sequence for ``inst``. Returns (MIDI events, parameters)."""
    tempo = float(rng.uniform(70, 150))
    beat = 60.0 / tempo
    scale_name = str(rng.choice(list(SCALES)))
    root = int(rng.integers(0, 12))
    pcs = set((root + d) % 12 for d in SCALES[scale_name])
    # a register window of up to two octaves inside the instrument's range
    span = min(24, inst.high - inst.low)
    lo = int(rng.integers(inst.low, inst.high - span + 1))
    pitches = [p for p in range(lo, lo + span + 1) if p % 12 in pcs]
    style = "melody"
    if inst.poly:
        style = str(rng.choice(["melody", "chords", "arpeggio"], p=[0.45, 0.35, 0.2]))
    legato = float(rng.uniform(0.85, 1.0) if inst.sustained else rng.uniform(0.5, 1.0))
    base_vel = int(rng.integers(55, 111))
    if style == "chords":
        dur_choices, dur_p = [1.0, 2.0, 1.5, 0.5], [0.4, 0.3, 0.15, 0.15]
    elif style == "arpeggio":
        dur_choices, dur_p = [0.25, 0.5], [0.5, 0.5]
    elif inst.sustained:
        dur_choices, dur_p = [0.5, 1.0, 1.5, 2.0, 0.25], [0.3, 0.35, 0.1, 0.15, 0.1]
    else:
        dur_choices, dur_p = [0.25, 0.5, 1.0, 1.5, 2.0], [0.25, 0.35, 0.25, 0.05, 0.1]

    ch = 0
    events: list[tuple[float, int, bytes]] = []
    cc = {7: int(rng.integers(90, 128)), 10: 64, 91: int(rng.integers(0, 91)), 93: int(rng.integers(0, 51))}
    if inst.sustained:
        cc[1] = int(rng.integers(0, 51))  # mod wheel: vibrato depth
    for num, val in cc.items():
        events.append((0.0, 0, bytes([0xB0 | ch, num, val])))
    events.append((0.0, 1, bytes([0xC0 | ch, inst.program])))

    t = float(rng.uniform(0.0, 0.25))
    idx = int(rng.integers(0, len(pitches)))
    n_notes = 0
    while t < duration - 0.3:
        d = float(rng.choice(dur_choices, p=dur_p)) * beat
        if n_notes and rng.random() < 0.08:  # rest
            t += d
            continue
        # random walk in scale steps, mostly small, reflecting at the window edges
        step = int(rng.choice(STEPS, p=STEP_P))
        top = len(pitches) - 1
        idx += step
        idx = -idx if idx < 0 else (2 * top - idx if idx > top else idx)
        idx = min(max(idx, 0), top)
        notes = [pitches[idx]]
        if style == "chords":  # diatonic triad (sometimes 7th), optional bass note an octave down
            base = min(idx, max(top - 6, 0))
            notes = [pitches[base + k] for k in (0, 2, 4, 6)[: int(rng.integers(3, 5))] if base + k <= top]
            if rng.random() < 0.5 and notes[0] - 12 >= inst.low:
                notes.insert(0, notes[0] - 12)
        vel = int(np.clip(base_vel + rng.integers(-12, 13), 20, 127))
        strum = float(rng.uniform(0.01, 0.03)) if inst.name == "acoustic_guitar" else 0.0
        for k, p in enumerate(notes):
            on = t + k * strum
            off = t + d * legato
            events.append((on, 3, bytes([0x90 | ch, p, vel])))
            events.append((max(off, on + 0.03), 2, bytes([0x80 | ch, p, 0])))
        n_notes += 1
        t += d
    params = dict(
        tempo=round(tempo, 1),
        scale=scale_name,
        root=root,
        register_low=lo,
        style=style,
        legato=round(legato, 2),
        velocity=base_vel,
        n_events=n_notes,
        cc_reverb=cc[91],
        cc_chorus=cc[93],
        cc_mod=cc.get(1, 0),
        cc_volume=cc[7],
    )
    return events, params


# ------------------------------------------------------------------------ rendering


@dataclass
class Job:
    cls: str
    cls_index: int
    index: int
    soundfont: str
    sf_path: str
    seed: int
    out: str
    sr: int
    duration: float
    fluidsynth: str


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=float)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / (x.std() + 1e-12)


def render(job: Job) -> dict:
    """Compose, render and post-process one clip; returns its metadata row."""
    rng = np.random.default_rng(np.random.SeedSequence([job.seed, job.cls_index, job.index]))
    inst = INSTRUMENTS[job.cls_index]
    events, params = compose(inst, rng, job.duration)
    fx = dict(
        rev_room=round(float(rng.uniform(0.1, 0.9)), 3),
        rev_damp=round(float(rng.uniform(0.0, 0.8)), 3),
        rev_width=round(float(rng.uniform(0.3, 1.0)), 3),
        rev_level=round(float(rng.uniform(0.2, 0.9)), 3),
        cho_nr=int(rng.integers(1, 6)),
        cho_level=round(float(rng.uniform(0.5, 2.0)), 3),
        cho_speed=round(float(rng.uniform(0.2, 1.2)), 3),
        cho_depth=round(float(rng.uniform(2.0, 12.0)), 3),
    )
    noise_kind = str(rng.choice(["white", "pink"]))
    snr_db = float(rng.uniform(25.0, 45.0))
    level_db = float(rng.uniform(-28.0, -16.0))
    out = Path(job.out)
    row = dict(
        file=f"{job.cls}/{out.name}",
        label=job.cls,
        program=inst.program,
        soundfont=job.soundfont,
        seed=job.seed,
        clip_index=job.index,
        noise=noise_kind,
        snr_db=round(snr_db, 1),
        level_dbfs=round(level_db, 1),
    )
    row.update(params)
    row.update(fx)
    if out.exists():  # resumable: every choice above is deterministic, the audio is already there
        return row

    with tempfile.TemporaryDirectory(prefix="gmds-") as tmp:
        mid, wav = Path(tmp) / "clip.mid", Path(tmp) / "clip.wav"
        write_midi(mid, events, params["tempo"], job.duration + 0.5)
        cmd = [
            job.fluidsynth, "-ni", "-q", "-r", str(job.sr), "-F", str(wav),
            "-o", "audio.file.type=wav", "-o", "audio.file.format=float",
            "-o", "synth.dynamic-sample-loading=1", "-o", "synth.cpu-cores=1",
            "-o", f"synth.reverb.room-size={fx['rev_room']}", "-o", f"synth.reverb.damp={fx['rev_damp']}",
            "-o", f"synth.reverb.width={fx['rev_width']}", "-o", f"synth.reverb.level={fx['rev_level']}",
            "-o", f"synth.chorus.nr={fx['cho_nr']}", "-o", f"synth.chorus.level={fx['cho_level']}",
            "-o", f"synth.chorus.speed={fx['cho_speed']}", "-o", f"synth.chorus.depth={fx['cho_depth']}",
            job.sf_path, str(mid),
        ]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if res.returncode != 0 or not wav.exists():
            raise RuntimeError(f"fluidsynth failed for {job.out}: {res.stderr.strip()[-500:]}")
        x, sr = sf.read(str(wav), dtype="float64", always_2d=True)
    if sr != job.sr:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, asked {job.sr}")

    n = int(round(job.duration * job.sr))
    y = x.mean(axis=1)[:n]
    y = np.pad(y, (0, n - y.size))
    active = np.abs(y) > 1e-4
    sig_rms = float(np.sqrt(np.mean(y[active] ** 2))) if active.any() else 0.0
    if sig_rms < 1e-5:
        raise RuntimeError(f"silent render for {job.out} (soundfont {job.soundfont}, program {inst.program})")
    y = y / sig_rms  # active-part RMS = 1
    noise = _pink(rng, n) if noise_kind == "pink" else rng.standard_normal(n)
    y = y + noise * 10 ** (-snr_db / 20)
    fade = int(0.01 * job.sr)
    ramp = np.linspace(0.0, 1.0, fade)
    y[:fade] *= ramp
    y[-fade:] *= ramp[::-1]
    y *= 10 ** (level_db / 20) / np.sqrt(np.mean(y**2))
    peak = float(np.max(np.abs(y)))
    if peak > 0.89:  # keep 1 dB headroom: never clip
        y *= 0.89 / peak
    tmp_out = out.with_suffix(".tmp")
    sf.write(str(tmp_out), y.astype(np.float32), job.sr, format="WAV", subtype="PCM_16")
    os.replace(tmp_out, out)
    return row


# --------------------------------------------------------------------------- verify


def verify(out: Path, sr: int | None = None, duration: float | None = None) -> bool:
    """Count clips per class and check rate, length, channels, RMS > 0, no clipping."""
    classes = sorted(d.name for d in out.iterdir() if d.is_dir())
    ok, total, nbytes = True, 0, 0
    print(f"{'class':16s} {'clips':>5s} {'sr':>6s} {'dur min/max':>12s} {'rms dBFS min/med/max':>22s} {'peak max':>8s}")
    per_sf: dict[str, int] = {}
    for c in classes:
        files = sorted((out / c).glob("*.wav"))
        srs, durs, rmss, peaks = set(), [], [], []
        for f in files:
            info = sf.info(str(f))
            x, r = sf.read(str(f), dtype="float64")
            srs.add(r)
            durs.append(x.shape[0] / r)
            rmss.append(20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-12))
            peaks.append(float(np.max(np.abs(x))))
            nbytes += f.stat().st_size
            per_sf[f.name.split("_")[0]] = per_sf.get(f.name.split("_")[0], 0) + 1
            if info.channels != 1 or info.subtype != "PCM_16":
                print(f"  BAD format {f}: {info.channels} ch {info.subtype}")
                ok = False
        total += len(files)
        bad = [f.name for f, rm, p in zip(files, rmss, peaks, strict=True) if rm < -60 or p >= 0.999]
        if bad or len(srs) != 1 or (sr and srs != {sr}) or (duration and abs(min(durs) - duration) > 1e-3):
            ok = False
            print(f"  PROBLEM in {c}: silent/clipped={bad[:5]} srs={srs}")
        print(
            f"{c:16s} {len(files):5d} {'/'.join(map(str, srs)):>6s} {min(durs):5.2f}/{max(durs):5.2f}  "
            f"{min(rmss):6.1f}/{np.median(rmss):6.1f}/{max(rmss):6.1f} {max(peaks):8.3f}"
        )
    print(f"total: {len(classes)} classes, {total} clips, {nbytes / 2**20:.1f} MiB; per soundfont: {per_sf}")
    print("verify:", "OK" if ok else "FAILED")
    return ok


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument("--clips-per-class", type=int, default=48, help="default 48 (12 per soundfont with 4)")
    ap.add_argument("--duration", type=float, default=4.0, help="clip length in seconds (default 4)")
    ap.add_argument("--sr", type=int, default=22050, help="sample rate (default 22050)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="parallel fluidsynth processes (default 2)")
    ap.add_argument(
        "--soundfonts",
        nargs="+",
        default=None,
        metavar="NAME_OR_PATH",
        help=f"short names ({', '.join(SOUNDFONTS)}) or .sf2/.sf3 paths; default: all installed",
    )
    ap.add_argument("--classes", nargs="+", default=None, help="subset of class names")
    ap.add_argument(
        "--force", action="store_true", help="delete the output folder first (else existing clips are kept)"
    )
    ap.add_argument("--verify-only", action="store_true")
    args = ap.parse_args(argv)

    if args.verify_only:
        return 0 if verify(args.out, args.sr, args.duration) else 1

    fs = shutil.which("fluidsynth")
    if not fs:
        sys.exit("fluidsynth not found: run scripts/make_gm_dataset.sh (apt-get install fluidsynth ...)")
    sfs: dict[str, str] = {}
    for s in args.soundfonts or [k for k, (_, p) in SOUNDFONTS.items() if Path(p).exists()]:
        if s in SOUNDFONTS:
            path = SOUNDFONTS[s][1]
            if not Path(path).exists():
                sys.exit(f"soundfont {s} missing: apt-get install {SOUNDFONTS[s][0]}")
            sfs[s] = path
        elif Path(s).exists():
            sfs[Path(s).stem.lower().replace("_", "-")] = str(Path(s).resolve())
        else:
            sys.exit(f"unknown soundfont {s!r}")
    if not sfs:
        sys.exit("no soundfont installed: run scripts/make_gm_dataset.sh")
    insts = INSTRUMENTS if not args.classes else [i for i in INSTRUMENTS if i.name in args.classes]
    if args.classes and len(insts) != len(args.classes):
        sys.exit(f"unknown class among {args.classes}; known: {[i.name for i in INSTRUMENTS]}")

    if args.force and args.out.exists():
        shutil.rmtree(args.out)
    sf_names = list(sfs)
    jobs = []
    for inst in insts:
        ci = INSTRUMENTS.index(inst)
        (args.out / inst.name).mkdir(parents=True, exist_ok=True)
        for i in range(args.clips_per_class):
            name = sf_names[i % len(sf_names)]  # balanced: same number of clips per soundfont
            out = args.out / inst.name / f"{name}_{i:03d}.wav"
            jobs.append(Job(inst.name, ci, i, name, sfs[name], args.seed, str(out), args.sr, args.duration, fs))

    print(
        f"{len(insts)} classes x {args.clips_per_class} clips, soundfonts {sf_names}, "
        f"{args.sr} Hz, {args.duration} s -> {args.out} ({args.jobs} jobs)",
        flush=True,
    )
    t0 = time.time()
    rows = []
    with ProcessPoolExecutor(max_workers=args.jobs) as ex:
        for k, row in enumerate(ex.map(render, jobs, chunksize=4), 1):
            rows.append(row)
            if k % 50 == 0 or k == len(jobs):
                print(f"  {k}/{len(jobs)} clips, {time.time() - t0:.0f} s", flush=True)
    fields = list(rows[0])
    with open(args.out / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    # leave-one-soundfont-out folds for the ``csv`` loader (cross-timbre generalisation)
    with open(args.out / "by_soundfont.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "fold"])
        w.writerows([r["file"], r["label"], r["soundfont"]] for r in rows)
    (args.out / "SOURCE.txt").write_text(
        "Built by scripts/make_gm_dataset.py (fewshot); see docs/real-audio.md.\n"
        f"args: {vars(args)}\nsoundfonts: {sfs}\n"
    )
    print(f"rendered in {time.time() - t0:.0f} s")
    return 0 if verify(args.out, args.sr, args.duration) else 1


if __name__ == "__main__":
    sys.exit(main())
