"""CNNs trained from scratch on few data: ``vgg``, ``timbre`` and ``sbcnn`` [1]_.

Every model reads log-mel patches ``[batch, n_frames, n_mels]`` (or
``[batch, 1, n_frames, n_mels]``: time, frequency, as the reference code) and
returns logits ``[batch, n_classes]``. Architectures follow the reference
implementation (``src/models_sl.py`` of jordipons/neural-classifiers-with-few-audio):

- ``vgg``: batch norm on the input (one mean/variance), then 5 x [3x3 'same' conv
  (32 filters), ELU, batch norm, 2x2 max-pool], flatten, dropout 0.5, dense -> logits.
- ``timbre``: input batch norm, one 7x108 (time x frequency) 'valid' conv with one
  filter per class and no activation, max over the whole map -> logits.
- ``sbcnn`` (Salamon and Bello [2]_): 24/48/48 5x5 'valid' ReLU convs with (4, 2)
  max-pools after the first two, dropout 0.5, dense 64 ReLU, dropout 0.5, dense.

Two layers differ from ``torch.nn`` so that training is reproducible and can be
vectorised over runs with ``torch.func.vmap`` (:mod:`fewshot.training.batched`):

- :class:`BatchNorm` normalises with batch statistics in training but never writes
  its running statistics itself: it records them, and the training step folds them
  in functionally (:func:`fewshot.training.loop.fold_batch_stats`). Defaults follow
  TensorFlow's ``tf.layers.batch_normalization`` (decay 0.99 = momentum 0.01,
  epsilon 1e-3).
- :class:`Dropout` takes its keep-mask from outside (drawn from the run's own
  ``torch.Generator``), never from the global RNG.

Weights are Glorot-uniform (biases 0), drawn from a ``torch.Generator``; modules are
built on the ``meta`` device first so that construction consumes no global RNG.

References
----------
.. [1] J. Pons, J. Serra and X. Serra, "Training neural audio classifiers with few
   data", ICASSP 2019.
.. [2] J. Salamon and J. P. Bello, "Deep convolutional neural networks and data
   augmentation for environmental sound classification", IEEE SPL 24(3), 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import ParameterError

__all__ = ["BatchNorm", "Dropout", "VGG", "Timbre", "SBCNN", "init_weights", "count_parameters"]


class BatchNorm(nn.Module):
    """Batch norm whose running statistics are updated by the training step.

    Parameters
    ----------
    num_features : int
        Size of the normalised axis.
    dim : int, default=1
        Axis of the input that is normalised (1: channels; 2: time frames, as the
        protonet input batch norm with ``axis=1`` in the reference, C-B4).
    momentum : float or None, default=0.01
        Weight of the new batch in the running statistics (PyTorch convention;
        TensorFlow's decay 0.99). None: cumulative average over all batches.
    eps : float, default=1e-3
    """

    def __init__(self, num_features: int, *, dim: int = 1, momentum: float | None = 0.01,
                 eps: float = 1e-3) -> None:
        super().__init__()
        self.num_features, self.dim, self.momentum, self.eps = num_features, dim, momentum, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros(()))
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dim != 1:
            x = x.transpose(1, self.dim)
        if self.training:
            dims = [0, *range(2, x.dim())]
            xd = x.detach()
            self.pending.append((xd.mean(dims), xd.var(dims, unbiased=True)))
            del self.pending[:-8]  # never grows when nobody folds the statistics in
            y = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        else:
            y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                             False, 0.0, self.eps)
        return y.transpose(1, self.dim) if self.dim != 1 else y


class Dropout(nn.Module):
    """Inverted dropout with an external keep-mask.

    Set ``mask`` (shape ``[batch, n_features]``, values 0 or ``1/(1-p)``) before a
    training forward pass, or set ``generator`` to draw one; eval mode is the identity.
    """

    def __init__(self, p: float, n_features: int) -> None:
        super().__init__()
        self.p, self.n_features = float(p), int(n_features)
        self.mask: torch.Tensor | None = None
        self.generator: torch.Generator | None = None

    def draw_mask(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """A keep-mask ``[batch, n_features]`` drawn on the generator's device."""
        keep = torch.rand((batch, self.n_features), generator=generator, device=generator.device) >= self.p
        return keep.float() / (1.0 - self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = self.mask
        if mask is None:
            if self.generator is None:
                raise RuntimeError("Dropout in training mode needs a mask or a generator (no global RNG)")
            mask = self.draw_mask(x.shape[0], self.generator).to(x.device)
        return x * mask


def _check_size(name: str, value: int, minimum: int, why: str) -> None:
    if int(value) < minimum:
        raise ParameterError(f"{name} must be >= {minimum} ({why}); got {value}")


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(1) if x.dim() == 3 else x


class VGG(nn.Module):
    """VGG-like CNN: input BN, 5 x [conv 3x3, ELU, BN, max-pool 2x2], dropout, dense.

    Parameters
    ----------
    n_outputs : int
        Classes (logits) or embedding size (protonet backbone).
    n_frames, n_mels : int, default=128
        Patch size; both must be >= 32 (five 2x2 pools).
    filters : int, default=32
    input_bn : {"channel", "time"}, default="channel"
        One mean/variance for the whole input, or one per time frame (protonet, C-B4).
    dropout : float, default=0.5
    bn_momentum : float or None, default=0.01
    """

    def __init__(self, n_outputs: int, *, n_frames: int = 128, n_mels: int = 128, filters: int = 32,
                 input_bn: str = "channel", dropout: float = 0.5, bn_momentum: float | None = 0.01) -> None:
        super().__init__()
        _check_size("n_frames", n_frames, 32, "vgg pools 5 times by 2")
        _check_size("n_mels", n_mels, 32, "vgg pools 5 times by 2")
        _check_size("filters", filters, 1, "vgg")
        if input_bn not in ("channel", "time"):
            raise ParameterError(f"input_bn must be 'channel' or 'time'; got {input_bn!r}")
        self.input_bn = (BatchNorm(1, momentum=bn_momentum) if input_bn == "channel"
                         else BatchNorm(n_frames, dim=2, momentum=bn_momentum))
        layers: list[nn.Module] = []
        c = 1
        for _ in range(5):
            layers += [nn.Conv2d(c, filters, 3, padding=1), nn.ELU(), BatchNorm(filters, momentum=bn_momentum),
                       nn.MaxPool2d(2)]
            c = filters
        self.features = nn.Sequential(*layers)
        n_flat = filters * (n_frames // 32) * (n_mels // 32)
        self.dropout = Dropout(dropout, n_flat)
        self.dense = nn.Linear(n_flat, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, (1,) n_frames, n_mels]`` -> ``[batch, n_outputs]``."""
        h = self.features(self.input_bn(_as_4d(x)))
        return self.dense(self.dropout(h.flatten(1)))


class Timbre(nn.Module):
    """One 'valid' conv of ``filter_shape`` (time x frequency), one filter per class, max -> logits."""

    def __init__(self, n_classes: int, *, n_frames: int = 128, n_mels: int = 128,
                 filter_shape: tuple[int, int] = (7, 108), bn_momentum: float | None = 0.01) -> None:
        super().__init__()
        ft, ff = (int(v) for v in filter_shape)
        _check_size("n_frames", n_frames, ft, f"timbre filter is {ft} frames long")
        _check_size("n_mels", n_mels, ff, f"timbre filter is {ff} bands tall")
        self.input_bn = BatchNorm(1, momentum=bn_momentum)
        self.conv = nn.Conv2d(1, n_classes, (ft, ff))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.input_bn(_as_4d(x))).amax(dim=(2, 3))


class SBCNN(nn.Module):
    """Salamon & Bello CNN: 3 'valid' 5x5 ReLU convs, (4, 2) pools, dense 64, dropouts 0.5.

    ``input_bn=True`` is the reference's model 1 ("SB-CNN | BN input"); model 0 has
    none. We default to True because the reference applies no other input
    normalisation (its mean/variance script is broken, B3).
    """

    def __init__(self, n_classes: int, *, n_frames: int = 128, n_mels: int = 128,
                 filters: tuple[int, int, int] = (24, 48, 48), dense: int = 64, input_bn: bool = True,
                 dropout: float = 0.5, bn_momentum: float | None = 0.01) -> None:
        super().__init__()
        f1, f2, f3 = (int(v) for v in filters)
        t = ((n_frames - 4) // 4 - 4) // 4 - 4
        f = ((n_mels - 4) // 2 - 4) // 2 - 4
        if t < 1 or f < 1:
            raise ParameterError(f"sbcnn needs n_frames >= 100 and n_mels >= 36; got {n_frames} x {n_mels}")
        self.input_bn = BatchNorm(1, momentum=bn_momentum) if input_bn else nn.Identity()
        self.features = nn.Sequential(
            nn.Conv2d(1, f1, 5), nn.ReLU(), nn.MaxPool2d((4, 2)),
            nn.Conv2d(f1, f2, 5), nn.ReLU(), nn.MaxPool2d((4, 2)),
            nn.Conv2d(f2, f3, 5), nn.ReLU(),
        )
        self.dropout1 = Dropout(dropout, f3 * t * f)
        self.hidden = nn.Linear(f3 * t * f, dense)
        self.dropout2 = Dropout(dropout, dense)
        self.dense = nn.Linear(dense, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(self.input_bn(_as_4d(x))).flatten(1)
        h = F.relu(self.hidden(self.dropout1(h)))
        return self.dense(self.dropout2(h))


def init_weights(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Glorot-uniform conv/dense kernels, zero biases, BN (1, 0, 0, 1), in module order."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, BatchNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.num_batches_tracked.zero_()
            elif hasattr(m, "reset_state"):
                m.reset_state()
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
