"""Seconds per epoch and per run of the trained models (full size), on generated log-mels.

Each (model, n) trains on ``n`` clips per class of ``n_classes`` classes (random
log-mels of ``clip_frames`` frames, 173 = a 4 s UrbanSound8K clip, 128 mel bands).
vgg / timbre / sbcnn: ``epochs`` epochs are timed one by one (after one untimed
warm-up epoch) and the median is **extrapolated** to a ``run_epochs``-epoch run.
protonet: ``protonet_updates`` updates (after one warm-up) and one training-accuracy
evaluation are timed; an epoch is ``floor(n_windows / n_queries)`` updates plus one
evaluation, and a run is extrapolated to ``run_epochs`` epochs (with patience 200 the
reference trains at least 201).

Usage: ``python scripts/bench_train.py [--device cpu] [--ns 1,5,10] [--epochs 2]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from fewshot.training import TrainConfig
from fewshot.training.loop import (
    ClassifierRun,
    build_model,
    classifier_loss,
    kernel_names,
    model_state,
    sgd_step,
    to_device,
)
from fewshot.training.models import Dropout, count_parameters
from fewshot.training.patches import clip_windows
from fewshot.training.protonet import _train_accuracy, protonet_loss


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _bench_classifier(name, inputs, y, *, n_classes, config, device, epochs):
    model = build_model(name, n_classes=n_classes, n_mels=inputs[0].shape[1], config=config, seed=0,
                        device=device).train()
    run = ClassifierRun(model, inputs, y, config=config, seed=0)
    loss_fn = classifier_loss(model, config.weight_decay, kernel_names(model))
    p, b = model_state(model)
    times, steps = [], 0
    for e in range(epochs + 1):
        t0 = time.perf_counter()
        for batch in run.epoch_batches():
            p, b, _ = sgd_step(loss_fn, p, b, to_device(batch, device), lr=config.lr, clip_norm=config.clip_norm)
            steps += e == 0
        _sync(device)
        if e:
            times.append(time.perf_counter() - t0)
    return model, statistics.median(times), steps, f"{epochs} epochs"


def _bench_protonet(inputs, y, *, n_classes, config, device, updates):
    model = build_model("protonet", n_classes=n_classes, n_mels=inputs[0].shape[1], config=config, seed=0,
                        device=device)
    patches, clip_idx = clip_windows(inputs, patch_frames=config.patch_frames, hop=config.hop)
    rng, gen = np.random.default_rng(0), torch.Generator().manual_seed(0)
    s = min(config.support_per_class, len(inputs) // n_classes)
    support_idx = np.concatenate([np.flatnonzero(y[clip_idx] == c)[:s] for c in range(n_classes)])
    support = torch.from_numpy(patches[support_idx]).to(device)
    support_y = torch.from_numpy(y[clip_idx][support_idx]).to(device)
    drops = [m for m in model.backbone.modules() if isinstance(m, Dropout)]
    loss_fn = protonet_loss(model)
    p, b = model_state(model.backbone)
    q_per_update = config.queries_per_class * n_classes
    times = []
    for u in range(updates + 1):
        q = rng.choice(len(patches), size=q_per_update)
        batch = {"support": support, "support_y": support_y, "query": torch.from_numpy(patches[q]).to(device),
                 "query_y": torch.from_numpy(y[clip_idx][q]).to(device),
                 "masks_s": [d.draw_mask(len(support), gen).to(device) for d in drops],
                 "masks_q": [d.draw_mask(q_per_update, gen).to(device) for d in drops]}
        model.backbone.train()
        t0 = time.perf_counter()
        p, b, _ = sgd_step(loss_fn, p, b, batch, lr=config.lr, clip_norm=config.clip_norm)
        _sync(device)
        if u:
            times.append(time.perf_counter() - t0)
    model.backbone.load_state_dict({**p, **b})
    t0 = time.perf_counter()
    _train_accuracy(model, patches, clip_idx, y, support, support_y, device=device,
                    batch_size=config.eval_batch_size)
    _sync(device)
    t_eval = time.perf_counter() - t0
    n_updates = max(1, len(patches) // q_per_update)
    return model, n_updates * statistics.median(times) + t_eval, n_updates, f"{updates} updates + 1 eval"


def bench_train(models=("vgg", "timbre", "sbcnn", "protonet"), ns=(1, 5, 10), *, n_classes: int = 10,
                clip_frames: int = 173, epochs: int = 2, protonet_updates: int = 1, run_epochs: int = 200,
                device: str = "cpu") -> list[dict]:
    """Time training; one dict per (model, n) with seconds per epoch and per (extrapolated) run."""
    config = TrainConfig()
    rows = []
    for n in ns:
        rng = np.random.default_rng(n)
        inputs = [rng.normal(-5.0, 1.0, size=(clip_frames, 128)).astype(np.float32) for _ in range(n * n_classes)]
        y = np.repeat(np.arange(n_classes), n)
        for name in models:
            if name == "protonet":
                model, s_epoch, steps, measured = _bench_protonet(inputs, y, n_classes=n_classes, config=config,
                                                                  device=device, updates=protonet_updates)
            else:
                model, s_epoch, steps, measured = _bench_classifier(name, inputs, y, n_classes=n_classes,
                                                                    config=config, device=device, epochs=epochs)
            rows.append({"model": name, "n": n, "params": count_parameters(model), "clips": len(inputs),
                         "updates_per_epoch": steps, "s_per_epoch": s_epoch,
                         "s_per_run": s_epoch * run_epochs, "run_epochs": run_epochs, "measured": measured,
                         "device": device})
            print(f"  {name} n={n}: {s_epoch:.2f} s/epoch", flush=True)
    return rows


def to_markdown(rows: list[dict]) -> str:
    head = ("| model | n | params | clips | updates/epoch | s/epoch | s/run (extrapolated) | measured |\n"
            "|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['model']} | {r['n']} | {r['params']:,} | {r['clips']} | {r['updates_per_epoch']} | "
        f"{r['s_per_epoch']:.2f} | {r['s_per_run']:.0f} ({r['run_epochs']} epochs) | {r['measured']} |\n"
        for r in rows)
    return head + body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ns", default="1,5,10")
    ap.add_argument("--models", default="vgg,timbre,sbcnn,protonet")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--protonet-updates", type=int, default=1)
    args = ap.parse_args()
    rows = bench_train(tuple(args.models.split(",")), tuple(int(v) for v in args.ns.split(",")),
                       epochs=args.epochs, protonet_updates=args.protonet_updates, device=args.device)
    print(f"\ndevice {args.device}, torch threads {torch.get_num_threads()}, load average "
          f"{os.getloadavg()[0]:.1f}; 10 classes, 173-frame clips, 128 mels, batch 256, full-size models\n")
    print(to_markdown(rows))


if __name__ == "__main__":
    main()
