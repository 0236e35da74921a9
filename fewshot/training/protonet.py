"""Prototypical networks [1]_ as trained in the few-data study [2]_ (reference B8).

:class:`PrototypicalNetwork` has the episode API of easyfsl:
:meth:`~PrototypicalNetwork.process_support_set` computes one prototype per class
(the mean embedding of its support patches), then ``forward(query)`` returns logits
``[n_query, n_classes]``.

Distances:

- ``"euclidean"``: logits = -mean over the embedding dimensions of the squared
  difference, i.e. squared Euclidean distance / D, as the reference (C-B3; this
  scales the softmax temperature by 1/D compared with Snell et al.);
- ``"cosine"``: logits = cosine similarity (in [-1, 1], no temperature).

Training (:func:`train_protonet`), reference B8:

1. every window (hop ``config.hop``) of the n training clips per class is extracted once;
2. the **support set** is fixed for the whole run: per class, clips in random order,
   one random window of each, the first ``support_per_class`` = 5 kept (C-B1);
3. each update draws ``queries_per_class`` = 5 random windows per class as queries;
   support and queries go separately through the backbone in train mode; loss =
   cross-entropy of the query logits; plain SGD with clipping (no L2);
4. an epoch is ``floor(n_windows / n_queries)`` updates; after each epoch all training
   clips are classified (eval mode, fixed support, mean log-softmax over windows);
5. stop when the training accuracy has not improved (``<=`` best) in more than
   ``patience`` epochs, counted cumulatively and never reset as in the reference
   (C-B2; ``patience_mode="consecutive"`` resets it), or at ``max_epochs``.
   Only the training clips are read; the last model is kept.

References
----------
.. [1] J. Snell, K. Swersky and R. S. Zemel, "Prototypical networks for few-shot
   learning", NeurIPS 2017.
.. [2] J. Pons, J. Serra and X. Serra, "Training neural audio classifiers with few
   data", ICASSP 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import ParameterError
from ..seeds import numpy_rng, torch_generator

__all__ = ["PrototypicalNetwork", "compute_prototypes", "prototype_logits", "protonet_loss", "train_protonet",
           "patience_can_stop"]

DISTANCES = ("euclidean", "cosine")


def compute_prototypes(embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean embedding per class: ``[n_support, D]`` -> ``[n_classes, D]``."""
    onehot = F.one_hot(labels, n_classes).to(embeddings.dtype)
    return (onehot.T @ embeddings) / onehot.sum(0).clamp(min=1.0)[:, None]


def prototype_logits(queries: torch.Tensor, prototypes: torch.Tensor, distance: str) -> torch.Tensor:
    """Logits ``[n_query, n_classes]``: -mean squared difference, or cosine similarity."""
    if distance == "euclidean":
        return -((queries[:, None, :] - prototypes[None, :, :]) ** 2).mean(-1)
    return F.cosine_similarity(queries[:, None, :], prototypes[None, :, :], dim=-1)


class PrototypicalNetwork(nn.Module):
    """Prototypical network over an embedding ``backbone``.

    Parameters
    ----------
    backbone : torch.nn.Module
        Maps patches ``[batch, n_frames, n_mels]`` to embeddings ``[batch, embedding_dim]``.
    n_classes : int
    embedding_dim : int
    distance : {"euclidean", "cosine"}, default="euclidean"

    Attributes
    ----------
    prototypes : torch.Tensor [shape=(n_classes, embedding_dim)]
        Set by :meth:`process_support_set`.
    """

    aggregate = "log_softmax"

    def __init__(self, backbone: nn.Module, *, n_classes: int, embedding_dim: int,
                 distance: str = "euclidean") -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ParameterError(f"distance must be one of {', '.join(DISTANCES)}; got {distance!r}")
        self.backbone, self.n_classes, self.distance = backbone, int(n_classes), distance
        self.register_buffer("prototypes", torch.zeros(n_classes, embedding_dim))
        self.history: dict = {}

    def reset_state(self) -> None:
        """Zero the prototypes (called by weight initialisation)."""
        with torch.no_grad():
            self.prototypes.zero_()

    @torch.no_grad()
    def process_support_set(self, support: torch.Tensor, support_labels: torch.Tensor) -> None:
        """Store the prototypes of ``support`` ``[n_support, n_frames, n_mels]`` with labels ``[n_support]``."""
        self.prototypes.copy_(compute_prototypes(self.backbone(support), support_labels, self.n_classes))

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        """Logits ``[n_query, n_classes]`` of query patches against the stored prototypes."""
        return prototype_logits(self.backbone(query), self.prototypes, self.distance)


def protonet_loss(model: PrototypicalNetwork):
    """``loss(params, buffers, batch) -> (loss, new_buffers)`` over the backbone's state.

    ``batch`` holds ``support``, ``support_y``, ``query``, ``query_y`` and the dropout
    masks ``masks_s`` / ``masks_q``. Support and queries pass separately through the
    backbone in train mode (two batch-norm batches, as the reference's two inputs).
    """
    from .loop import fold_batch_stats, functional_forward

    backbone, n_classes = model.backbone, model.n_classes

    def loss_fn(params, buffers, batch):
        es = functional_forward(backbone, params, buffers, batch["support"], batch["masks_s"])
        eq = functional_forward(backbone, params, buffers, batch["query"], batch["masks_q"])
        logits = prototype_logits(eq, compute_prototypes(es, batch["support_y"], n_classes), model.distance)
        return F.cross_entropy(logits, batch["query_y"]), fold_batch_stats(backbone, buffers)

    return loss_fn


