"""Benchmark random-CNN feature extraction: plain vs optimized forward passes, side by side.

For every front-end and width: seconds per clip (median of repeats, batch 1,
under ``torch.inference_mode``) of the plain definition and of the optimized
formulation, clips/s, the speed-up, GFLOP per clip (aten-level count of the
plain path, 1 FMA = 2 FLOP) and the achieved fraction of an sgemm measured in
the same run; with ``--seeds K`` (default 3) also K networks of different seeds
run stacked as one network (``fewshot/frontends/stacked.py``), in network-clips/s,
and how many extraction stacks per pass (``stack_size``). Writes Markdown.

Usage::

    python scripts/bench_randomcnn.py --widths small --seconds 10 --repeats 3 --out bench.md
    python scripts/bench_randomcnn.py --seconds 5 --repeats 3 --threads 1 --clock cpu --seeds 3 --grids ''

The grid timings (SVM / ELM, fast vs plain) come from ``scripts/bench_grids.py`` (``--grids``);
this file's pieces are importable: :func:`machine_info`, :func:`sgemm_gflops`,
:func:`bench_extraction`, :func:`extraction_markdown`.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fewshot.frontends import (  # noqa: E402
    FRONTENDS,
    create_frontend,
    tuning,  # noqa: E402
)
from fewshot.frontends.extract import extract_features  # noqa: E402
from fewshot.frontends.extract_many import extract_features_many  # noqa: E402
from fewshot.frontends.stacked import stack_frontends, stack_size  # noqa: E402


def machine_info(device: str = "cpu") -> dict:
    """CPU model, cores, torch version, threads (and the GPU name on CUDA)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def sgemm_gflops(n: int = 2048, repeats: int = 5, device: str = "cpu", clock=time.perf_counter) -> float:
    """Median GFLOP/s of an n×n float32 matrix product on ``device`` (the in-run reference)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    a @ b
    times = []
    for _ in range(repeats):
        _sync(device)
        t = clock()
        a @ b
        _sync(device)
        times.append(clock() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def conv_gflops(repeats: int = 5, device: str = "cpu", clock=time.perf_counter) -> float:
    """Median GFLOP/s of a deep-channel oneDNN convolution (conv1d 512→512, kernel 7, 4,096 steps).

    On AMD Zen 4 MKL's sgemm runs AVX2 kernels while oneDNN's convolutions use
    AVX-512, so this second reference is up to ~2× the sgemm one; fractions are
    quoted against both.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 512, 4096, generator=g).to(device)
    w = torch.randn(512, 512, 7, generator=g).to(device)
    flop = 2 * 512 * 512 * 7 * (4096 - 6)
    with torch.inference_mode():
        torch.nn.functional.conv1d(x, w)
        times = []
        for _ in range(repeats):
            _sync(device)
            t = clock()
            torch.nn.functional.conv1d(x, w)
            _sync(device)
            times.append(clock() - t)
    return flop / statistics.median(times) / 1e9


def _gflop(fe, x) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fe.features(x, plain=True)
    return counter.get_total_flops() / 1e9


def _time_many(fns, repeats: int, device: str, min_time: float = 0.2, clock=time.perf_counter) -> list[float]:
    """Median seconds per call of several functions, measured interleaved (a, b, c, a, b, c, ...)."""
    for fn in fns:
        fn()
    _sync(device)
    t = time.perf_counter()
    fns[-1]()
    _sync(device)
    inner = max(1, int(min_time / max(time.perf_counter() - t, 1e-6)))
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, out, strict=True):
            _sync(device)
            t = clock()
            for _ in range(inner):
                fn()
            _sync(device)
            times.append((clock() - t) / inner)
    return [statistics.median(t) for t in out]


def _time_pair(plain, fast, repeats: int, device: str, min_time: float = 0.2,
               clock=time.perf_counter) -> tuple[float, float]:
    """Median seconds per call of two functions, measured interleaved (plain, fast, plain, ...) so that
    load from other processes hits both alike; each measurement loops until it lasts ``min_time``.
    ``clock=time.process_time`` measures CPU time (robust on a shared host with one thread)."""
    plain(), fast()  # warm-up
    _sync(device)
    t = time.perf_counter()
    fast()
    _sync(device)
    inner = max(1, int(min_time / max(time.perf_counter() - t, 1e-6)))
    out: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, times in ((plain, out[0]), (fast, out[1])):
            _sync(device)
            t = clock()
            for _ in range(inner):
                fn()
            _sync(device)
            times.append((clock() - t) / inner)
    return statistics.median(out[0]), statistics.median(out[1])


