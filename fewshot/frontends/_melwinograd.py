"""Winograd along time for the one-channel spectrogram filters: fewer products for the vertical and timbral filters.

A k_t × k_f filter on a one-channel log-mel ``[T, M]`` (M mel bands), followed by
the max over its P = M − k_f + 1 frequency positions, reads at output (t, p) the
k_t frames t … t+k_t−1 of bands p … p+k_f−1. Along time that is a k_t-tap
convolution, so Winograd's F(m, k_t) (``_winograd.py``) computes m frames from
m + k_t − 1 transformed frames with m + k_t − 1 matrix products instead of m · k_t:
2.33× fewer for k_t = 7 (F(3, 7)), 2× for k_t = 3 (F(4, 3)); k_t = 1 is the plain GEMM.

Per block of tiles the input transform runs over the M bands once; each
frequency position then reads its k_f transformed bands as one row of the product
(``[tiles · P, k_f] × [k_f, F]``, no zero-padded kernels), and the output
transform, the max over the P positions and the bias follow while the block is in
cache. Measured on one AVX2 core on a 5-s clip (235 frames), large width: the 7 × 86
filter 118 vs 201 ms (oneDNN), the timbral branches 122 vs 145 ms (the GEMM
formulation), the 7 × 96 filter 16 vs 18 ms (the mel-channel formulation); on the
narrow front-ends per-call costs make it slower (docs/performance.md). Which
formulation runs is measured per machine (:mod:`fewshot.frontends.tuning`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._matmul import bmm
from ._melconv import temporal_maps
from ._winograd import matrices, tile_size

__all__ = ["conv_max_freq_tm", "mel_winograd_filters", "MEL_WINOGRAD_PATHS"]

#: Product rows (tiles × frequency positions) and columns (filters) per call: the n products of a call
#: (n · rows · columns floats, ≤ 9.4 MB for F(3, 7)) stay in L3; the fastest of 5 settings tried (one AVX2 core).
_ROWS = 512
_COLUMNS = 512


def _tile(kt: int) -> int:
    return 1 if kt == 1 else tile_size(1, kt)


def _kernels(conv: nn.Conv2d, m: int) -> torch.Tensor:
    """The kernels transformed along time: ``[n, kf, F]``, cached on the layer under its weight's identity
    (a stacked or copied network carries other weights under the same layer names)."""
    w = conv.weight.detach()
    cache = conv.__dict__.setdefault("_mel_winograd", {})
    k = (m, str(w.device), w.data_ptr(), tuple(w.shape))
    if k not in cache:
        g = matrices(m, w.shape[2], w.device)[1]  # [n, kt]
        cache[k] = torch.einsum("jt,otf->jfo", g, w.float()[:, 0]).contiguous()
    return cache[k]


def conv_max_freq_tm(conv: nn.Conv2d, xt: torch.Tensor, *, pad: tuple[int, int]) -> torch.Tensor:
    """``max over frequency positions of conv2d(x, w) + b`` for a one-channel k_t × k_f filter bank.

    Parameters
    ----------
    conv : nn.Conv2d
        Filters ``[F, 1, k_t, k_f]`` (its own padding is ignored).
    xt : Tensor [shape=(batch, T, M)]
        The log-mel, time-major (bands last).
    pad : (int, int)
        Zero frames added before and after (the convolution is valid in frequency).

    Returns
    -------
    Tensor [shape=(batch, T + pad[0] + pad[1] − k_t + 1, F)]
        Before the activation (the caller applies the monotonic ReLU after the max).
    """
    b, t, bands = xt.shape
    kt, kf = conv.kernel_size
    m = _tile(kt)
    n = m + kt - 1
    positions = bands - kf + 1
    n_out = t + pad[0] + pad[1] - kt + 1
    n_tiles = -(-n_out // m)
    a_t, _, b_t = matrices(m, kt, xt.device)
    u = _kernels(conv, m)
    fo = u.shape[-1]
    xp = F.pad(xt, (0, 0, pad[0], max(0, n_tiles * m + kt - 1 - t - pad[0]))).contiguous()
    out = torch.empty(b, n_tiles, m, fo, device=xt.device)
    step = max(1, _ROWS // positions)  # tiles per block
    for i in range(b):
        base = xp[i]
        for s0 in range(0, n_tiles, step):
            nt = min(step, n_tiles - s0)
            win = base.as_strided((nt, n, bands), (m * bands, bands, 1), base.storage_offset() + s0 * m * bands)
            v = win if n == 1 else torch.matmul(b_t, win)  # Bᵀ d per tile and band: [nt, n, M]
            v = v.as_strided((n, nt, positions, kf), (v.stride(1), v.stride(0), 1, 1), v.storage_offset())
            v = v.reshape(n, nt * positions, kf)  # rows = (tile, frequency position): the bands it reads
            for c0 in range(0, fo, _COLUMNS):
                c1 = min(fo, c0 + _COLUMNS)
                prod = bmm(v, u[:, :, c0:c1])  # [n, nt·P, c]
                y = prod if n == 1 else torch.matmul(a_t, prod.view(n, -1))  # Aᵀ · products: [m, nt·P·c]
                y = y.view(m, nt, positions, c1 - c0).amax(2)  # the max over frequency positions
                out[i, s0:s0 + nt, :, c0:c1] = y.transpose(0, 1)
    out = out.view(b, n_tiles * m, fo)[:, :n_out]
    return out if conv.bias is None else out.add_(conv.bias)


def _vertical(fe, x: torch.Tensor) -> list[torch.Tensor]:
    y = conv_max_freq_tm(fe.conv, x[:, 0], pad=(0, 0))
    return [F.relu(y, inplace=True).transpose(1, 2).unsqueeze(-1)]


def _cnn_music(fe, x: torch.Tensor) -> list[torch.Tensor]:
    """Timbral branches by Winograd along time; the temporal part as the mel formulation."""
    maps = []
    for conv in fe.timbral:
        kt = conv.kernel_size[0]
        y = conv_max_freq_tm(conv, x[:, 0], pad=((kt - 1) // 2, (kt - 1) // 2))
        maps.append(F.relu(y, inplace=True).transpose(1, 2).unsqueeze(-1))
    return maps + temporal_maps(fe, x)


def mel_winograd_filters(fe) -> bool:
    """Whether ``fe`` has one-channel spectrogram filters for this formulation."""
    return type(fe).__name__ == "Vertical" or len(getattr(fe, "timbral", ())) > 0


#: Front-end class → its formulation ``(fe, x) → maps`` (float32); offered where the front-end has such filters.
MEL_WINOGRAD_PATHS = {"Vertical": _vertical, "CnnMusic": _cnn_music}
