"""Fine-tuning cost of a pretrained musicnn body on CPU: plain vs optimized, glibc heap kept or not.

One forward + backward pass (train mode, every parameter trainable, as ``finetune:<P>``)
of ``--batch`` random log-mel patches through the body of ``--model``, timed as the
median of ``--repeats`` after a warm-up, for the plain front end (``plain=True``:
musicnn's own order of operations) and the optimized one (input batch norm folded into
the first convolutions, conv1d temporal filters, ``max()``), each with glibc's default
allocator settings and with :func:`fewshot._allocator.keep_heap`. Each setting runs in
a fresh subprocess (the allocator setting is per process); the clock is wall time and
process CPU time (user + system), so a shared machine still gives comparable CPU
seconds. Writes Markdown.

Usage: ``python scripts/bench_finetune.py [--model msd_musicnn] [--batch 32] [--repeats 3] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _one(model: str, batch: int, repeats: int, threads: int, plain: bool, heap: bool) -> dict:
    import torch

    from fewshot._allocator import keep_heap
    from fewshot.training.transfer import load_source

    if heap:
        keep_heap()
    torch.set_num_threads(threads)
    source = load_source(model)
    body, net = source.body, source.body.tagger.net
    body.train()
    for p in body.parameters():
        p.requires_grad_(True)
    x = torch.randn(batch, source.patch_frames, 96, generator=torch.Generator().manual_seed(0))

    def step() -> None:
        net(x, plain=plain)[1].sum().backward()

    step()
    walls, cpus = [], []
    for _ in range(repeats):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        step()
        r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        walls.append(t1 - t0)
        cpus.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    return {"wall": statistics.median(walls) / batch, "cpu": statistics.median(cpus) / batch,
            "sys_share": (r1.ru_stime) / max(r1.ru_utime + r1.ru_stime, 1e-9),
            "maxrss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="msd_musicnn")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="Markdown file (default: print)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        plain, heap = json.loads(args.child)
        print(json.dumps(_one(args.model, args.batch, args.repeats, args.threads, plain, heap)))
        return
    env = dict(os.environ, FEWSHOT_MALLOC="")
    rows = []
    for plain in (True, False):
        for heap in (False, True):
            cmd = [sys.executable, __file__, "--model", args.model, "--batch", str(args.batch), "--repeats",
                   str(args.repeats), "--threads", str(args.threads), "--child", json.dumps([plain, heap])]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            rows.append((plain, heap, json.loads(out.strip().splitlines()[-1])))
    base = rows[0][2]["cpu"]
    load = os.getloadavg()[0]
    lines = [f"{args.model} body, forward + backward, batch {args.batch}, {args.threads} thread(s), "
             f"median of {args.repeats}; load average {load:.1f} on {os.cpu_count()} cores", "",
             "| front end | glibc heap | wall s/patch | CPU s/patch | CPU speed-up | system share | peak RSS GB |",
             "|---|---|---|---|---|---|---|"]
    for plain, heap, r in rows:
        lines.append(f"| {'plain' if plain else 'optimized'} | {'kept' if heap else 'default'} | {r['wall']:.3f} | "
                     f"{r['cpu']:.3f} | {base / r['cpu']:.2f}× | {100 * r['sys_share']:.0f} % | {r['maxrss_gb']:.1f} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