def bench_extraction(frontends: list[str] | None = None, widths: tuple[str, ...] = ("small", "large"), *,
                     seconds: float = 350_000 / 12_000, repeats: int = 3, device: str = "cpu",
                     sgemm: float | None = None, clock: str = "wall", log=print,
                     conv_ref: float | None = None, seeds: int = 3, bf16: bool = True,
                     extraction: bool = True) -> list[dict]:
    """One row per (front-end, width): plain and optimized seconds per clip at batch 1 (and stacked seeds).

    Parameters
    ----------
    frontends : list of str, optional
        Registered names (default: every random CNN).
    widths : tuple of str
    seconds : float
        Clip length (waveform samples = seconds · 12 kHz; log-mel frames = 1 + samples // 256).
    repeats : int
        Timed calls per path after one warm-up; the median is reported.
    device : str
    sgemm : float, optional
        Reference GFLOP/s (measured with :func:`sgemm_gflops` when None).
    clock : "wall" or "cpu"
        Wall-clock time, or process CPU time (use with one thread on a shared host).
    seeds : int, default=3
        Also time this many networks (seeds 0…K−1) stacked as one (0 or 1: skip); per network-clip.
    bf16 : bool, default=True
        Also time ``precision="bfloat16"`` (emulated, hence very slow, on CPUs without AVX512-BF16).
    extraction : bool, default=True
        Also time :func:`~fewshot.frontends.extract_many.extract_features_many` on ``max(seeds, 1)`` networks and
        16 clips (4 for front-ends slower than 20 clips/s), exactly as a study runs them: measured
        formulation and batch size, stacked where that pays, feature means copied out; per network-clip,
        after one warm-up call (which makes the measured choices).
    """
    names = frontends or [n for n in FRONTENDS.names() if FRONTENDS.get(n).meta["widths"] is not None]
    sgemm = sgemm or sgemm_gflops(device=device)
    g = torch.Generator().manual_seed(0)
    rows = []
    for name in names:
        for width in widths:
            fe = create_frontend(name, width=width, seed=0).eval().to(device)
            n = int(round(seconds * fe.sr))
            if fe.input == "logmel":
                x = -40.0 + 10.0 * torch.randn(1, 1, 1 + n // 256, 96, generator=g)
            else:
                x = 0.1 * torch.randn(1, n, generator=g)
            x = x.to(device)
            gflop = _gflop(fe, x)
            def run_bf16(fe=fe, x=x):
                fe.precision = "bfloat16"
                try:
                    return fe.features(x)
                finally:
                    fe.precision = "float32"

            fns = [lambda fe=fe, x=x: fe.features(x, plain=True), lambda fe=fe, x=x: fe.features(x)]
            if bf16:
                fns.append(run_bf16)
            nets = [fe] + [create_frontend(name, width=width, seed=s).eval().to(device)
                           for s in range(1, max(seeds, 1))]
            if seeds > 1:  # the same network (seed 0) and K − 1 more, run stacked, timed in the same interleave
                stacked = stack_frontends(nets)
                fns.append(lambda st=stacked, x=x: st.features(x))
            with torch.inference_mode():
                times = _time_many(fns, repeats, device,
                                   clock=time.process_time if clock == "cpu" else time.perf_counter)
            t_plain, t_fast = times[:2]
            t_bf16 = times[2] if bf16 else float("nan")
            row = {
                "frontend": name, "width": width, "n_features": fe.n_features, "input": fe.input,
                "gflop_per_clip": gflop, "plain_s": t_plain, "fast_s": t_fast,
                "plain_clips_s": 1 / t_plain, "fast_clips_s": 1 / t_fast, "speedup": t_plain / t_fast,
                "fast_gflops": gflop / t_fast, "fraction_sgemm": gflop / t_fast / sgemm,
                "bf16_s": t_bf16, "bf16_speedup": t_plain / t_bf16, "plain_gflops": gflop / t_plain,
            }
            if conv_ref:
                row["fraction_conv"] = gflop / t_fast / conv_ref
            if extraction:
                row.update(_bench_pipeline(nets, x, t_plain, repeats, device, clock))
            stacked_note = ""
            if seeds > 1:
                t_stacked = times[-1] / seeds  # per network-clip
                row.update(seeds=seeds, stacked_clips_s=1 / t_stacked, stacked_speedup=t_plain / t_stacked,
                           stacked_vs_fast=t_fast / t_stacked,
                           stacks=stack_size(fe, device) >= seeds)
                stacked_note = (f"; stacked {1 / t_stacked:8.2f} network-clips/s ({t_plain / t_stacked:.2f}x plain, "
                                f"{t_fast / t_stacked:.2f}x optimized{', used' if row['stacks'] else ''})")
                del stacked
            rows.append(row)
            log(f"{name:>17} {width:>5}: plain {1 / t_plain:8.2f} clips/s, fast {1 / t_fast:8.2f} clips/s "
                f"({t_plain / t_fast:.2f}x{f'; bf16 {t_plain / t_bf16:.2f}x' if bf16 else ''}), "
                f"{row['fast_gflops']:.0f} GFLOP/s"
                + stacked_note
                + (f"; extraction {row['extract_clips_s']:8.2f} network-clips/s ({row['extract_speedup']:.2f}x plain, "
                   f"batch {row['batch']}, {row['formulation']})" if extraction else ""))
            del fe, nets
    return rows


def _bench_pipeline(nets, x, t_single: float, repeats: int, device: str, clock: str) -> dict:
    """Network-clips/s of extract_features_many on copies of the clip ``x`` (see bench_extraction), and of the
    plain forward at batch 1 and plain extraction timed in the same interleave (``t_single``, the seconds of
    one earlier plain forward, only picks the clip count)."""
    clip = (x[0, 0] if x.dim() == 4 else x[0]).cpu().numpy()
    n_clips = 16 if t_single < 0.05 else 4
    clips = [clip.copy() for _ in range(n_clips)]
    tuning.clear_tuned()
    run = lambda: extract_features_many(nets, clips, device=device)  # noqa: E731
    plain = lambda: [extract_features(fe, clips, device=device, plain=True, batch_size=1)  # noqa: E731
                     for fe in nets]

    def forward():  # the plain forward pass at batch 1, clip handling excluded (counted against us)
        with torch.inference_mode():
            return [fe.features(x, plain=True) for fe in nets for _ in range(n_clips)]

    # all three interleaved, so the ratios hold while the host's speed drifts
    t_fwd, t_plain_x, t = _time_many([forward, plain, run], repeats, device, min_time=0.0,
                                     clock=time.process_time if clock == "cpu" else time.perf_counter)
    per = t / (n_clips * len(nets))
    per_plain = t_plain_x / (n_clips * len(nets))
    t_plain = t_fwd / (n_clips * len(nets))
    chosen = tuning.tuned_choices()
    batches = sorted({v for k, v in chosen.items() if k[0] == "batch"})
    forms = sorted({v for k, v in chosen.items() if k[0] == "formulation"})
    at_once = max((v for k, v in chosen.items() if k[0] == "parallel"), default=(1, 1))  # chunks in parallel
    return {"extract_clips_s": 1 / per, "extract_speedup": t_plain / per, "plain_extract_clips_s": 1 / per_plain,
            "plain_forward_clips_s": 1 / t_plain,
            "extract_vs_plain_extract": per_plain / per,
            "stack": min(len(nets), stack_size(nets[0], device)),
            "batch": ("/".join(map(str, batches)) or "1")
            + (f"; {at_once[0]} × {at_once[1]} at once" if at_once[0] > 1 else ""),
            "formulation": "/".join(forms) or "conv"}


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def extraction_markdown(rows: list[dict], *, info: dict, sgemm: float, seconds: float, repeats: int,
                        clock: str = "wall") -> str:
    """The extraction table (and its header: machine, sgemm reference, geometric-mean speed-ups) as Markdown."""
    k = rows[0].get("seeds") if rows else None
    has_bf16 = any(not math.isnan(r.get("bf16_speedup", float("nan"))) for r in rows)
    order = ", ".join(["plain", "optimized"] + ["bf16"] * has_bf16 + ["stacked"] * bool(k)) + ", plain, ..."
    lines = [
        "## Random-CNN feature extraction (batch 1, float32)",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        f"In-run sgemm reference: {sgemm:.0f} GFLOP/s. Clip: {seconds:.2f} s at 12 kHz; {clock}-clock time, "
        f"median of {repeats} "
        f"interleaved repeats ({order}) after a warm-up."
        + (f" Stacked: {k} networks (seeds 0…{k - 1}) run as one network with {k}× channels; "
           "network-clips/s = clips/s × networks; 'stacks' = whether extraction stacks them." if k else ""),
        "",
        "| front-end | width | features | GFLOP/clip | plain clips/s | optimized clips/s | speed-up "
        "| bf16 speed-up | plain GFLOP/s | optimized GFLOP/s | of sgemm | of oneDNN conv |"
        + (f" stacked ({k} seeds) network-clips/s | speed-up vs plain | vs optimized | stacks |" if k else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if k else ""),
    ]
    for r in rows:
        conv = f"{100 * r['fraction_conv']:.0f} %" if "fraction_conv" in r else "–"
        bf16 = f"{r['bf16_speedup']:.2f}×" if not math.isnan(r.get("bf16_speedup", float("nan"))) else "–"
        stacked = (f" {r['stacked_clips_s']:.2f} | {r['stacked_speedup']:.2f}× | {r['stacked_vs_fast']:.2f}× "
                   f"| {'yes' if r['stacks'] else 'no'} |" if k else "")
        lines.append(
            f"| {r['frontend']} | {r['width']} | {r['n_features']} | {r['gflop_per_clip']:.2f} "
            f"| {r['plain_clips_s']:.2f} | {r['fast_clips_s']:.2f} | {r['speedup']:.2f}× "
            f"| {bf16} | {r.get('plain_gflops', float('nan')):.0f} "
            f"| {r['fast_gflops']:.0f} | {100 * r['fraction_sgemm']:.0f} % | {conv} |" + stacked
        )
    bf16_line = (f"; bf16 option: {geometric_mean([r['bf16_speedup'] for r in rows]):.2f}× "
                 f"(slowest {min(r['bf16_speedup'] for r in rows):.2f}×)" if has_bf16 else "")
    lines += ["", f"Geometric-mean speed-up (optimized / plain): {geometric_mean([r['speedup'] for r in rows]):.2f}×"
              f"; slowest ratio {min(r['speedup'] for r in rows):.2f}×{bf16_line}."]
    if k:
        used = [r["stacked_speedup"] if r["stacks"] else r["speedup"] for r in rows]
        lines.append(
            f"Per network-clip, {k} seeds: one network at a time (optimized / plain) "
            f"{geometric_mean([r['speedup'] for r in rows]):.2f}×; stacked / plain "
            f"{geometric_mean([r['stacked_speedup'] for r in rows]):.2f}× (slowest "
            f"{min(r['stacked_speedup'] for r in rows):.2f}×); stacked / optimized "
            f"{geometric_mean([r['stacked_vs_fast'] for r in rows]):.2f}×; as extraction runs them (stacked where "
            f"'stacks') / plain {geometric_mean(used):.2f}× (slowest {min(used):.2f}×).")
    if rows and "extract_speedup" in rows[0]:
        n = max(rows[0].get("seeds") or 1, 1)
        lines += ["", f"### As a study extracts ({n} networks per front-end, `extract_features_many`)", "",
                  "Per network-clip, including clip preparation and copying the means out; formulation, "
                  "batch size ('T × B at once': T batches of B clips in parallel, one thread each) and "
                  "stacking as measured by the first call (which is not timed). 'plain "
                  "extraction' = `extract_features(plain=True, batch_size=1)` per network (the plain forward at "
                  "batch 1 with the same bookkeeping); 'speed-up' = extraction / the plain forward pass at batch 1 "
                  "(bookkeeping counted against extraction). All three timed in one interleave.", "",
                  "| front-end | width | plain clips/s | plain extraction network-clips/s | extraction "
                  "network-clips/s | speed-up | vs plain extraction | stacked (at most) | batch | formulation |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['frontend']} | {r['width']} | {r['plain_forward_clips_s']:.2f} "
                         f"| {r['plain_extract_clips_s']:.2f} | {r['extract_clips_s']:.2f} "
                         f"| {r['extract_speedup']:.2f}× | {r['extract_vs_plain_extract']:.2f}× | {r['stack']} "
                         f"| {r['batch']} | {r['formulation']} |")
        ratios = [r["extract_speedup"] for r in rows]
        ratios2 = [r["extract_vs_plain_extract"] for r in rows]
        slow = min(rows, key=lambda r: r["extract_speedup"])
        lines += ["", f"Geometric-mean speed-up as a study extracts / plain forward at batch 1: "
                      f"**{geometric_mean(ratios):.2f}×** (slowest {min(ratios):.2f}×, {slow['frontend']} "
                      f"{slow['width']}); / plain extraction: {geometric_mean(ratios2):.2f}× (slowest "
                      f"{min(ratios2):.2f}×)."]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frontends", default=None, help="comma-separated names (default: every random CNN)")
    p.add_argument("--widths", default="small,large", help="comma-separated widths (default: small,large)")
    p.add_argument("--seconds", type=float, default=350_000 / 12_000, help="clip length (default 29.17)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall-clock or process CPU time (cpu: robust on a shared host; use with --threads 1)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false",
                   help="skip the bfloat16 timing (emulated, ~100x slower, on CPUs without AVX512-BF16)")
    p.add_argument("--seeds", type=int, default=3,
                   help="also time this many seeds' networks stacked as one (default 3, the protocol's runs; 0: skip)")
    p.add_argument("--no-extraction", dest="extraction", action="store_false",
                   help="skip timing extract_features_many as a study runs it")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown here (default: print it)")
    p.add_argument("--default-malloc", dest="keep_heap", action="store_false",
                   help="leave glibc's allocator as it is (default: keep_heap(), as the fewshot command does, for "
                        "plain and optimized paths alike; without it page faults dominate the fast front-ends)")
    p.add_argument("--grids", default="1000x3500,200x160",
                   help="also time the SVM/ELM grids fast vs plain at these n_train x n_features ('' = skip)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_heap:
        from fewshot._allocator import keep_heap

        keep_heap()
    info = machine_info(args.device)
    info["malloc"] = "keep_heap" if args.keep_heap else "default"
    ref_clock = time.process_time if args.clock == "cpu" else time.perf_counter  # same clock as the timings
    sgemm = sgemm_gflops(device=args.device, clock=ref_clock)
    conv_ref = conv_gflops(device=args.device, clock=ref_clock)
    info["oneDNN_conv_GFLOPs"] = round(conv_ref)
    names = args.frontends.split(",") if args.frontends else None
    widths = tuple(w.strip() for w in args.widths.split(","))
    rows = bench_extraction(names, widths, seconds=args.seconds, repeats=args.repeats, device=args.device,
                            sgemm=sgemm, clock=args.clock, log=lambda s: print(s, file=sys.stderr),
                            conv_ref=conv_ref, seeds=args.seeds, bf16=args.bf16,
                            extraction=args.extraction)
    sgemm_after = sgemm_gflops(device=args.device, clock=ref_clock)
    info["sgemm_after_GFLOPs"] = round(sgemm_after)
    text = extraction_markdown(rows, info=info, sgemm=sgemm, seconds=args.seconds, repeats=args.repeats,
                               clock=args.clock)
    if args.grids:
        # The classifier half of a random-CNN study: the same table as scripts/bench_grids.py.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_grids import bench_grids, to_markdown

        sizes = [tuple(int(v) for v in s.split("x")) for s in args.grids.split(",")]
        text += "\n\n## SVM / ELM grids, fast vs plain\n\n" + to_markdown(bench_grids(sizes, device=args.device))
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
