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

Speed: the optimized path (``forward`` without ``plain``) pools before the monotonic
ReLU (sample-level) and applies activations in place. The frame-level networks run
time-major (:func:`frame_level_tm`): the strided front-end convolutions as stride-1
conv2d over the polyphase view of the waveform in channels-last memory (oneDNN writes
its output time-major), the back-end as channels-last conv2d. That avoids PyTorch's
transposing copies (~0.5 GB/s on the AVX2 host) and measured 1.1–1.8× the
channels-first convolutions at the small widths (29-s clips, two threads). The other
formulations (GEMM, DFT, Winograd) replace only the back-end layers of this path.

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
from ._gemmconv import sample_level_tm

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
        if not plain:
            return self._maps_tm(x)
        h = F.relu(self.conv0(x.unsqueeze(1)))
        maps = [h]
        for conv in self.convs:
            h = F.max_pool1d(F.relu(conv(h)), 3)
            maps.append(h)
        return maps

    def _maps_tm(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The optimized convolution path, time-major (channels last) throughout.

        The strided first layer is one matrix product over the waveform viewed as rows of 3;
        each 3-tap layer is oneDNN's channels-last convolution (:func:`conv1d_tm`), max-pooled
        before the (monotonic) ReLU. Channels-first, oneDNN reorders every map to its blocked
        layout and back; time-major it does not: 7.5 against 10.0 ms per 29-s clip at the small width
        (two threads) and 706 against 759 ms at the large one (AVX-512 host, December 2026).
        """
        return sample_level_tm(self, x, _pool3_relu_layer)


def _pool3_relu_layer(conv: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """ReLU(max-pool 3(conv(h))) of a 3-tap 'same' layer on a time-major map, by oneDNN channels-last."""
    y = conv1d_tm(conv, h, (1, 1))
    n = y.shape[1] // 3
    return y[:, :3 * n].unflatten(1, (n, 3)).amax(2).clamp_(min=0)


def _same_pad(n: int, k: int, stride: int) -> tuple[int, int]:
    """TF 'same' padding (left, right) of a conv with kernel k and stride on n samples."""
    out = -(-n // stride)
    total = max((out - 1) * stride + k - n, 0)
    return total // 2, total - total // 2


class _BackEnd(nn.Module):
    """The shared back-end: b1 = ReLU(conv 7 valid); b2 = ReLU(conv 7 'same')(b1) + b1;
    p = max-pool 2 (time); b3 = ReLU(conv 7 'same')(p) + p."""

    def __init__(self, in_channels: int, nf: int, g: torch.Generator) -> None:
        super().__init__()
        self.b1 = frozen_conv(nn.Conv1d, in_channels, nf, 7, generator=g)
        self.b2 = frozen_conv(nn.Conv1d, nf, nf, 7, padding=3, generator=g)
        self.b3 = frozen_conv(nn.Conv1d, nf, nf, 7, padding=3, generator=g)

    def forward(self, h: torch.Tensor) -> list[torch.Tensor]:
        """The plain definition on a channels-first map ``[batch, C, T]``."""
        e1 = F.relu(self.b1(h))
        e2 = F.relu(self.b2(e1)) + e1
        p = F.max_pool1d(e2, 2)
        e3 = F.relu(self.b3(p)) + p
        return [e1, e2, e3]


# ---------------------------------------------------------------------- the optimized path: time-major maps
def strided_conv_tm(conv: nn.Conv1d, x: torch.Tensor, left: int, n_out: int) -> torch.Tensor:
    """A strided one-channel conv1d of waveforms ``x [batch, n]``, zero-padded by ``left`` (and on the right as
    needed) → time-major ``[batch, n_out, O]``.

    Computed as a stride-1 conv2d over the polyphase view (each row of ``stride`` samples is one input
    channel; ``k / stride`` taps) in channels-last memory, which oneDNN writes time-major: the same products
    as the strided convolution, measured 1.0–2.2× its speed on the AVX2 host (most at 20–40 filters).
    """
    k, s = conv.kernel_size[0], conv.stride[0]
    if k % s:  # not a registered network: the convolution itself (a transposed view)
        return conv(F.pad(x, (left, (n_out - 1) * s + k - left - x.shape[1])).unsqueeze(1)).transpose(1, 2)
    cache = conv.__dict__.setdefault("_tm_weights", {})
    if str(x.device) not in cache:
        w = conv.weight.detach().to(x.device).view(conv.out_channels, k // s, s).permute(0, 2, 1).unsqueeze(2)
        cache[str(x.device)] = w.contiguous(memory_format=torch.channels_last)  # [O, s, 1, k / s]
    rows = n_out + k // s - 1
    xp = F.pad(x, (left, max(0, rows * s - left - x.shape[1])))[:, :rows * s]
    poly = xp.reshape(x.shape[0], 1, rows, s).permute(0, 3, 1, 2)  # [B, s, 1, rows] in channels-last memory
    return F.conv2d(poly, cache[str(x.device)], conv.bias).squeeze(2).transpose(1, 2)


def conv1d_tm(conv: nn.Module, h: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """A stride-1 conv1d of a time-major map ``[batch, T, C]`` → ``[batch, T', O]`` (oneDNN, channels-last).

    ``conv`` may also be a stacked networks' per-seed layer (``convs`` and ``index``: see
    :mod:`fewshot.frontends.stacked`); each seed's conv then reads its own channels, as one grouped
    convolution over the seed-major channels. Time-major, oneDNN ran it at 1.2–1.9× the speed of one call per
    seed on channel slices (each slice is copied) and at 0.84–1.5× the single networks' calls (AVX2 host,
    one and two threads, K = 3, 20–40 channels, 1,860 and 10,900 frames).
    """
    convs = conv.convs if hasattr(conv, "convs") else [conv]
    groups = len(convs)
    cache = conv.__dict__.setdefault("_tm_conv", {})
    if str(h.device) not in cache:
        w = torch.cat([c.weight.detach() for c in convs]).to(h.device).unsqueeze(2)
        cache[str(h.device)] = (w.contiguous(memory_format=torch.channels_last),
                                torch.cat([c.bias.detach() for c in convs]).to(h.device))
    weight, bias = cache[str(h.device)]
    if getattr(conv, "index", None) is not None:  # seed k's channels gathered, seed-major
        h = h.index_select(2, conv.index.reshape(-1))
    if pad[0] != pad[1]:
        h, pad = F.pad(h, (0, 0, pad[0], pad[1])), (0, 0)
    y = F.conv2d(h.transpose(1, 2).unsqueeze(2), weight, bias, padding=(0, pad[0]), groups=groups)
    return y.squeeze(2).transpose(1, 2)


def _relu_front(conv: nn.Conv1d, x: torch.Tensor, left: int, n_out: int) -> torch.Tensor:
    return strided_conv_tm(conv, x, left, n_out).clamp_(min=0)


def _relu_layer(conv: nn.Module, h: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    return conv1d_tm(conv, h, pad).clamp_(min=0)


def frame_level_tm(fe, x: torch.Tensor, front=_relu_front, layer=_relu_layer) -> list[torch.Tensor]:
    """The maps of a frame-level front-end (:class:`FrameLevel`, :class:`FrameLevelMany`), time-major.

    ``front(conv, x, left, n_out)`` gives the ReLU of a strided front-end convolution of the waveforms
    ``x [batch, n]`` zero-padded by ``left``, time-major ``[batch, n_out, F]``; ``layer(conv, h, pad)`` the ReLU
    of a back-end convolution (stride 1, zero padding ``pad``) of a time-major map. The formulations differ
    only in these two (oneDNN here, GEMM in ``_gemmconv.py``, the DFT in ``_fftconv.py``, Winograd in
    ``_winograd.py``); keeping every map time-major avoids transposing copies, which PyTorch ran at
    ~0.5 GB/s on the AVX2 host. The maps are returned in the plain layout ``[batch, C, T]`` (views).
    """
    n = x.shape[1]
    if isinstance(fe, FrameLevelMany):  # five 'same' front-ends, concatenated
        n_out = -(-n // 32)
        fronts = [front(conv, x, _same_pad(n, k, 32)[0], n_out) for conv, k in zip(fe.convs, fe.KERNELS, strict=True)]
        h = torch.cat(fronts, 2)
    else:
        fronts = [front(fe.conv, x, 0, (n - 512) // 32 + 1)]
        h = fronts[0]
    be = fe.backend
    e1 = layer(be.b1, h, (0, 0))
    e2 = layer(be.b2, e1, (3, 3)).add_(e1)
    m = e2.shape[1] // 2 * 2
    p = torch.maximum(e2[:, 0:m:2], e2[:, 1:m:2])  # max-pool 2 over time
    e3 = layer(be.b3, p, (3, 3)).add_(p)
    return [f.transpose(1, 2) for f in (*fronts, e1, e2, e3)]


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

    def _maps(self, x: torch.Tensor, plain: bool, layer=None) -> list[torch.Tensor]:
        """Plain: the definition; else time-major (:func:`frame_level_tm`, ``layer`` its back-end layers)."""
        if not plain:
            return frame_level_tm(self, x, layer=layer or _relu_layer)
        h = F.relu(self.conv(x.unsqueeze(1)))
        return [h, *self.backend(h)]


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

    def _maps(self, x: torch.Tensor, plain: bool, layer=None) -> list[torch.Tensor]:
        """Plain: the definition; else time-major (:func:`frame_level_tm`, ``layer`` its back-end layers)."""
        if not plain:
            return frame_level_tm(self, x, layer=layer or _relu_layer)
        n = x.shape[1]
        fronts = [F.relu(front(F.pad(x.unsqueeze(1), _same_pad(n, k, 32))))
                  for front, k in zip(self.convs, self.KERNELS, strict=True)]
        return [*fronts, *self.backend(torch.cat(fronts, 1))]
