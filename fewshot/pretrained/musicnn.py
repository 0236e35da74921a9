"""The musicnn and vgg music-tagging networks of Pons & Serra in PyTorch, with their weights.

An independent re-implementation of the inference graphs of ``musicnn`` 0.1.0 [#]_
(ISC licence, Music Technology Group, Universitat Pompeu Fabra), loading the four
checkpoints of the installed package with :mod:`fewshot.pretrained.tfbundle`.

Both networks take log-mel patches ``(batch, 187, 96)`` (time, mel) made by
:mod:`fewshot.pretrained.inputs` and return ``(logits, embedding)``:

- **musicnn**: a musically motivated front-end (timbral convs 7×38 and 7×67 with
  204 filters, temporal convs 128×1, 64×1, 32×1 with 51 filters, each max-pooled over
  frequency), a dense-residual mid-end (three Conv1d with 64 filters), max and mean
  pooling over time (interleaved), then BN → Dense 200 → ReLU → BN; the **embedding**
  is that 200-d output (the "penultimate" layer), the logits a Dense 200 → 50 [#]_.
- **vgg**: five 3×3 conv blocks with 128 filters and max-pooling; the **embedding** is
  the flattened last pooling (2 × 128 = 256-d, NHWC order), the logits a Dense 256 → 50.

As in TensorFlow 1, every convolution is followed by ReLU and *then* batch norm, with
``eps=1e-3``; TF's momentum 0.99 is PyTorch's ``momentum=0.01``. The models are
returned in eval mode (moving statistics, no dropout), which is how musicnn runs them.

References
----------
.. [#] J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for
   music audio tagging", ISMIR 2019 Late-Breaking/Demo. https://github.com/jordipons/musicnn
.. [#] J. Pons, O. Nieto, M. Prockup, E. Schmidt, A. Ehmann and X. Serra, "End-to-end
   learning for music audio tagging at scale", ISMIR 2018.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import DataError, ParameterError
from .inputs import N_FRAMES, N_MELS, PADDINGS, SR

__all__ = ["MTT_TAGS", "MSD_TAGS", "MusiCNN", "VGG", "PretrainedTagger", "build_network", "load_network",
           "load_pretrained"]

# Tag lists (column order of the taggram) from musicnn 0.1.0 ``configuration.py``,
# Copyright (c) 2019 Music Technology Group, Universitat Pompeu Fabra; ISC licence.
#: The 50 MagnaTagATune tags of the MTT models.
MTT_TAGS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal",
    "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance",
    "male voice", "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal",
    "female voice", "choral",
)
#: The 50 Million Song Dataset (Last.fm) tags of the MSD models.
MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul",
    "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies",
    "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop",
    "70s", "party", "country", "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal",
    "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)

_EPS = 1e-3
_MOMENTUM = 0.01


def _bn(kind: type[nn.Module], n: int) -> nn.Module:
    return kind(n, eps=_EPS, momentum=_MOMENTUM)


def _pad_same(x: torch.Tensor, k: int) -> torch.Tensor:
    """TF 'same' padding along time (dim 2) for a kernel of height ``k``: the extra pad goes at the end."""
    return F.pad(x, (0, 0, (k - 1) // 2, k // 2))


def _temporal_conv(weight: torch.Tensor, bias: torch.Tensor | None, bands: torch.Tensor) -> torch.Tensor:
    """A ``(k, 1)`` conv2d with TF 'same' padding in time, computed as a conv1d over the B·F bands.

    Same values as ``F.conv2d(_pad_same(x, k), weight, bias)`` for ``bands = x[:, 0].mT``;
    returns ``(B, C, F, T)`` (frequency and time swapped, which the per-channel batch norm
    and the max over frequency do not mind). The conv1d form runs forward and backward
    about 3× faster on CPU than oneDNN's conv2d with one input channel and a tall kernel.
    """
    b, f, t = bands.shape
    c, k = weight.shape[0], weight.shape[2]
    seq = F.pad(bands.reshape(b * f, 1, t), ((k - 1) // 2, k // 2))
    out = F.conv1d(seq, weight.view(c, 1, k), bias)  # (B·F, C, T)
    return out.view(b, f, c, t).transpose(1, 2)


def _fmax(h: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over frequency (axis 3 of ``(B, C, T, F)``, axis 2 of ``(B, C, F, T)``).

    ``max().values`` rather than ``amax``: same values, and its backward scatters into the
    argmax instead of comparing the whole map (a quarter of fine-tuning time with ``amax``).
    Gradients agree: ties only occur among positions the ReLU zeroed, whose gradient the
    ReLU discards, and batch norm sees the same sums.
    """
    return h.max(dim=dim).values


