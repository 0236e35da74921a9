"""Training without validation data, clip-level prediction, and the one-call ``fit_predict``.

Settings follow the reference ``sl_train`` (B6): plain SGD, learning rate 0.1, batch
256 (the whole set when smaller), gradients clipped to global norm 5 (TensorFlow's
``clip_by_global_norm``: ``g * 5 / max(||g||, 5)``), L2 ``0.001 * sum(1/2 ||W||^2)``
over conv and dense kernels only (no biases, no batch norm), added to the loss and so
clipped with it, ``epochs`` epochs of one random patch per clip, the **last** model
kept. Nothing here sees test data: :func:`train_model` receives only the n-shot
training clips; the protonet's stopping rule reads training accuracy
(:mod:`fewshot.training.protonet`).

Training steps are pure functions of ``(params, buffers, batch)``
(:func:`sgd_step`, ``torch.func.grad_and_value`` over ``functional_call``), so one
run and a ``vmap`` over runs (:mod:`fewshot.training.batched`) do the same arithmetic.

Randomness (no global RNG): for a run seeded ``seed``, weights are drawn from
``torch_generator(seed, "init")``, data order and patch starts from
``numpy_rng(seed, "order")``, dropout masks from ``torch_generator(seed, "dropout")``
(always on the CPU, so CPU and GPU runs draw the same masks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value

from ..exceptions import ParameterError
from ..seeds import numpy_rng, torch_generator
from .models import BatchNorm, Dropout
from .patches import clip_windows, pad_clips, random_patches

__all__ = ["TrainConfig", "QUICK_PARAMS", "train_model", "predict_clips", "fit_predict", "sgd_step",
           "fold_batch_stats", "model_state", "ClassifierRun"]

#: Narrow backbones for ``--quick`` (merged into ``params`` when ``config.quick``).
QUICK_PARAMS: dict[str, dict[str, Any]] = {
    "vgg": {"filters": 16},
    "protonet": {"filters": 16},
    "sbcnn": {"filters": (8, 16, 16), "dense": 32},
    "timbre": {},
}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (reference B6, B8, B10).

    Parameters
    ----------
    epochs : int, default=200
        Epochs of updates for vgg / timbre / sbcnn (the reference logs an untrained
        epoch 0, so its "200" is 199 updates-epochs; ours are all trained). Also the
        protonet's length when ``patience`` is None and ``max_epochs`` is None.
    lr : float, default=0.1
    batch_size : int, default=256
    clip_norm : float or None, default=5.0
        Global gradient-norm clip; None: no clipping.
    weight_decay : float, default=1e-3
        L2 factor on conv/dense kernels, as ``weight_decay * sum(1/2 ||W||^2)`` in the
        loss. Not used by the protonet (none in the reference).
    patience : int or None, default=200
        Protonet: stop when training accuracy has not improved for more than
        ``patience`` epochs. None: off (train ``max_epochs`` or ``epochs``).
    patience_mode : {"cumulative", "consecutive"}, default="cumulative"
        "cumulative" counts every non-improving epoch and never resets (the reference,
        C-B2); "consecutive" resets the counter at each improvement.
    max_epochs : int or None, default=None
        Protonet cap on epochs (None: unbounded, as the reference's ``inf``).
    patch_frames : int, default=128
    hop : int, default=43
        Window hop in frames for prediction and for the protonet's training patches
        (43 frames = 1 s at 44.1 kHz / 1024; the reference used 42 for protonets).
    support_per_class, queries_per_class : int, default=5
        Protonet support patches per class (fixed for the run, C-B1) and queries per
        class per update.
    bn_momentum : float or None, default=0.01
        Batch-norm running-statistics momentum (0.01 = TensorFlow decay 0.99, the
        reference); None: cumulative average (better when there are few updates).
    eval_batch_size : int, default=128
    quick : bool, default=False
        Marks a smoke configuration; :func:`fit_predict` then uses ``QUICK_PARAMS``.
    """

    epochs: int = 200
    lr: float = 0.1
    batch_size: int = 256
    clip_norm: float | None = 5.0
    weight_decay: float = 1e-3
    patience: int | None = 200
    patience_mode: str = "cumulative"
    max_epochs: int | None = None
    patch_frames: int = 128
    hop: int = 43
    support_per_class: int = 5
    queries_per_class: int = 5
    bn_momentum: float | None = 0.01
    eval_batch_size: int = 128
    quick: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patch_frames", "hop", "support_per_class",
                     "queries_per_class", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"TrainConfig.{name} must be a positive int; got {value!r}")
        for name in ("patience", "max_epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ParameterError(f"TrainConfig.{name} must be a non-negative int or None; got {value!r}")
        if not self.lr > 0:
            raise ParameterError(f"TrainConfig.lr must be > 0; got {self.lr!r}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ParameterError(f"TrainConfig.clip_norm must be > 0 or None; got {self.clip_norm!r}")
        if not self.weight_decay >= 0:
            raise ParameterError(f"TrainConfig.weight_decay must be >= 0; got {self.weight_decay!r}")
        if self.patience_mode not in ("cumulative", "consecutive"):
            raise ParameterError(
                f"TrainConfig.patience_mode must be 'cumulative' or 'consecutive'; got {self.patience_mode!r}")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            raise ParameterError(f"TrainConfig.bn_momentum must be in (0, 1] or None; got {self.bn_momentum!r}")

    @classmethod
    def quick_preset(cls, **overrides: Any) -> TrainConfig:
        """Smoke settings: 20 epochs (protonet capped at 20), patience off, cumulative BN statistics."""
        base = {"epochs": 20, "max_epochs": 20, "patience": None, "bn_momentum": None, "quick": True}
        return cls(**{**base, **overrides})

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (validated)."""
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- functional core


def model_state(model: nn.Module, device: str | torch.device | None = None):
    """Detached copies of ``(params, buffers)`` dicts, optionally moved to ``device``."""
    params = {k: v.detach().clone().to(device or v.device) for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone().to(device or v.device) for k, v in model.named_buffers()}
    return params, buffers


def kernel_names(model: nn.Module) -> list[str]:
    """Names of conv and dense kernels (the weights under L2)."""
    return [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def fold_batch_stats(model: nn.Module, buffers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """New buffers with the batch statistics recorded by each :class:`BatchNorm` folded in (in call order)."""
    new = dict(buffers)
    for name, m in model.named_modules():
        if not isinstance(m, BatchNorm) or not m.pending:
            continue
        rm, rv, nb = (new[f"{name}.{b}"] for b in ("running_mean", "running_var", "num_batches_tracked"))
        for mean, var in m.pending:
            w = 1.0 / (nb + 1.0) if m.momentum is None else m.momentum
            rm, rv, nb = rm + w * (mean - rm), rv + w * (var - rv), nb + 1.0
        m.pending.clear()
        new[f"{name}.running_mean"], new[f"{name}.running_var"], new[f"{name}.num_batches_tracked"] = rm, rv, nb
    return new


def functional_forward(model: nn.Module, params, buffers, x: torch.Tensor,
                       masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """``model(x)`` with the given state and dropout masks (one per :class:`Dropout`, module order)."""
    drops = [m for m in model.modules() if isinstance(m, Dropout)]
    for d, mask in zip(drops, masks, strict=True):
        d.mask = mask
    try:
        return functional_call(model, (params, buffers), (x,))
    finally:
        for d in drops:
            d.mask = None


def classifier_loss(model: nn.Module, weight_decay: float, kernels: Sequence[str]) -> Callable:
    """``loss(params, buffers, batch) -> (loss, new_buffers)``: cross-entropy + L2 on kernels."""

    def loss_fn(params, buffers, batch):
        logits = functional_forward(model, params, buffers, batch["x"], batch["masks"])
        loss = F.cross_entropy(logits, batch["y"])
        if weight_decay:
            loss = loss + weight_decay * 0.5 * sum((params[k] ** 2).sum() for k in kernels)
        return loss, fold_batch_stats(model, buffers)

    return loss_fn


def sgd_step(loss_fn: Callable, params, buffers, batch, *, lr: float, clip_norm: float | None):
    """One plain-SGD step with global-norm clipping; returns ``(params, buffers, loss)``. Pure: vmap-able."""
    grads, (loss, new_buffers) = grad_and_value(loss_fn, has_aux=True)(params, buffers, batch)
    if clip_norm is not None:
        norm = torch.sqrt(sum((g**2).sum() for g in grads.values()))
        scale = clip_norm / torch.clamp(norm, min=clip_norm)
    else:
        scale = 1.0
    new_params = {k: p - lr * scale * grads[k] for k, p in params.items()}
    return new_params, new_buffers, loss.detach()


# ----------------------------------------------------------------------------- classifiers


class ClassifierRun:
    """Data and random streams of one training run of a classifier (vgg / timbre / sbcnn).

    :meth:`epoch_batches` yields the batches of one epoch; sequential and batched
    training consume them identically.
    """

    def __init__(self, model: nn.Module, train_inputs: Sequence[np.ndarray], train_y: np.ndarray, *,
                 config: TrainConfig, seed: int) -> None:
        self.config = config
        self.padded = pad_clips(train_inputs, config.patch_frames)
        self.y = np.asarray(train_y, dtype=np.int64)
        if self.y.shape != (len(self.padded),):
            raise ParameterError(f"train_y must have one label per clip ({len(self.padded)}); got {self.y.shape}")
        self.rng = numpy_rng(seed, "order")
        self.gen = torch_generator(seed, "dropout")
        self.drops = [m for m in model.modules() if isinstance(m, Dropout)]

    def epoch_batches(self) -> Iterator[dict[str, Any]]:
        n, bs = len(self.padded), self.config.batch_size
        order = self.rng.permutation(n)
        for s in range(0, n, bs):
            idx = order[s:s + bs]
            x = random_patches(self.padded, idx, self.config.patch_frames, self.rng)
            masks = [d.draw_mask(len(idx), self.gen) for d in self.drops]
            yield {"x": torch.from_numpy(x), "y": torch.from_numpy(self.y[idx]), "masks": masks}


def to_device(batch: dict[str, Any], device) -> dict[str, Any]:
    return {k: ([m.to(device) for m in v] if isinstance(v, list) else v.to(device)) for k, v in batch.items()}


def build_model(name: str, *, n_classes: int, n_mels: int, config: TrainConfig, seed: int,
                device: str | torch.device = "cpu", params: dict[str, Any] | None = None) -> nn.Module:
    """The registered model ``name`` with weights drawn from ``torch_generator(seed, "init")``."""
    from . import create_model

    kwargs = {**(QUICK_PARAMS.get(name, {}) if config.quick else {}), **(params or {})}
    kwargs.setdefault("bn_momentum", config.bn_momentum)
    return create_model(name, n_classes=n_classes, n_mels=n_mels, n_frames=config.patch_frames,
                        generator=torch_generator(seed, "init"), device=device, **kwargs)


def _check_inputs(train_inputs, train_y, n_classes) -> int:
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ParameterError(f"n_classes must be an int >= 2; got {n_classes!r}")
    y = np.asarray(train_y)
    if len(train_inputs) == 0 or y.shape != (len(train_inputs),):
        raise ParameterError(f"train_y must have one label per training clip ({len(train_inputs)}); got {y.shape}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ParameterError(f"train_y must hold labels in [0, {n_classes - 1}]; got [{y.min()}, {y.max()}]")
    return int(np.asarray(train_inputs[0]).shape[-1])


def train_model(name: str, train_inputs: Sequence[np.ndarray], train_y: np.ndarray, *, n_classes: int,
                config: TrainConfig = TrainConfig(), seed: int = 0, device: str | torch.device = "cpu",
                params: dict[str, Any] | None = None) -> nn.Module:
    """Train model ``name`` on the n-shot training clips only (no validation, no test data).

    Parameters
    ----------
    name : str
        A registered model (``list_models()``).
    train_inputs : list of np.ndarray [shape=(n_frames_i, n_mels)]
        Log-mels of the training clips.
    train_y : np.ndarray [shape=(n_clips,)], int in ``[0, n_classes)``
    n_classes : int
    config : TrainConfig
    seed : int
        Seeds initialisation, data order and dropout (see the module docstring).
    device : str or torch.device, default="cpu"
    params : dict, optional
        Model keyword arguments (``filters=16``, ``distance="cosine"``).

    Returns
    -------
    torch.nn.Module
        The last model, in eval mode, with ``patch_frames`` and ``hop`` attributes for
        :func:`predict_clips` (protonets also carry ``history``).
    """
    n_mels = _check_inputs(train_inputs, train_y, n_classes)
    model = build_model(name, n_classes=n_classes, n_mels=n_mels, config=config, seed=seed, device=device,
                        params=params)
    if name == "protonet":
        from .protonet import train_protonet

        return train_protonet(model, train_inputs, train_y, config=config, seed=seed, device=device)
    run = ClassifierRun(model, train_inputs, train_y, config=config, seed=seed)
    model.train()
    loss_fn = classifier_loss(model, config.weight_decay, kernel_names(model))
    p, b = model_state(model)
    for _ in range(config.epochs):
        for batch in run.epoch_batches():
            p, b, _ = sgd_step(loss_fn, p, b, to_device(batch, device), lr=config.lr, clip_norm=config.clip_norm)
    model.load_state_dict({**p, **b})
    model.hop = config.hop
    return model.eval()


@torch.no_grad()
def predict_clips(model: nn.Module, inputs: Sequence[np.ndarray], *, device: str | torch.device = "cpu",
                  hop: int | None = None, batch_size: int = 128) -> np.ndarray:
    """Clip-level class probabilities from sliding windows.

    Classifiers average the windows' softmax (B4); protonets (``model.aggregate ==
    "log_softmax"``) average log-softmax and return its softmax (same argmax, C-B6).

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`train_model` (its ``patch_frames`` and ``hop`` are used).
    inputs : list of np.ndarray [shape=(n_frames_i, n_mels)]
    device : str or torch.device, default="cpu"
    hop : int, optional
        Window hop in frames (default: the model's, else 43).
    batch_size : int, default=128

    Returns
    -------
    np.ndarray [shape=(n_clips, n_classes)], float64, rows sum to 1
    """
    model.eval()
    hop = int(hop or getattr(model, "hop", 43))
    patches, index = clip_windows(inputs, patch_frames=model.patch_frames, hop=hop)
    outs = []
    for s in range(0, len(patches), batch_size):
        x = torch.from_numpy(patches[s:s + batch_size]).to(device)
        outs.append(F.log_softmax(model(x).float(), dim=1).cpu().double())
    logp = torch.cat(outs).numpy()
    n = len(inputs)
    counts = np.bincount(index, minlength=n)[:, None]
    if getattr(model, "aggregate", "softmax") == "log_softmax":
        mean = np.zeros((n, logp.shape[1]))
        np.add.at(mean, index, logp)
        mean /= counts
        proba = np.exp(mean - mean.max(axis=1, keepdims=True))
    else:
        proba = np.zeros((n, logp.shape[1]))
        np.add.at(proba, index, np.exp(logp))
        proba /= counts
    return proba / proba.sum(axis=1, keepdims=True)


def fit_predict(name: str, train_inputs: Sequence[np.ndarray], train_y: np.ndarray,
                test_inputs: Sequence[np.ndarray], *, n_classes: int, config: TrainConfig = TrainConfig(),
                seed: int = 0, device: str | torch.device = "cpu",
                params: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train on the training clips, then predict the test clips.

    The test clips are used only after training has finished.

    Returns
    -------
    y_pred : np.ndarray [shape=(n_test,)], int
    proba : np.ndarray [shape=(n_test, n_classes)]
    """
    model = train_model(name, train_inputs, train_y, n_classes=n_classes, config=config, seed=seed,
                        device=device, params=params)
    proba = predict_clips(model, test_inputs, device=device, batch_size=config.eval_batch_size)
    return proba.argmax(axis=1), proba