def patience_can_stop(patience: int | None, limit: int | None) -> bool:
    """Whether the patience rule can stop a run before ``limit`` epochs.

    The counter grows at most once per epoch after the first (which always improves on
    ``-inf``), so it exceeds ``patience`` only after ``patience + 2`` epochs. When it cannot,
    the per-epoch training-accuracy pass is skipped: the trained model is the same (the pass
    draws no random numbers and changes no state), only ``history["train_accuracy"]`` is empty.
    """
    return patience is not None and (limit is None or limit > patience + 1)


@torch.no_grad()
def _train_accuracy(model: PrototypicalNetwork, patches: np.ndarray, clip_idx: np.ndarray, y: np.ndarray,
                    support, support_y, *, device, batch_size: int) -> float:
    model.eval()
    model.process_support_set(support, support_y)
    logp = torch.cat([F.log_softmax(model(torch.from_numpy(patches[s:s + batch_size]).to(device)), 1).cpu()
                      for s in range(0, len(patches), batch_size)]).double().numpy()
    mean = np.zeros((len(y), logp.shape[1]))
    np.add.at(mean, clip_idx, logp)
    return float((mean.argmax(1) == y).mean())


def episode_plan(patches: np.ndarray, clip_idx: np.ndarray, y: np.ndarray, *, n_classes: int, config, rng,
                 device) -> tuple[torch.Tensor, torch.Tensor, list[np.ndarray], int]:
    """The fixed support set and the query pools of a prototypical training run (reference B8).

    Support: one random window from each of ``support_per_class`` random clips per class, fixed
    for the whole run (C-B1). Returns ``(support, support_y, windows by class, updates per epoch)``,
    an epoch being ⌊windows / queries per update⌋ updates.
    """
    patch_y = y[clip_idx]
    chosen = []
    for c in range(n_classes):
        for k in rng.permutation(np.flatnonzero(y == c))[:config.support_per_class]:
            cand = np.flatnonzero(clip_idx == k)
            chosen.append(int(cand[rng.integers(len(cand))]))
    support = torch.from_numpy(patches[chosen]).to(device)
    support_y = torch.from_numpy(patch_y[chosen]).to(device)
    by_class = [np.flatnonzero(patch_y == c) for c in range(n_classes)]
    n_queries = sum(min(config.queries_per_class, len(b)) for b in by_class)
    return support, support_y, by_class, max(1, len(patches) // n_queries)


def train_protonet(model: PrototypicalNetwork, train_inputs: Sequence[np.ndarray], train_y: np.ndarray, *,
                   config, seed: int, device: str | torch.device = "cpu") -> PrototypicalNetwork:
    """Train ``model`` episodically on the training clips only (see the module docstring).

    Returns the model in eval mode with its fixed support set processed, ``hop`` set
    and ``history = {"epochs", "train_accuracy", "stopped"}``.
    """
    from .loop import model_state, sgd_step
    from .models import Dropout
    from .patches import clip_windows

    n_classes = model.n_classes
    y = np.asarray(train_y, dtype=np.int64)
    missing = sorted(set(range(n_classes)) - set(y.tolist()))
    if missing:
        raise ParameterError(f"protonet needs at least one training clip per class; none for classes {missing}")
    patches, clip_idx = clip_windows(train_inputs, patch_frames=model.patch_frames, hop=config.hop)
    patch_y = y[clip_idx]
    rng, gen = numpy_rng(seed, "order"), torch_generator(seed, "dropout")

    support, support_y, by_class, updates = episode_plan(patches, clip_idx, y, n_classes=n_classes, config=config,
                                                         rng=rng, device=device)

    backbone = model.backbone
    drops = [m for m in backbone.modules() if isinstance(m, Dropout)]
    loss_fn = protonet_loss(model)
    limit = config.max_epochs if config.max_epochs is not None else (
        config.epochs if config.patience is None else None)
    params, buffers = model_state(backbone)
    best, not_improve, accs, epoch, stopped = -math.inf, 0, [], 0, "max_epochs"
    while limit is None or epoch < limit:
        backbone.train()
        for _ in range(updates):
            q = np.concatenate([rng.permutation(b)[:config.queries_per_class] for b in by_class])
            batch = {
                "support": support, "support_y": support_y,
                "query": torch.from_numpy(patches[q]).to(device),
                "query_y": torch.from_numpy(patch_y[q]).to(device),
                "masks_s": [d.draw_mask(len(support), gen).to(device) for d in drops],
                "masks_q": [d.draw_mask(len(q), gen).to(device) for d in drops],
            }
            params, buffers, _ = sgd_step(loss_fn, params, buffers, batch, lr=config.lr,
                                          clip_norm=config.clip_norm)
        epoch += 1
        backbone.load_state_dict({**params, **buffers})
        if patience_can_stop(config.patience, limit):
            # Training accuracy is only read by the stopping rule; skip it when the rule cannot fire.
            acc = _train_accuracy(model, patches, clip_idx, y, support, support_y, device=device,
                                  batch_size=config.eval_batch_size)
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
    backbone.load_state_dict({**params, **buffers})
    model.eval()
    model.process_support_set(support, support_y)
    model.hop = config.hop
    model.history = {"epochs": epoch, "train_accuracy": accs, "stopped": stopped}
    return model
