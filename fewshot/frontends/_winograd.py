"""Winograd (Toom-Cook) minimal filtering: fewer multiplications for the short kernels of the wide random CNNs.

A convolution with a kernel of r taps computes each output from r inputs. The
Winograd algorithm F(m, r) [1]_ computes m consecutive outputs from the
n = m + r − 1 inputs of their tile with n products instead of m·r:

    y = Aᵀ [(G g) ⊙ (Bᵀ d)]

with Aᵀ (m × n), G (n × r) and Bᵀ (n × n) fixed by n − 1 interpolation points
and the point at infinity (:func:`matrices`). Over C input and O output channels
the n element-wise products become n matrix products ``[tiles, C] × [C, O]``
(the transformed kernels ``U = G g`` are computed once per layer), so the
arithmetic of the convolution drops m·r/n times and runs at the GEMM rate:

- the sample-level 3-tap layers (512 channels at the large width) with F(6, 3), each
  tile two windows of the max-pool 3, pooled inside the block: 2.25× fewer products;
- VGG's 3 × 3 layers with the 1-D algorithm along both axes, tiles of whole pools
  (4 × 3 for the 4 × 3 pool, 5 × 4 for 5 × 2, …): 3–4× fewer;
- the frame-level back-ends' 7-tap layers with F(3, 7): 2.3× fewer.

Measured on one AVX2 core against oneDNN's direct convolution (with the same
pooling and activation): a 512 → 512 sample-level layer over 20,000 samples 537
vs 1,102 ms; VGG's second layer at the large width (717 channels, 320 × 48) 880 vs
2,108 ms (the FFT: 1,532 ms); a 896 → 896 kernel-7 layer over 1,854 frames 126 vs
249 ms (the FFT: 174 ms). docs/performance.md has the front-end tables.

Accuracy: the transforms have entries up to 2 (points 0, ±1, ±2, ±1/2), so the
float32 rounding error grows with the tile; at the sizes used here it is 2e-6
(F(6, 3)), 9e-6 (F(3, 7)) and 0.8–1.6e-5 (2-D) of the largest output (oneDNN's direct
convolution: 1–4e-6), within the float tolerance of the plain definition (tested in
``tests/test_winograd.py``). Which formulation
runs is measured per machine (:mod:`fewshot.frontends.tuning`): on narrow layers
the transforms cost more than they save.

References
----------
.. [1] A. Lavin and S. Gray, "Fast algorithms for convolutional neural networks",
   CVPR 2016.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._gemmconv import _conv1d_tm, _relu_, _vgg_layer, sample_level_tm
from ._matmul import bmm, mm
from ._waveform import conv1d_tm

__all__ = ["matrices", "conv1d_pool_tm", "conv2d_pool_tm", "worth_winograd", "tile_size"]

#: Interpolation points, in the order they are used (small magnitudes first: smaller rounding error).
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0)
#: Fewest input channels for which a 1-D / 2-D layer runs here (below, the transforms cost more than they save:
#: measured 0.85× oneDNN for 128 → 128 channels in 1-D, 1.4× in 2-D, one AVX2 core).
MIN_CHANNELS = {1: 256, 2: 64}
#: Fewest tiles (below, per-call costs dominate: VGG's last 4 × 4 map ran 1.7× slower here than in oneDNN).
MIN_TILES = 4
#: Outputs per tile, by kernel taps and pool: a whole number of pools, 3–6 outputs. 7-tap kernels take F(3, 7):
#: F(4, 7) was no faster on one AVX2 core and its points (±3) double the rounding error (measured, 896 channels).
_TILES = {3: {1: 4, 2: 4, 3: 6}, 7: {1: 3}}
#: Tiles per block: bounds the transformed block (n · tiles · C floats) so it stays in cache.
_BLOCK_TILES = 256
#: Tiles per block in 1-D: larger products amortise oneDNN's per-call cost (sample-level at the large width,
#: 29-s clips, two threads, AVX-512 host: 1,024 tiles ran 4–21 % faster than 256 in three interleaved runs; VGG's
#: 2-D blocks did not gain).
_BLOCK_TILES_1D = 1024


@cache
def _matrices64(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = m + r - 1
    if n - 1 > len(POINTS):
        raise ValueError(f"Winograd F({m}, {r}) needs {n - 1} points; at most {len(POINTS)} are defined")
    vander = np.zeros((n, n))
    a_t, g = np.zeros((m, n)), np.zeros((n, r))
    for j, p in enumerate(POINTS[:n - 1]):
        vander[:, j] = p ** np.arange(n)
        a_t[:, j] = p ** np.arange(m)
        g[j] = p ** np.arange(r)
    vander[n - 1, n - 1] = a_t[m - 1, n - 1] = g[n - 1, r - 1] = 1.0  # the point at infinity
    # sum_j Aᵀ[i, j] G[j, k] Bᵀ[j, l] = [l = i + k] for all i, k  ⇔  vander · Bᵀ = I
    return a_t, g, np.linalg.inv(vander)


def matrices(m: int, r: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Aᵀ ``[m, n]``, G ``[n, r]`` and Bᵀ ``[n, n]`` (float32) of F(m, r), n = m + r − 1.

    For a kernel ``g [r]`` and a tile ``d [n]``, ``Aᵀ((G g) ⊙ (Bᵀ d))[i] = Σ_k g[k] d[i + k]``.
    """
    return tuple(torch.tensor(a, dtype=torch.float32, device=device) for a in _matrices64(m, r))


