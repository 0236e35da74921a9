"""Train the runs of one (model, n, fold) together: ``vmap`` on CUDA, one after another on CPU.

All runs of one (model, n, fold) have the same architecture and, when the n-shot
subsets have equal sizes, the same batch shapes, so their training steps can be
stacked with ``torch.func`` (``stack_module_state`` + ``functional_call`` +
``vmap``): one kernel launch serves every run. Each run keeps its own seed, data
order, patch starts and dropout masks (drawn outside the vmapped step from the run's
own generators), and batch-norm statistics are folded in functionally, so a vmapped
run computes what it would compute alone (up to floating-point summation order;
tested on CPU with tiny models).

``vmap`` is used with ``randomness="error"``: the step draws no random numbers at
all, which is what makes the results independent of the strategy.

On CPU vmap is about 2.6x slower than sequential training (grouped convolutions,
perf-baselines §5), so ``strategy="auto"`` trains sequentially there. The protonet
(variable support/query shapes, per-run stopping) always trains sequentially.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.func import stack_module_state, vmap

from ..exceptions import ParameterError
from .loop import (
    ClassifierRun,
    TrainConfig,
    _check_inputs,
    build_model,
    classifier_loss,
    fit_predict,
    kernel_names,
    predict_clips,
    sgd_step,
    to_device,
)

__all__ = ["fit_predict_many", "train_many_vmap", "choose_strategy"]

STRATEGIES = ("auto", "vmap", "sequential")
Run = tuple[Sequence[np.ndarray], np.ndarray, int]


def choose_strategy(name: str, runs: Sequence[Run], *, device: str | torch.device, strategy: str = "auto") -> str:
    """``"vmap"`` or ``"sequential"`` for these runs (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise ParameterError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    sizes = {len(r[0]) for r in runs}
    vmappable = name != "protonet" and len(sizes) == 1 and len(runs) > 1
    if strategy == "vmap":
        if name == "protonet":
            raise ParameterError("strategy='vmap' supports vgg, timbre and sbcnn; got 'protonet'")
        if len(sizes) > 1:
            raise ParameterError(f"strategy='vmap' needs runs with equal training sizes; got sizes {sorted(sizes)}")
        return "vmap"
    if strategy == "sequential":
        return "sequential"
    return "vmap" if vmappable and torch.device(device).type == "cuda" else "sequential"


def train_many_vmap(name: str, runs: Sequence[Run], *, n_classes: int, config: TrainConfig,
                    device: str | torch.device = "cpu", params: dict[str, Any] | None = None) -> list:
    """Train one model per run in a single vmapped loop; returns the trained models (eval mode)."""
    n_mels = {_check_inputs(x, y, n_classes) for x, y, _ in runs}
    if len(n_mels) != 1:
        raise ParameterError(f"all runs must share n_mels; got {sorted(n_mels)}")
    if name == "protonet":
        raise ParameterError("vmap training supports vgg, timbre and sbcnn; got 'protonet'")
    models = [build_model(name, n_classes=n_classes, n_mels=next(iter(n_mels)), config=config, seed=seed,
                          device=device, params=params) for _, _, seed in runs]
    states = [ClassifierRun(m, x, y, config=config, seed=seed) for m, (x, y, seed) in zip(models, runs, strict=True)]
    base = models[0].train()
    loss_fn = classifier_loss(base, config.weight_decay, kernel_names(base))
    params_s, buffers_s = stack_module_state(models)
    params_s = {k: v.detach() for k, v in params_s.items()}

    def step(p, b, batch):
        return sgd_step(loss_fn, p, b, batch, lr=config.lr, clip_norm=config.clip_norm)

    vstep = vmap(step, in_dims=(0, 0, 0), randomness="error")
    for _ in range(config.epochs):
        for batches in zip(*(s.epoch_batches() for s in states), strict=True):
            stacked = {
                "x": torch.stack([b["x"] for b in batches]),
                "y": torch.stack([b["y"] for b in batches]),
                "masks": [torch.stack(ms) for ms in zip(*(b["masks"] for b in batches), strict=True)],
            }
            params_s, buffers_s, _ = vstep(params_s, buffers_s, to_device(stacked, device))
    for i, m in enumerate(models):
        m.load_state_dict({**{k: v[i] for k, v in params_s.items()}, **{k: v[i] for k, v in buffers_s.items()}})
        m.hop = config.hop
        m.eval()
    return models


def fit_predict_many(name: str, runs: Sequence[Run], test_inputs: Sequence[np.ndarray], *, n_classes: int,
                     config: TrainConfig = TrainConfig(), device: str | torch.device = "cpu",
                     params: dict[str, Any] | None = None,
                     strategy: str = "auto") -> list[tuple[np.ndarray, np.ndarray]]:
    """Train one model per ``(train_inputs, train_y, seed)`` run and predict the same test clips.

    Parameters
    ----------
    name : str
        A registered model.
    runs : list of (list of np.ndarray [n_frames_i, n_mels], np.ndarray [n_clips], int)
        Each run's training log-mels, labels and seed.
    test_inputs : list of np.ndarray [shape=(n_frames_i, n_mels)]
        Used only after every run has finished training.
    n_classes : int
    config : TrainConfig
    device : str or torch.device, default="cpu"
    params : dict, optional
        Model keyword arguments.
    strategy : {"auto", "vmap", "sequential"}, default="auto"
        "auto": vmap on CUDA (classifiers with equal run sizes), sequential otherwise.
        "vmap" forces it (also on CPU, for tests).

    Returns
    -------
    list of (y_pred [n_test], proba [n_test, n_classes]), one per run, in order
    """
    if len(runs) == 0:
        raise ParameterError("runs must hold at least one (train_inputs, train_y, seed); got 0")
    chosen = choose_strategy(name, runs, device=device, strategy=strategy)
    if chosen == "sequential":
        return [fit_predict(name, x, y, test_inputs, n_classes=n_classes, config=config, seed=seed,
                            device=device, params=params) for x, y, seed in runs]
    out = []
    for model in train_many_vmap(name, runs, n_classes=n_classes, config=config, device=device, params=params):
        proba = predict_clips(model, test_inputs, device=device, batch_size=config.eval_batch_size)
        out.append((proba.argmax(axis=1), proba))
    return out
