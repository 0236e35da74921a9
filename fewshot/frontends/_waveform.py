"""Random-weight CNNs on waveforms (12 kHz): sample-level, frame-level and frame-level-many [1]_.

Input ``[batch, n_samples]``; internally ``[batch, 1, n_samples]``. Weights are
He-normal (TF ``variance_scaling_initializer``), biases zero, no batch norm.

Frame-level back-end (Pons et al. "end-to-end learning for music audio tagging at
scale" [2]_, as elmarc codes it): the front-end output (time × C) is treated as a
one-channel image and convolved with 7×C kernels; that is a conv1d over C
channels with kernel 7, which is how it is written here.

**Difference from the reference (facts C-A1).** elmarc sized its feature matrix by
the first tensor's channel count; the back-end tensors are laid out (time, F, 1),
so each back-end layer gave ONE scalar (the mean over time × filters) and F−1
zeros. Here every back-end layer gives F per-filter time-means, so all 4F
(frame_level) / 8F (frame_level_many) features are informative.

Speed: these networks are convolution-bound (oneDNN's direct convolutions run
near the sgemm peak on CPU). The optimized path only pools before the monotonic
ReLU (sample-level) and applies activations in place; an unfold + GEMM
formulation of the strided front-end convolutions and a single 512-tap kernel
embedding the five frame-level-many kernels were measured slower (0.6–0.9×) and
are not used.

References
----------
.. [1] J. Lee, J. Park, K. L. Kim and J. Nam, "Sample-level deep convolutional
   neural networks for music auto-tagging using raw waveforms", SMC 2017.
.. [2] J. Pons, O. Nieto, M. Prockup, E. Schmidt, A. Ehmann and X. Serra,
   "End-to-end learning for music audio tagging at scale", ISMIR 2018.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._base import Frontend, frozen_conv, resolve_filters

__all__ = ["SampleLevel", "FrameLevel", "FrameLevelMany"]

SR = 12000
_COMMON = {"input": "waveform", "sr": SR}


class SampleLevel(Frontend):
    """Sample-level CNN, truncated as in elmarc: conv(3, stride 3) then 6 × [conv 3 'same', ReLU, max-pool 3].

    Feature = time-means of the first conv and the six pooled maps → 7F. Needs
    ≥ 2,187 samples (3⁷); shorter inputs are repeat-padded.

    Parameters
    ----------
    width : "small", "large" or "f<F>", default="small"
        F = 23 (161 features) or 512 (3,584).
    filters : int, optional
    seed : int, default=0
    seconds : float, optional
        Cut / repeat-pad clips to this length in :meth:`prepare` (None: whole clips).
    """

    thread_safe = True

    WIDTHS = {"small": 23, "large": 512}

    @classmethod
    def count_features(cls, filters: int) -> int:
        return 7 * filters

    def __init__(self, *, width: str = "small", filters: int | None = None, seed: int = 0,
                 seconds: float | None = None) -> None:
        width, nf = resolve_filters("sample_level", width, filters, self.WIDTHS)
        names = ["conv0"] + [f"pool{i}" for i in range(1, 7)]
        super().__init__(name="sample_level", width=width, filters=nf, seed=seed, seconds=seconds,
                         min_length=3 ** 7, layer_sizes=dict.fromkeys(names, nf), **_COMMON)
        g = torch.Generator().manual_seed(self.seed)
        self.conv0 = frozen_conv(nn.Conv1d, 1, nf, 3, stride=3, generator=g)
        self.convs = nn.ModuleList(frozen_conv(nn.Conv1d, nf, nf, 3, padding=1, generator=g) for _ in range(6))

    def _maps(self, x: torch.Tensor, plain: bool) -> list[torch.Tensor]:
        h = F.relu(self.conv0(x.unsqueeze(1)), inplace=not plain)
        maps = [h]
        for conv in self.convs:
            if plain:
                h = F.max_pool1d(F.relu(conv(h)), 3)
            else:  # pool before the (monotonic) ReLU: a third of the activations
                h = F.relu(F.max_pool1d(conv(h), 3), inplace=True)
            maps.append(h)
        return maps


def _same_pad(n: int, k: int, stride: int) -> tuple[int, int]:
    """TF 'same' padding (left, right) of a conv with kernel k and stride on n samples."""
    out = -(-n // stride)
    total = max((out - 1) * stride + k - n, 0)
    return total // 2, total - total // 2


def _apply(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return layer(x)


class _BackEnd(nn.Module):
    """The shared back-end: b1 = ReLU(conv 7 valid); b2 = ReLU(conv 7 'same')(b1) + b1;
    p = max-pool 2 (time); b3 = ReLU(conv 7 'same')(p) + p."""

    def __init__(self, in_channels: int, nf: int, g: torch.Generator) -> None:
        super().__init__()
        self.b1 = frozen_conv(nn.Conv1d, in_channels, nf, 7, generator=g)
        self.b2 = frozen_conv(nn.Conv1d, nf, nf, 7, padding=3, generator=g)
        self.b3 = frozen_conv(nn.Conv1d, nf, nf, 7, padding=3, generator=g)

    def forward(self, h: torch.Tensor, plain: bool = True, conv=None) -> list[torch.Tensor]:
        """``conv(layer, x)`` replaces ``layer(x)`` when given (another exact formulation, e.g. the FFT)."""
        conv = conv or _apply
        e1 = F.relu(conv(self.b1, h), inplace=not plain)
        e2 = F.relu(conv(self.b2, e1), inplace=not plain) + e1
        p = F.max_pool1d(e2, 2)
        e3 = F.relu(conv(self.b3, p), inplace=not plain) + p
        return [e1, e2, e3]


class FrameLevel(Frontend):
    """Frame-level front-end: conv1d kernel 512, stride 32, valid, ReLU; then the shared back-end.

    Feature = per-filter time-means of the front-end map and of the three back-end
    maps → 4F (the reference: F + 3 informative values, see the module notes).
    Needs ≥ 736 samples.

    Parameters
    ----------
    width : "small", "large" or "f<F>", default="small"
        F = 40 (160 features) or 896 (3,584).
    filters, seed, seconds
        As for :class:`SampleLevel`.
    """

    thread_safe = True

    WIDTHS = {"small": 40, "large": 896}

    @classmethod
    def count_features(cls, filters: int) -> int:
        return 4 * filters

    def __init__(self, *, width: str = "small", filters: int | None = None, seed: int = 0,
                 seconds: float | None = None) -> None:
        width, nf = resolve_filters("frame_level", width, filters, self.WIDTHS)
        super().__init__(name="frame_level", width=width, filters=nf, seed=seed, seconds=seconds,
                         min_length=512 + 7 * 32, layer_sizes=dict.fromkeys(("frontend", "b1", "b2", "b3"), nf),
                         **_COMMON)
        g = torch.Generator().manual_seed(self.seed)
        self.conv = frozen_conv(nn.Conv1d, 1, nf, 512, stride=32, generator=g)
        self.backend = _BackEnd(nf, nf, g)

    def _maps(self, x: torch.Tensor, plain: bool, conv=None) -> list[torch.Tensor]:
        h = F.relu(self.conv(x.unsqueeze(1)), inplace=not plain)
        return [h, *self.backend(h, plain, conv)]


class FrameLevelMany(Frontend):
    """Frame-level with many shapes: five conv1d (kernels 512, 256, 128, 64, 32; stride 32; 'same'), ReLU,
    concatenated to 5F channels; then the shared back-end (first kernel 7 × 5F).

    Feature = per-filter time-means of the five front-end maps and the three
    back-end maps → 8F. Needs ≥ 225 samples.

    Parameters
    ----------
    width : "small", "large" or "f<F>", default="small"
        F = 20 (160 features) or 448 (3,584).
    filters, seed, seconds
        As for :class:`SampleLevel`.
    """

    thread_safe = True

    WIDTHS = {"small": 20, "large": 448}
    KERNELS = (512, 256, 128, 64, 32)

    @classmethod
    def count_features(cls, filters: int) -> int:
        return 8 * filters

    def __init__(self, *, width: str = "small", filters: int | None = None, seed: int = 0,
                 seconds: float | None = None) -> None:
        width, nf = resolve_filters("frame_level_many", width, filters, self.WIDTHS)
        names = [f"frontend_{k}" for k in self.KERNELS] + ["b1", "b2", "b3"]
        super().__init__(name="frame_level_many", width=width, filters=nf, seed=seed, seconds=seconds,
                         min_length=7 * 32 + 1, layer_sizes=dict.fromkeys(names, nf), **_COMMON)
        g = torch.Generator().manual_seed(self.seed)
        self.convs = nn.ModuleList(frozen_conv(nn.Conv1d, 1, nf, k, stride=32, generator=g) for k in self.KERNELS)
        self.backend = _BackEnd(5 * nf, nf, g)

    def _maps(self, x: torch.Tensor, plain: bool, conv=None) -> list[torch.Tensor]:
        n = x.shape[1]
        fronts = [F.relu(front(F.pad(x.unsqueeze(1), _same_pad(n, k, 32))), inplace=not plain)
                  for front, k in zip(self.convs, self.KERNELS, strict=True)]
        return [*fronts, *self.backend(torch.cat(fronts, 1), plain, conv)]