def _kernels(conv: nn.Module, tiles: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The transformed kernels ``U`` of ``conv`` (cached on the layer): ``[Π n, C, O]`` float32."""
    cache = conv.__dict__.setdefault("_winograd_kernels", {})
    key = (tiles, str(device), conv.weight.data_ptr(), tuple(conv.weight.shape))  # a copy may carry other weights
    if key not in cache:
        w = conv.weight.detach().to(device=device, dtype=torch.float32)  # [O, C, *k]
        for axis, (m, r) in enumerate(zip(tiles, conv.kernel_size, strict=True)):
            g = matrices(m, r, device)[1]
            w = torch.movedim(torch.tensordot(w, g, dims=([2 + axis], [1])), -1, 2 + axis)  # taps → n points
        cache[key] = w.flatten(2).permute(2, 1, 0).contiguous()
    return cache[key]


def tile_size(pool: int, taps: int = 3) -> int:
    """Outputs per tile along an axis of ``taps``-tap kernels pooled by ``pool``: whole pools, 3–6 outputs."""
    return _TILES[taps].get(pool, pool)


def worth_winograd(conv: nn.Module, n_out: tuple[int, ...], pool: tuple[int, ...]) -> bool:
    """Whether ``conv`` runs here on ``n_out`` output positions pooled by ``pool``: stride 1, no dilation or
    groups, 3 taps per axis (or 7 in 1-D), enough input channels (:data:`MIN_CHANNELS`) and tiles
    (:data:`MIN_TILES`)."""
    if not isinstance(conv, nn.Conv1d | nn.Conv2d):
        return False
    dims = len(conv.kernel_size)
    if not all(k in _TILES and (dims == 1 or k == 3) for k in conv.kernel_size):
        return False
    tiles = 1
    for n, p, k in zip(n_out, pool, conv.kernel_size, strict=True):
        if tile_size(p, k) + k - 2 > len(POINTS):  # no interpolation points for such a tile
            return False
        tiles *= -(-(n // p * p) // tile_size(p, k))
    return (conv.in_channels >= MIN_CHANNELS[dims] and tiles >= MIN_TILES and conv.groups == 1
            and all(s == 1 for s in conv.stride) and all(d == 1 for d in conv.dilation))


def conv1d_pool_tm(h: torch.Tensor, conv: nn.Conv1d, *, pad: tuple[int, int], pool: int = 1,
                   act: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``act(max-pool(conv(h), pool))`` on a time-major map by F(m, r), m = :func:`tile_size` (pool, r).

    Tiles start at output 0 and hold a whole number of pooling windows, so the max over
    each window is taken inside the block, before the activation (exact for a monotonic one).
    Blocks of :data:`_BLOCK_TILES_1D` tiles read the input in place (only the edge blocks are
    copied between zeros), run the n products through :func:`~._matmul.mm` and reuse their buffers:
    on the AVX-512 host the sample-level large network's Winograd path went from 676 to 521 ms per
    29-s clip (two threads; the padded copy of each map and fresh multi-megabyte temporaries had
    cost a third of it).

    Parameters
    ----------
    h : Tensor [shape=(batch, T, C)]
        Time-major input (channels last).
    conv : nn.Conv1d
        r = 3 or 7 taps, stride 1; its weight and bias are used (its own padding is ignored).
    pad : (int, int)
        Zeros added before and after the input.
    pool : int
        Max-pool size (= stride, floor), 1 for none.
    act : callable, optional
        In-place monotonic activation applied after the pool.

    Returns
    -------
    Tensor [shape=(batch, (T + pad[0] + pad[1] − r + 1) // pool, O)]
    """
    r = conv.kernel_size[0]
    m = tile_size(pool, r)
    n, q = m + r - 1, m // pool
    b, t, c = h.shape
    o = conv.out_channels
    n_pool = (t + pad[0] + pad[1] - r + 1) // pool
    n_tiles = -(-n_pool * pool // m)
    a_t, _, b_t = matrices(m, r, h.device)
    u = _kernels(conv, (m,), h.device)
    bias = conv.bias.detach().float() if conv.bias is not None else None
    h = h.contiguous()
    out = torch.empty(b, n_tiles * q, o, device=h.device)
    # Buffers reused by every block: without the CLI's keep_heap, fresh multi-megabyte tensors cost page faults
    # each time (the output transform of a 512-channel block took 4 ms into a new tensor, 0.5 ms into a reused one).
    nb = min(_BLOCK_TILES_1D, n_tiles)
    v = torch.empty(nb, n, c, device=h.device)
    prod = torch.empty(n, nb * o, device=h.device)
    y_buf = torch.empty(m, nb * o, device=h.device)
    edge = torch.zeros(nb * m + r - 1, c, device=h.device)
    for i in range(b):
        for s0 in range(0, n_tiles, nb):
            nt = min(nb, n_tiles - s0)
            lo = s0 * m - pad[0]  # first input row of the block (negative inside the left padding)
            hi = lo + nt * m + r - 1
            if 0 <= lo and hi <= t:  # an inner block reads the input in place: no padded copy of the whole map
                base, offset = h[i], h[i].storage_offset() + lo * c
            else:  # an edge block: its rows between zeros
                base, offset = edge[:hi - lo].zero_(), 0
                base[max(lo, 0) - lo:min(hi, t) - lo] = h[i, max(lo, 0):min(hi, t)]
            win = base.as_strided((nt, n, c), (m * c, c, 1), offset)
            vv = torch.matmul(b_t, win, out=v[:nt])  # Bᵀd: [nt, n, C]
            pp = prod[:, :nt * o].view(n, nt, o)
            for j in range(n):  # point j: [nt, C] × [C, O]
                got = mm(vv[:, j], u[j], out=pp[j])
                if got.data_ptr() != pp[j].data_ptr():
                    pp[j].copy_(got)
            y = torch.matmul(a_t, prod[:, :nt * o], out=y_buf[:, :nt * o]).view(q, pool, nt, o)  # Aᵀ(·)
            dst = out[i, s0 * q:(s0 + nt) * q].view(nt, q, o).transpose(0, 1)  # [q, nt, O] of the output rows
            if pool == 1:
                dst.copy_(y[:, 0])
            else:
                torch.maximum(y[:, 0], y[:, 1], out=dst)
                for k in range(2, pool):
                    torch.maximum(dst, y[:, k], out=dst)
            if bias is not None:
                dst.add_(bias)
            if act is not None and (got := act(dst)) is not dst:  # an activation that is not in place
                dst.copy_(got)
    return out[:, :n_pool]


def conv2d_pool_tm(h: torch.Tensor, conv: nn.Conv2d, *, pool: tuple[int, int],
                   act: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``act(max-pool(conv(h), pool))`` of a 3 × 3 'same' convolution on a time-major map by F(mₜ × m_f, 3 × 3).

    The 1-D algorithm along both axes (mₜ = :func:`tile_size` (pool[0]), likewise m_f); tiles
    hold whole pooling windows, pooled inside the block, one axis at a time.

    Parameters
    ----------
    h : Tensor [shape=(batch, T, F, C)]
    conv : nn.Conv2d
        3 × 3, stride 1, padding 1 ('same').
    pool : (int, int)
        Max-pool (time, frequency), stride = pool, floor.
    act : callable, optional
        In-place monotonic activation applied after the pool.

    Returns
    -------
    Tensor [shape=(batch, T // pool[0], F // pool[1], O)]
    """
    pt, pf = pool
    mh, mw = tile_size(pt), tile_size(pf)
    nh, nw = mh + 2, mw + 2
    b, t, fq, c = h.shape
    tp, fp = t // pt, fq // pf
    th, tw = -(-tp * pt // mh), -(-fp * pf // mw)
    ah, _, bh = matrices(mh, 3, h.device)
    aw, _, bw = matrices(mw, 3, h.device)
    u = _kernels(conv, (mh, mw), h.device)
    bias = conv.bias.detach().float() if conv.bias is not None else None
    hp = F.pad(h, (0, 0, 1, max(0, tw * mw + 1 - fq), 1, max(0, th * mh + 1 - t))).contiguous()
    wp = hp.shape[2]
    out = torch.empty(b, th * mh // pt, tw * mw // pf, conv.out_channels, device=h.device)
    rows = max(1, _BLOCK_TILES // tw)
    for i in range(b):
        base = hp[i]
        for r0 in range(0, th, rows):
            nr = min(rows, th - r0)
            win = base.as_strided((nr, tw, nh, nw, c), (mh * wp * c, mw * c, wp * c, c, 1),
                                  base.storage_offset() + r0 * mh * wp * c)
            v = torch.matmul(bw, win)  # along frequency: [nr, tw, nh, nw, C]
            v = torch.matmul(bh, v.reshape(nr, tw, nh, nw * c)).view(nr * tw, nh * nw, c)  # along time
            prod = bmm(v.transpose(0, 1), u).transpose(0, 1)  # [tiles, nh·nw, O]
            y = torch.matmul(aw, prod.reshape(nr * tw, nh, nw, -1))  # [tiles, nh, mw, O]
            y = torch.matmul(ah, y.reshape(nr * tw, nh, -1))  # [tiles, mh, mw·O]
            y = y.view(nr, tw, mh // pt, pt, mw // pf, pf, -1).amax(3).amax(4)  # one axis at a time (faster)
            y = y.permute(0, 2, 1, 3, 4).reshape(nr * mh // pt, tw * mw // pf, -1)
            if bias is not None:
                y = y.add_(bias)
            out[i, r0 * mh // pt:(r0 + nr) * mh // pt] = act(y) if act is not None else y
    return out[:, :tp, :fp]


# ---------------------------------------------------------------------- the Winograd formulations of the front-ends
def _sample_level(fe, x: torch.Tensor) -> list[torch.Tensor]:
    """The GEMM formulation's first (strided) layer, then the wide 3-tap layers by F(6, 3), pooled in the block."""
    def layer(conv: nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
        if worth_winograd(conv, (h.shape[1],), (3,)):
            return conv1d_pool_tm(h, conv, pad=(1, 1), pool=3, act=_relu_)
        return _conv1d_tm(h, conv, pad=(1, 1), dtype=torch.float32, pool=3, act=_relu_)

    return sample_level_tm(fe, x, layer)


def _elu_(y: torch.Tensor) -> torch.Tensor:
    return F.elu(y, inplace=True)


def _vgg(fe, x: torch.Tensor) -> list[torch.Tensor]:
    """VGG's one-channel first layer as a patch GEMM, then each 3 × 3 layer by F(mₜ × m_f, 3 × 3) where worth it,
    else oneDNN's convolution (the last, 4 × 4 maps)."""
    from ._spectrogram import max_pool2d

    h = x[:, 0].unsqueeze(-1)  # time-major [batch, T, 96, 1]
    maps = []
    for i, (conv, pool) in enumerate(zip(fe.convs, fe.POOLS, strict=True)):
        if i == 0:
            h = _vgg_layer(conv, h, pool, torch.float32)
        elif worth_winograd(conv, tuple(h.shape[1:3]), pool):
            h = conv2d_pool_tm(h.contiguous(), conv, pool=pool, act=_elu_)
        else:
            h = F.elu(max_pool2d(conv(h.permute(0, 3, 1, 2)), pool), inplace=True).permute(0, 2, 3, 1)
        maps.append(h.permute(0, 3, 1, 2))
    return maps


def _relu_layer(layer: nn.Conv1d, h: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """ReLU of a frame-level back-end layer on a time-major map ``[batch, T, C]``: by F(3, 7) where
    :func:`worth_winograd` says so, else oneDNN's convolution."""
    k = layer.kernel_size[0]
    if not worth_winograd(layer, (h.shape[1] + pad[0] + pad[1] - k + 1,), (1,)):
        return conv1d_tm(layer, h, pad).clamp_(min=0)
    return conv1d_pool_tm(h, layer, pad=pad, act=_relu_)


def _frame_level(fe, x: torch.Tensor) -> list[torch.Tensor]:
    """The optimized time-major path (``_waveform.frame_level_tm``), its kernel-7 back-end by F(3, 7) where wide."""
    return fe._maps(x, False, layer=_relu_layer)


def winograd_layers(fe, x: torch.Tensor) -> bool:
    """Whether any layer of ``fe`` would run by Winograd on ``x`` (else the formulation is another one)."""
    name = type(fe).__name__
    if name == "SampleLevel":
        return worth_winograd(fe.convs[0], (x.shape[-1] // 3,), (3,))
    if name == "VGG":
        t, f = x.shape[-2] // fe.POOLS[0][0], x.shape[-1] // fe.POOLS[0][1]  # the second layer's input
        return len(fe.convs) > 1 and worth_winograd(fe.convs[1], (t, f), fe.POOLS[1])
    if name in ("FrameLevel", "FrameLevelMany"):
        return worth_winograd(fe.backend.b2, (x.shape[-1] // 32,), (1,))
    return False


#: Front-end class → its Winograd formulation ``(fe, x) → maps`` (float32).
WINOGRAD_PATHS = {"SampleLevel": _sample_level, "VGG": _vgg, "FrameLevel": _frame_level,
                  "FrameLevelMany": _frame_level}
