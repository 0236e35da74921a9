"""Winograd along time for the one-channel spectrogram filters, with the mel bands as input channels.

A k_t × k_f filter on a one-channel log-mel ``[T, M]`` (M mel bands), followed by
the max over its P = M − k_f + 1 frequency positions, is for each group of s
positions a conv1d over time with the s + k_f − 1 bands the group reads as input
channels and s · F zero-padded kernels (the mel-channel formulation,
``_melconv.py``). Over time that conv1d has k_t taps, so Winograd's F(m, k_t)
(``_winograd.py``) computes it with m + k_t − 1 matrix products per m frames
instead of m · k_t: 2.33× fewer for k_t = 7 (F(3, 7)), 2× for k_t = 3 (F(4, 3)), and
the plain GEMM for k_t = 1. The input transform (over M bands only) is shared by
every group and every branch with the same k_t; the output transform, the max over
the group's positions and the running max over groups happen per block of frames,
in cache.

Used by the vertical filters (7 × 96, 7 × 86) and the timbral branches of the
musically motivated front-ends (7/3/1 × 86 and × 38). Groups: s positions such that
the zero-padded kernels waste at most ~15 % (``(s + k_f − 1) / k_f``), e.g. 6 of the
59 positions of a 38-band filter, all 11 of an 86-band one.
Which formulation runs is measured per machine (:mod:`fewshot.frontends.tuning`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._winograd import matrices, tile_size

__all__ = ["conv_max_freq_tm", "group_size", "mel_winograd_filters", "MEL_WINOGRAD_PATHS"]

#: Largest share of zero-padded kernel columns a group of positions may add.
_WASTE = 0.15
#: Tiles per block and product columns per call: the n products of a block (n · tiles · columns floats)
#: stay in L2 and the kernels of a range of filters are read once per block.
_TILES = 128
_COLUMNS = 256


def group_size(kf: int, positions: int) -> int:
    """Frequency positions per group for a filter ``kf`` bands tall with ``positions`` positions in all."""
    return max(1, min(positions, int(_WASTE * kf) + 1))


def _tile(kt: int) -> int:
    return 1 if kt == 1 else tile_size(1, kt)


def _group_kernels(fe, key, conv: nn.Conv2d, f0: int, s: int, m: int) -> torch.Tensor:
    """Transformed zero-padded kernels of positions f0 … f0+s−1: ``[n, s + kf − 1, F · s]``, columns in
    (filter, position) order so that a range of filters is a range of columns (cached on ``fe``)."""
    cache = fe.__dict__.setdefault("_mel_winograd", {})
    k = (key, f0, s, m, str(conv.weight.device))
    if k not in cache:
        fo, _, kt, kf = conv.weight.shape
        w = conv.weight.detach().float()[:, 0].permute(0, 2, 1)  # [F, kf, kt]
        wz = w.new_zeros(fo, s, s + kf - 1, kt)
        for j in range(s):
            wz[:, j, j:j + kf] = w
        g = matrices(m, kt, w.device)[1]  # [n, kt]
        u = torch.tensordot(wz, g, dims=([3], [1]))  # [F, s, s + kf − 1, n]
        cache[k] = u.permute(3, 2, 0, 1).reshape(g.shape[0], s + kf - 1, fo * s).contiguous()
    return cache[k]


def conv_max_freq_tm(fe, branches: list[tuple[object, nn.Conv2d]], xt: torch.Tensor, *,
                     pad: tuple[int, int]) -> list[torch.Tensor]:
    """``max over frequency positions of conv2d(x, w) + b`` for one-channel filters with the same k_t.

    Parameters
    ----------
    fe : Frontend
        Holds the cache of transformed kernels.
    branches : list of (key, nn.Conv2d)
        Filters ``[F, 1, k_t, k_f]``, all with the same k_t.
    xt : Tensor [shape=(batch, T, M)]
        The log-mel, time-major (bands last).
    pad : (int, int)
        Zero frames added before and after (the convolution is valid in frequency).

    Returns
    -------
    list of Tensor [shape=(batch, T + pad[0] + pad[1] − k_t + 1, F)]
        Before the activation (the caller applies the monotonic ReLU after the max).
    """
    kt = branches[0][1].kernel_size[0]
    m = _tile(kt)
    n = m + kt - 1
    b, t, bands = xt.shape
    n_out = t + pad[0] + pad[1] - kt + 1
    n_tiles = -(-n_out // m)
    a_t, _, b_t = matrices(m, kt, xt.device)
    xp = F.pad(xt, (0, 0, pad[0], max(0, n_tiles * m + kt - 1 - t - pad[0]))).contiguous()
    plans = []  # per branch: its groups (f0, s, kf) and output
    for _, conv in branches:
        kf = conv.kernel_size[1]
        positions = bands - kf + 1
        s = group_size(kf, positions)
        plans.append([(f0, min(s, positions - f0), kf) for f0 in range(0, positions, s)])
    outs = [torch.empty(b, n_tiles * m, conv.out_channels, device=xt.device) for _, conv in branches]
    for i in range(b):
        base = xp[i]
        for s0 in range(0, n_tiles, _TILES):
            nt = min(_TILES, n_tiles - s0)
            win = base.as_strided((nt, n, bands), (m * bands, bands, 1), base.storage_offset() + s0 * m * bands)
            v = win.transpose(0, 1) if n == 1 else torch.matmul(b_t, win).transpose(0, 1)  # [n, nt, M]
            for (key, conv), groups, out in zip(branches, plans, outs, strict=True):
                fo = conv.out_channels
                for c0 in range(0, fo, _COLUMNS // groups[0][1]):  # a range of filters: products stay in cache
                    c1 = min(fo, c0 + _COLUMNS // groups[0][1])
                    best = None
                    for f0, s, kf in groups:
                        u = _group_kernels(fe, key, conv, f0, s, m)[:, :, c0 * s:c1 * s]
                        prod = torch.bmm(v[:, :, f0:f0 + s + kf - 1], u)  # [n, nt, (c1 − c0)·s]
                        y = prod[0] if n == 1 else torch.matmul(a_t, prod.transpose(0, 1))  # [nt, m, (c1 − c0)·s]
                        y = y.reshape(nt * m, c1 - c0, s)
                        y = y.amax(2) if s > 1 else y[:, :, 0]
                        best = y if best is None else torch.maximum(best, y, out=best)
                    out[i, s0 * m:(s0 + nt) * m, c0:c1] = best.add_(conv.bias[c0:c1])
    return [out[:, :n_out] for out in outs]


def _vertical(fe, x: torch.Tensor) -> list[torch.Tensor]:
    (y,) = conv_max_freq_tm(fe, [("v", fe.conv)], x[:, 0], pad=(0, 0))
    return [F.relu(y, inplace=True).transpose(1, 2).unsqueeze(-1)]


def _cnn_music(fe, x: torch.Tensor) -> list[torch.Tensor]:
    """Timbral branches grouped by k_t (one input transform each); the temporal part as the mel formulation."""
    maps: list[torch.Tensor | None] = [None] * len(fe.timbral)
    xt = x[:, 0]
    for kt in sorted({conv.kernel_size[0] for conv in fe.timbral}):
        idx = [j for j, conv in enumerate(fe.timbral) if conv.kernel_size[0] == kt]
        ys = conv_max_freq_tm(fe, [(j, fe.timbral[j]) for j in idx], xt, pad=((kt - 1) // 2, (kt - 1) // 2))
        for j, y in zip(idx, ys, strict=True):
            maps[j] = F.relu(y, inplace=True).transpose(1, 2).unsqueeze(-1)
    if len(fe.temporal):
        signal = x.mean(dim=3)
        for conv, k in zip(fe.temporal, fe.kernels, strict=True):
            left = (k - 1) // 2
            maps.append(F.relu(conv(F.pad(signal, (left, k - 1 - left))), inplace=True))
    return maps


def mel_winograd_filters(fe) -> bool:
    """Whether ``fe`` has one-channel spectrogram filters for this formulation."""
    return type(fe).__name__ == "Vertical" or len(getattr(fe, "timbral", ())) > 0


#: Front-end class → its formulation ``(fe, x) → maps`` (float32); offered where the front-end has such filters.
MEL_WINOGRAD_PATHS = {"Vertical": _vertical, "CnnMusic": _cnn_music}
