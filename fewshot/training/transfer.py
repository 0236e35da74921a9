"""Transfer learning from pretrained networks: fine-tuning, prototypical transfer, frozen probes.

Methods (the grammar is :mod:`fewshot.methods`):

- ``finetune:<pretrained>``: the pretrained body with a **new softmax head**
  (dense, Glorot-uniform from the run's seed) trained on the n-shot clips with plain
  SGD, batch 128, no clipping or L2, the head at learning rate **0.1** and every
  pretrained layer at **1e-5** (the reference's ``many_lr_audioset``: body gradients
  × 1e-4, B6); one random patch per clip per epoch; ``--epochs`` epochs, the last
  model kept. Prediction: mean softmax over the clip's patches.
- ``protonet:<pretrained>``: the body + a 10-unit dense embedding layer (lr 0.1,
  body 1e-5), trained episodically as :mod:`fewshot.training.protonet` (fixed
  support of 5 patches per class, 5 queries per class per update, squared
  Euclidean / D, stopping on training accuracy only). Prediction: mean log-softmax.
- ``probe:<pretrained>+<classifier>`` (a front-end, :mod:`fewshot.frontends.probe`):
  the clip embedding is the mean over patches of the frozen body's penultimate
  embedding, then a classifier tuned on the n-shot subset only.

``<pretrained>`` is a musicnn model (``msd_musicnn``, ``mtt_musicnn``, ``msd_vgg``,
``mtt_vgg``), ``vggish`` (a local torchvggish file, :mod:`fewshot.pretrained.vggish`)
or a checkpoint written by ``fewshot pretrain`` and named with ``--pretrained
NAME=PATH`` (:mod:`fewshot.training.checkpoints`). Each keeps its own input pipeline:

==============  ==========================================  ==============  ===========
source          input per clip                              patch           embedding
==============  ==========================================  ==============  ===========
musicnn / vgg   16 kHz, musicnn log-mel (96 bands)          187 frames 3 s  200 / 256
vggish          16 kHz, VGGish log-mel (64 bands)           96 frames 0.96  128
checkpoint      its ``spectrogram`` (``fewdata``: 44.1 kHz)  its patch       input of its last dense
==============  ==========================================  ==============  ===========

Evaluation patches are non-overlapping (hop = patch length) plus one window aligned
with the clip's end (:func:`fewshot.training.patches.window_starts`); clips shorter
than a patch are repeat-padded. The pretrained body always runs in **eval mode**
(batch-norm moving statistics frozen, no dropout; VGGish, the study's network, has
neither); its weights still move, at 1e-5.

Nothing here reads test data before training has ended.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import ParameterError
from ..seeds import numpy_rng, torch_generator
from ._sources import CODE_VERSION as CODE_VERSION
from ._sources import Source, check_pretrained_name, known_pretrained, load_source, source_inputs
from ._sources import embed_inputs as embed_inputs
from .patches import clip_windows, pad_clips, random_patches
from .protonet import compute_prototypes, episode_plan, patience_can_stop, prototype_logits

__all__ = ["HEAD_LR", "BODY_LR", "TRANSFER_METHODS", "Source", "load_source", "known_pretrained",
           "check_pretrained_name", "is_transfer_method", "TransferClassifier", "TransferProtonet", "param_groups",
           "train_finetune", "train_transfer_protonet", "fit_predict_transfer", "source_inputs"]

#: Learning rate of the new layers (head or embedding layer).
HEAD_LR = 0.1
#: Learning rate of the pretrained layers (the reference: 0.1 × 1e-4).
BODY_LR = 1e-5
#: Method prefixes handled here (``finetune:X``, ``protonet:X``).
TRANSFER_METHODS = ("finetune", "protonet")
TRANSFER_BATCH = 128


# ----------------------------------------------------------------------------- models
def _glorot_linear(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        nn.init.xavier_uniform_(layer.weight, generator=generator)
        layer.bias.zero_()
    return layer


class TransferClassifier(nn.Module):
    """A pretrained ``body`` with a new dense softmax ``head``: patches → logits ``[batch, n_classes]``."""

    aggregate = "softmax"

    def __init__(self, body: nn.Module, head: nn.Linear, *, patch_frames: int, hop: int) -> None:
        super().__init__()
        self.body, self.head = body, head
        self.patch_frames, self.hop = int(patch_frames), int(hop)

    def train(self, mode: bool = True) -> TransferClassifier:
        super().train(mode)
        self.body.eval()  # frozen batch-norm statistics, no dropout
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class TransferProtonet(nn.Module):
    """A pretrained ``body`` + a dense embedding layer, classifying by distance to stored prototypes."""

    aggregate = "log_softmax"

    def __init__(self, body: nn.Module, embed: nn.Linear, *, n_classes: int, patch_frames: int, hop: int,
                 distance: str = "euclidean") -> None:
        super().__init__()
        self.body, self.head = body, embed
        self.n_classes, self.distance = int(n_classes), distance
        self.patch_frames, self.hop = int(patch_frames), int(hop)
        self.register_buffer("prototypes", torch.zeros(n_classes, embed.out_features))
        self.history: dict = {}

    def train(self, mode: bool = True) -> TransferProtonet:
        super().train(mode)
        self.body.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def process_support_set(self, support: torch.Tensor, support_labels: torch.Tensor) -> None:
        self.prototypes.copy_(compute_prototypes(self.embed(support), support_labels, self.n_classes))

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        return prototype_logits(self.embed(query), self.prototypes, self.distance)


def param_groups(model: nn.Module, *, head_lr: float = HEAD_LR, body_lr: float = BODY_LR) -> list[dict]:
    """SGD parameter groups: ``[{"name": "head", lr: head_lr}, {"name": "body", lr: body_lr}]``.

    Every parameter of ``model.body`` is made trainable and goes to the body group;
    every parameter of ``model.head`` to the head group.
    """
    for p in model.body.parameters():
        p.requires_grad_(True)
    return [
        {"name": "head", "params": list(model.head.parameters()), "lr": float(head_lr)},
        {"name": "body", "params": [p for p in model.body.parameters() if p.requires_grad], "lr": float(body_lr)},
    ]


def _check(train_inputs, train_y, n_classes) -> np.ndarray:
    y = np.asarray(train_y, dtype=np.int64)
    if len(train_inputs) == 0 or y.shape != (len(train_inputs),):
        raise ParameterError(f"train_y must have one label per training clip ({len(train_inputs)}); got {y.shape}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ParameterError(f"n_classes must be an int >= 2; got {n_classes!r}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ParameterError(f"train_y must hold labels in [0, {n_classes - 1}]; got [{y.min()}, {y.max()}]")
    return y


def train_finetune(source: Source, train_inputs: Sequence[np.ndarray], train_y: np.ndarray, *, n_classes: int,
                   epochs: int, seed: int, device: str | torch.device = "cpu", head_lr: float = HEAD_LR,
                   body_lr: float = BODY_LR, batch_size: int = TRANSFER_BATCH) -> TransferClassifier:
    """Fine-tune a copy of ``source.body`` with a new softmax head on the training clips only.

    Parameters
    ----------
    source : Source
    train_inputs : list of np.ndarray [shape=(n_frames_i, n_mels)]
        The source pipeline's log-mels of the training clips.
    train_y : np.ndarray [shape=(n_clips,)]
    n_classes : int
    epochs : int
        Epochs of one random patch per clip (the last model is kept).
    seed : int
        Head weights from ``torch_generator(seed, "init")``; order and patch starts from
        ``numpy_rng(seed, "order")``.
    head_lr, body_lr : float, default=0.1, 1e-5
    batch_size : int, default=128

    Returns
    -------
    TransferClassifier
        In eval mode; ``optimizer_groups`` records ``{name: lr}``.
    """
    y = _check(train_inputs, train_y, n_classes)
    body = copy.deepcopy(source.body)
    head = _glorot_linear(source.embedding_dim, n_classes, torch_generator(seed, "init"))
    model = TransferClassifier(body, head, patch_frames=source.patch_frames, hop=source.hop).to(device)
    groups = param_groups(model, head_lr=head_lr, body_lr=body_lr)
    opt = torch.optim.SGD(groups, lr=head_lr)
    model.optimizer_groups = {g["name"]: g["lr"] for g in groups}
    padded = pad_clips(train_inputs, source.patch_frames)
    rng = numpy_rng(seed, "order")
    model.train()
    for _ in range(int(epochs)):
        order = rng.permutation(len(padded))
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            x = torch.from_numpy(random_patches(padded, idx, source.patch_frames, rng)).to(device)
            loss = F.cross_entropy(model(x), torch.from_numpy(y[idx]).to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def train_transfer_protonet(source: Source, train_inputs: Sequence[np.ndarray], train_y: np.ndarray, *,
                            n_classes: int, config, seed: int, device: str | torch.device = "cpu",
                            embedding_dim: int = 10, head_lr: float = HEAD_LR,
                            body_lr: float = BODY_LR) -> TransferProtonet:
    """Prototypical training of ``source.body`` + a dense ``embedding_dim`` layer (reference B8, transfer_proto).

    Support, queries, epochs and stopping as :func:`fewshot.training.protonet.train_protonet`
    (``config.support_per_class``, ``queries_per_class``, ``patience``, ``max_epochs``,
    ``epochs``); patches are every evaluation window of the training clips (hop =
    ``source.hop``). Only training clips are read.
    """
    y = _check(train_inputs, train_y, n_classes)
    missing = sorted(set(range(n_classes)) - set(y.tolist()))
    if missing:
        raise ParameterError(f"protonet needs at least one training clip per class; none for classes {missing}")
    body = copy.deepcopy(source.body)
    embed = _glorot_linear(source.embedding_dim, embedding_dim, torch_generator(seed, "init"))
    model = TransferProtonet(body, embed, n_classes=n_classes, patch_frames=source.patch_frames,
                             hop=source.hop).to(device)
    groups = param_groups(model, head_lr=head_lr, body_lr=body_lr)
    opt = torch.optim.SGD(groups, lr=head_lr)
    model.optimizer_groups = {g["name"]: g["lr"] for g in groups}

    patches, clip_idx = clip_windows(train_inputs, patch_frames=source.patch_frames, hop=source.hop)
    patch_y = y[clip_idx]
    rng = numpy_rng(seed, "order")
    support, support_y, by_class, updates = episode_plan(patches, clip_idx, y, n_classes=n_classes, config=config,
                                                         rng=rng, device=device)
    limit = config.max_epochs if config.max_epochs is not None else (
        config.epochs if config.patience is None else None)
    best, not_improve, accs, epoch, stopped = -math.inf, 0, [], 0, "max_epochs"
    while limit is None or epoch < limit:
        model.train()
        for _ in range(updates):
            q = np.concatenate([rng.permutation(b)[:config.queries_per_class] for b in by_class])
            es = model.embed(support)
            eq = model.embed(torch.from_numpy(patches[q]).to(device))
            logits = prototype_logits(eq, compute_prototypes(es, support_y, n_classes), model.distance)
            loss = F.cross_entropy(logits, torch.from_numpy(patch_y[q]).to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        epoch += 1
        if patience_can_stop(config.patience, limit):  # the accuracy pass only feeds the stopping rule
            acc = _train_accuracy(model, patches, clip_idx, y, support, support_y, device=device)
            accs.append(acc)
            if acc <= best:
                not_improve += 1
            else:
                best = acc
                if config.patience_mode == "consecutive":
                    not_improve = 0
            if not_improve > config.patience:
                stopped = "patience"
                break
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    model.process_support_set(support, support_y)
    model.history = {"epochs": epoch, "train_accuracy": accs, "stopped": stopped}
    return model


@torch.no_grad()
def _train_accuracy(model: TransferProtonet, patches, clip_idx, y, support, support_y, *, device,
                    batch_size: int = 64) -> float:
    model.eval()
    model.process_support_set(support, support_y)
    logp = torch.cat([F.log_softmax(model(torch.from_numpy(patches[s:s + batch_size]).to(device)), 1).cpu()
                      for s in range(0, len(patches), batch_size)]).double().numpy()
    mean = np.zeros((len(y), logp.shape[1]))
    np.add.at(mean, clip_idx, logp)
    return float((mean.argmax(1) == y).mean())


# ----------------------------------------------------------------------------- protocol glue
def is_transfer_method(spec) -> bool:
    """Whether a parsed method is ``finetune:X`` or ``protonet:X`` (handled by :func:`fit_predict_transfer`)."""
    return spec.kind == "model" and (spec.model == "finetune" or (spec.model in TRANSFER_METHODS
                                                                  and spec.pretrained is not None))


def fit_predict_transfer(ctx, spec, unit, subset, *, config=None) -> np.ndarray:
    """Predicted class indices ``int64 [len(subset.test)]`` of a ``finetune:X`` / ``protonet:X`` unit.

    Trains on ``subset.train`` only (same seed derivation as the other trained models:
    ``derive_seed(seed, "model", dataset_id, fold, n, run)``), then predicts ``subset.test``.
    """
    from ..protocols.evaluate import training_config
    from ..seeds import derive_seed
    from .loop import predict_clips

    check_pretrained_name(spec.pretrained, method=spec.text)
    ds, cfg = ctx.dataset, ctx.config
    tcfg = config or training_config(cfg)
    n_classes = len(ds.classes)
    seed = derive_seed(cfg.seed, "model", ds.id, str(unit.fold), str(unit.n), int(unit.run))
    source = load_source(spec.pretrained)
    train_inputs = source_inputs(ctx, source, subset.train)
    y_train = ds.y[subset.train]
    if spec.model == "finetune":
        model = train_finetune(source, train_inputs, y_train, n_classes=n_classes, epochs=tcfg.epochs, seed=seed,
                               device=ctx.device)
    else:
        model = train_transfer_protonet(source, train_inputs, y_train, n_classes=n_classes, config=tcfg, seed=seed,
                                        device=ctx.device)
    test_inputs = source_inputs(ctx, source, subset.test)
    proba = predict_clips(model, test_inputs, device=ctx.device, hop=source.hop, batch_size=64)
    return np.asarray(proba.argmax(axis=1), dtype=np.int64)


# ----------------------------------------------------------------------------- pretrain
def pretrain(dataset: str, model: str, out, *, folds: Sequence[str] | None = None, epochs: int = 200,
             seed: int = 0, narrow: bool = False, params: dict[str, Any] | None = None,
             device: str = "cpu", cache_dir: str | None = None, n_folds: int = 5,
             spectrogram: str | None = None, progress=None):
    """Train ``model`` on every clip of ``dataset`` (or those of ``folds``) and save a checkpoint.

    The function behind ``fewshot pretrain``. Training is :func:`fewshot.training.train_model`
    (no validation data, the last model kept); the checkpoint is written by
    :func:`fewshot.training.checkpoints.save_checkpoint`.

    Returns
    -------
    Path
        The checkpoint written.
    """
    from ..data.cache import ArrayCache
    from ..data.datasets import load_dataset
    from ..protocols.config import ExperimentConfig
    from ..protocols.evaluate import Context
    from . import MODELS, TrainConfig, train_model
    from .checkpoints import save_checkpoint
    from .loop import QUICK_PARAMS

    entry = MODELS.get(model)
    ds = load_dataset(dataset, seed=seed, n_folds=n_folds)
    if folds:
        known = sorted({c.fold for c in ds.clips})
        bad = [f for f in folds if f not in known]
        if bad:
            raise ParameterError(f"--folds: fold {bad[0]!r} is not in dataset {ds.id!r}; "
                                 f"its folds are {', '.join(known)}")
        index = np.array([i for i, c in enumerate(ds.clips) if c.fold in set(folds)])
    else:
        index = np.arange(len(ds))
    spectrogram = spectrogram or entry.meta.get("spectrogram", "fewdata")
    cfg = ExperimentConfig(protocol="run", dataset=dataset, seed=seed, cache_dir=cache_dir, narrow=narrow)
    ctx = Context(ds, cfg, ArrayCache(cache_dir), device)
    inputs = [ctx.log_mel(int(i), spectrogram) for i in index]
    y = ds.y[index]
    kw = {**(QUICK_PARAMS.get(model, {}) if narrow else {}), **(params or {})}
    tcfg = TrainConfig(epochs=epochs, max_epochs=epochs if model == "protonet" else None,
                       patience=None if model == "protonet" else 200)
    net = train_model(model, inputs, y, n_classes=len(ds.classes), config=tcfg, seed=seed, device=device,
                      params=kw)
    return save_checkpoint(out, net, model_name=model, n_classes=len(ds.classes), classes=list(ds.classes),
                           spectrogram=spectrogram, patch_frames=tcfg.patch_frames,
                           n_mels=int(inputs[0].shape[1]), params=kw, train_config=tcfg,
                           extra={"dataset": ds.id, "seed": seed, "folds": list(folds or []),
                                  "n_clips": int(len(index))})