class MusiCNN(nn.Module):
    """musicnn (front-end 7774timbraltemporal, 64 mid-end filters, 200 back-end units).

    Parameters
    ----------
    n_classes : int, default=50
    n_mels : int, default=96
    n_midend : int, default=64
    n_dense : int, default=200
    """

    def __init__(self, n_classes: int = 50, *, n_mels: int = N_MELS, n_midend: int = 64, n_dense: int = 200):
        super().__init__()
        timbral, temporal = int(1.6 * 128), int(1.6 * 32)
        self.input_bn = _bn(nn.BatchNorm2d, 1)
        self.timbral = nn.ModuleList(nn.Conv2d(1, timbral, (7, int(f * n_mels))) for f in (0.4, 0.7))
        self.timbral_bn = nn.ModuleList(_bn(nn.BatchNorm2d, timbral) for _ in range(2))
        self.temporal_kernels = (128, 64, 32)
        self.temporal = nn.ModuleList(nn.Conv2d(1, temporal, (k, 1)) for k in self.temporal_kernels)
        self.temporal_bn = nn.ModuleList(_bn(nn.BatchNorm2d, temporal) for _ in range(3))
        n_front = 2 * timbral + 3 * temporal
        self.midend = nn.ModuleList(nn.Conv1d(c, n_midend, 7) for c in (n_front, n_midend, n_midend))
        self.midend_bn = nn.ModuleList(_bn(nn.BatchNorm1d, n_midend) for _ in range(3))
        n_pool = 2 * (n_front + 3 * n_midend)
        self.pool_bn = _bn(nn.BatchNorm1d, n_pool)
        self.dropout1 = nn.Dropout(0.5)
        self.dense = nn.Linear(n_pool, n_dense)
        self.dense_bn = _bn(nn.BatchNorm1d, n_dense)
        self.dropout2 = nn.Dropout(0.5)
        self.output = nn.Linear(n_dense, n_classes)
        self.embedding_dim = n_dense

    def forward(self, x: torch.Tensor, *, plain: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and penultimate embedding of log-mel patches.

        Parameters
        ----------
        x : Tensor of shape (batch, n_frames, n_mels)
        plain : bool, default=False
            Run the front end as musicnn writes it (input batch norm, zero padding, conv2d,
            ReLU, batch norm, ``amax``) instead of :meth:`_front_convs`; same values and
            gradients (tested), slower to fine-tune.

        Returns
        -------
        logits : Tensor of shape (batch, n_classes)
        embedding : Tensor of shape (batch, n_dense)
        """
        if plain:
            front = self._plain_front(x)
        else:
            front = [_fmax(bn(F.relu_(y)), dim) for y, bn, dim in self._front_convs(x)]  # (B, 204 | 51, T)
        features = [torch.cat(front, dim=1)]  # (B, 561, T)
        h = features[0]
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn, strict=True)):
            out = bn(F.relu(conv(F.pad(h, (3, 3)))))
            h = out if i == 0 else out + h
            features.append(h)
        h = torch.cat(features, dim=1)  # (B, 753, T)
        pooled = torch.stack([h.amax(dim=2), h.mean(dim=2)], dim=2).flatten(1)  # interleaved max/mean
        h = self.pool_bn(pooled)
        embedding = self.dense_bn(F.relu(self.dense(self.dropout1(h))))
        return self.output(self.dropout2(embedding)), embedding

    def _plain_front(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.input_bn(x.unsqueeze(1))  # (B, 1, T, F)
        front = [bn(F.relu(conv(F.pad(h, (0, 0, 3, 3))))).amax(dim=3)
                 for conv, bn in zip(self.timbral, self.timbral_bn, strict=True)]
        front += [bn(F.relu(conv(_pad_same(h, k)))).amax(dim=3)
                  for k, conv, bn in zip(self.temporal_kernels, self.temporal, self.temporal_bn, strict=True)]
        return front

    def _front_convs(self, x: torch.Tensor):
        """The five front-end convolutions of ``conv(pad(input_bn(x)))``, with the input batch norm folded in.

        The input batch norm is ``gamma * xhat + beta`` with one ``gamma`` and ``beta``; by
        linearity ``conv(pad(gamma * xhat + beta), W) = conv(pad(xhat), gamma * W) +
        beta * conv(pad(1), W)`` (zero padding comes after the batch norm, hence the padded
        ones). ``xhat`` carries no gradient, so fine-tuning skips the five input-gradient
        convolutions and still trains ``gamma`` and ``beta`` exactly. Running statistics are
        updated as ``input_bn`` would.

        Yields ``(map, batch_norm, frequency_axis)``: timbral maps ``(B, 204, T, F')`` and
        temporal maps ``(B, 51, F, T)``.
        """
        bn = self.input_bn
        if bn.training and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
        xhat = F.batch_norm(x.unsqueeze(1), bn.running_mean, bn.running_var, None, None, bn.training,
                            bn.momentum, bn.eps)  # (B, 1, T, F)
        ones = xhat.new_ones((1, 1) + xhat.shape[2:])
        padded, padded_ones = F.pad(xhat, (0, 0, 3, 3)), F.pad(ones, (0, 0, 3, 3))
        for conv, tbn in zip(self.timbral, self.timbral_bn, strict=True):
            y = F.conv2d(padded, conv.weight * bn.weight, conv.bias)
            yield y.add_(bn.bias * F.conv2d(padded_ones, conv.weight)), tbn, 3
        bands, ones = xhat[:, 0].transpose(1, 2), ones[:, 0].transpose(1, 2)  # (B, F, T): a sequence per band
        for conv, tbn in zip(self.temporal, self.temporal_bn, strict=True):
            y = _temporal_conv(conv.weight * bn.weight, conv.bias, bands)
            yield y.add_(bn.bias * _temporal_conv(conv.weight, None, ones)), tbn, 2

    def load_tf(self, weights: dict[str, np.ndarray]) -> None:
        """Copy the variables of a musicnn TF checkpoint (TF layouts) into this module."""
        _load_bn(self.input_bn, weights, "batch_normalization")
        # TF layer order: conv2d (7x38), conv2d_1 (7x67), conv2d_2..4 (temporal), conv2d_5..7 (mid-end);
        # batch_normalization_<i + 1> follows conv2d_<i>
        front = [*zip(self.timbral, self.timbral_bn, strict=True), *zip(self.temporal, self.temporal_bn, strict=True)]
        for i, (conv, bn) in enumerate(front):
            _load_conv2d(conv, weights, "conv2d" if i == 0 else f"conv2d_{i}")
            _load_bn(bn, weights, f"batch_normalization_{i + 1}")
        for i, (conv, bn) in enumerate(zip(self.midend, self.midend_bn, strict=True), start=len(front)):
            kernel = _get(weights, f"conv2d_{i}/kernel", (7, conv.in_channels, 1, conv.out_channels))
            _copy(conv.weight, kernel[:, :, 0, :].transpose(2, 1, 0))
            _copy(conv.bias, _get(weights, f"conv2d_{i}/bias", (conv.out_channels,)))
            _load_bn(bn, weights, f"batch_normalization_{i + 1}")
        _load_bn(self.pool_bn, weights, "batch_normalization_9")
        _load_dense(self.dense, weights, "dense")
        _load_bn(self.dense_bn, weights, "batch_normalization_10")
        _load_dense(self.output, weights, "dense_1")


class VGG(nn.Module):
    """musicnn's vgg baseline: five 3×3 conv blocks of 128 filters; input fixed at (187, 96).

    Parameters
    ----------
    n_classes : int, default=50
    n_filters : int, default=128
    """

    _POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))

    def __init__(self, n_classes: int = 50, *, n_filters: int = 128):
        super().__init__()
        self.input_bn = _bn(nn.BatchNorm2d, 1)
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else n_filters, n_filters, 3, padding=1)
                                   for i in range(5))
        self.bns = nn.ModuleList(_bn(nn.BatchNorm2d, n_filters) for _ in range(5))
        self.dropouts = nn.ModuleList(nn.Dropout(0.25) for _ in range(4))
        t, f = N_FRAMES, N_MELS
        for (kt, kf), (st, sf) in self._POOLS:
            t, f = (t - kt) // st + 1, (f - kf) // sf + 1
        self.embedding_dim = t * f * n_filters  # 2 * 1 * 128 = 256
        self.dropout = nn.Dropout(0.5)
        self.output = nn.Linear(self.embedding_dim, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and flattened last pooling of log-mel patches.

        Parameters
        ----------
        x : Tensor of shape (batch, 187, 96)

        Returns
        -------
        logits : Tensor of shape (batch, n_classes)
        embedding : Tensor of shape (batch, 256)
        """
        if x.shape[1:] != (N_FRAMES, N_MELS):
            raise ParameterError(f"vgg input must be (batch, {N_FRAMES}, {N_MELS}); got {tuple(x.shape)}")
        h = self.input_bn(x.unsqueeze(1))
        for i, (conv, bn, (kernel, stride)) in enumerate(zip(self.convs, self.bns, self._POOLS, strict=True)):
            h = F.max_pool2d(bn(F.relu(conv(h))), kernel, stride)
            if i < 4:
                h = self.dropouts[i](h)
        embedding = h.permute(0, 2, 3, 1).flatten(1)  # TF NHWC flatten: index t * 128 + c
        return self.output(self.dropout(embedding)), embedding

    def load_tf(self, weights: dict[str, np.ndarray]) -> None:
        """Copy the variables of a vgg TF checkpoint (TF layouts) into this module."""
        _load_bn(self.input_bn, weights, "batch_normalization")
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            _load_conv2d(conv, weights, f"{i + 1}CNN")
            _load_bn(bn, weights, f"batch_normalization_{i + 1}")
        _load_dense(self.output, weights, "dense")


# --------------------------------------------------------------------------- TF → PyTorch conversion


def _get(weights: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in weights:
        raise DataError(f"checkpoint has no variable {name!r}")
    value = weights[name]
    if tuple(value.shape) != tuple(shape):
        raise DataError(f"checkpoint variable {name!r} has shape {tuple(value.shape)}; expected {tuple(shape)}")
    return value


def _copy(param: torch.Tensor, value: np.ndarray) -> None:
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))


def _load_bn(bn: nn.Module, weights: dict[str, np.ndarray], scope: str) -> None:
    shape = (bn.num_features,)
    _copy(bn.weight, _get(weights, f"{scope}/gamma", shape))
    _copy(bn.bias, _get(weights, f"{scope}/beta", shape))
    _copy(bn.running_mean, _get(weights, f"{scope}/moving_mean", shape))
    _copy(bn.running_var, _get(weights, f"{scope}/moving_variance", shape))


def _load_conv2d(conv: nn.Conv2d, weights: dict[str, np.ndarray], scope: str) -> None:
    kh, kw = conv.kernel_size
    kernel = _get(weights, f"{scope}/kernel", (kh, kw, conv.in_channels, conv.out_channels))
    _copy(conv.weight, kernel.transpose(3, 2, 0, 1))  # [kh, kw, in, out] → [out, in, kh, kw]
    _copy(conv.bias, _get(weights, f"{scope}/bias", (conv.out_channels,)))


def _load_dense(linear: nn.Linear, weights: dict[str, np.ndarray], scope: str) -> None:
    kernel = _get(weights, f"{scope}/kernel", (linear.in_features, linear.out_features))
    _copy(linear.weight, kernel.T)
    _copy(linear.bias, _get(weights, f"{scope}/bias", (linear.out_features,)))


def build_network(architecture: str, *, n_classes: int = 50) -> nn.Module:
    """An untrained ``"musicnn"`` or ``"vgg"`` network."""
    if architecture == "musicnn":
        return MusiCNN(n_classes)
    if architecture == "vgg":
        return VGG(n_classes)
    raise ParameterError(f"architecture must be 'musicnn' or 'vgg'; got {architecture!r}")


def load_network(checkpoint: str) -> nn.Module:
    """The network of a musicnn checkpoint (``"MTT_musicnn"``, ...) with its weights, in eval mode."""
    from .tfbundle import CHECKPOINTS, load_variables

    if checkpoint not in CHECKPOINTS:
        raise ParameterError(f"unknown musicnn checkpoint {checkpoint!r}; available: {', '.join(CHECKPOINTS)}")
    net = build_network(checkpoint.split("_", 1)[1])
    net.load_tf(load_variables(checkpoint))
    return net.eval()


class PretrainedTagger(nn.Module):
    """A pretrained musicnn/vgg network together with its input pipeline settings and tags.

    Parameters
    ----------
    name : str
        Registered name (``"mtt_musicnn"``, ...).
    checkpoint : str
        musicnn checkpoint folder (``"MTT_musicnn"``, ...).
    net : MusiCNN or VGG
        The network, weights loaded.
    tags : sequence of str
        Output names, in column order.
    padding : {"reflect", "constant"}, default="reflect"
        STFT edge padding used by :func:`fewshot.pretrained.inputs.log_mel`.

    Attributes
    ----------
    sr : int
        16000, the sample rate the models expect.
    n_frames : int
        187, frames per patch.
    embedding_dim : int
        200 (musicnn) or 256 (vgg).
    """

    sr = SR
    n_frames = N_FRAMES

    def __init__(self, name: str, checkpoint: str, net: nn.Module, tags, *, padding: str = "reflect"):
        super().__init__()
        if padding not in PADDINGS:
            raise ParameterError(f"padding must be one of {', '.join(PADDINGS)}; got {padding!r}")
        self.name, self.checkpoint, self.net = name, checkpoint, net
        self.tags = tuple(tags)
        self.padding = padding
        self.embedding_dim = net.embedding_dim

    def forward(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(batch, n_tags)`` and embedding ``(batch, embedding_dim)`` of ``(batch, 187, 96)`` log-mels."""
        return self.net(patches)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, padding={self.padding!r}, n_tags={len(self.tags)}"


def load_pretrained(name: str, checkpoint: str, *, padding: str = "reflect") -> PretrainedTagger:
    """Build :class:`PretrainedTagger` ``name`` from musicnn checkpoint ``checkpoint`` (eval mode)."""
    tags = MTT_TAGS if checkpoint.startswith("MTT") else MSD_TAGS
    if padding not in PADDINGS:
        raise ParameterError(f"padding must be one of {', '.join(PADDINGS)}; got {padding!r}")
    return PretrainedTagger(name, checkpoint, load_network(checkpoint), tags, padding=padding).eval()
