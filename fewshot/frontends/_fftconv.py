"""Convolutions through the FFT (overlap-save): fewer multiplications for the deep layers of wide random CNNs.

A convolution with C input and O output channels and a kernel of k taps costs
2·k·C·O FLOP per output position. Cut the (padded) input into overlapping tiles
of N positions, transform each tile and each kernel with a real DFT, and the
convolution becomes, for every one of the N/2 + 1 frequency bins, one complex
matrix product ``[tiles, C] × [C, O]``, then an inverse DFT per output tile, of
which the last N − k + 1 positions are exact (overlap-save).

In 1-D (the kernel-7 back-ends of the frame-level front-ends, :func:`fft_conv1d_tm`) the
maps are time-major and each complex product runs as three real ones (Gauss's trick),
6·(N/2+1)/(N−k+1)·C·O FLOP per output position: 3.4·C·O at N = 64, against 14·C·O
directly and 6·C·O for Winograd's F(3, 7). The forward and inverse DFTs are matrix
products with the tile layout ``[N, tiles · C]``, so no map is transposed. Measured on
the AVX2 host (two threads, 29-s clips) against the complex FFT formulation it
replaced: 1.1–1.3× for whole frame-level networks at the large width.

In 2-D (VGG's 3×3 layers, 16×16 tiles, :func:`fft_conv2d`) the complex products run as
such, 8·(N/2+1)/(N−k+1)·C·O per position per axis pair: the arithmetic drops 3×.

Accuracy: the rounding error is ~1e-6 relative to the largest output, as for any
float32 sum of C·k products (tested against the convolution).

The transformed kernels are computed once per layer, tile size and device and
kept on the layer (1-D: ``[3, bins, C, O]`` float32, 12·(N/2+1)·C·O bytes, e.g.
318 MB for one 896-channel layer at N = 64), which is why only layers with many
input channels and enough output positions use this path (:func:`worth_fft`);
which formulation runs is measured per machine (:mod:`fewshot.frontends.tuning`).
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from ._matmul import backend, bmm
from ._waveform import conv1d_tm

__all__ = ["fft_conv1d_tm", "fft_conv2d", "worth_fft", "fft_layers", "FFT_PATHS"]

#: Fewest input channels and output tiles for which the FFT path is offered (below: the direct conv).
MIN_CHANNELS = 64
MIN_TILES = 16


def worth_fft(conv: nn.Module, n_out: int | tuple[int, int], tile: int) -> bool:
    """Whether ``conv`` over ``n_out`` output positions has enough channels and tiles for the FFT path."""
    k = conv.kernel_size
    if conv.in_channels < MIN_CHANNELS or conv.groups != 1 or any(s != 1 for s in conv.stride) \
            or any(d != 1 for d in conv.dilation):
        return False
    sizes = (n_out,) if isinstance(n_out, int) else tuple(n_out)
    tiles = 1
    for n, kk in zip(sizes, k, strict=True):
        tiles *= -(-n // (tile - kk + 1))
    return tiles >= MIN_TILES


def _kernel_spectrum(conv: nn.Module, tile: int, device: torch.device) -> torch.Tensor:
    """The flipped kernel's real FFT on a tile (cached on the layer): ``[bins, C, O]`` complex64."""
    cache = conv.__dict__.setdefault("_fft_kernels", {})
    key = (tile, str(device))
    if key not in cache:
        w = conv.weight.detach().to(device=device, dtype=torch.float32)
        dims = tuple(range(2, w.dim()))
        spec = torch.fft.rfftn(w.flip(dims), s=(tile,) * len(dims), dim=dims)  # [O, C, *bins]
        cache[key] = spec.flatten(2).permute(2, 1, 0).contiguous()
    return cache[key]


@cache
def _dft_matrices(tile: int, k: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Real DFT of a tile as matrices: ``D [2·bins, tile]`` (rows: real parts, then imaginary parts of the
    ``bins = tile // 2 + 1`` bins) and the inverse restricted to the exact positions k − 1 … tile − 1,
    ``E [tile − k + 1, 2·bins]`` (float64 entries rounded once to float32)."""
    bins = tile // 2 + 1
    f = torch.arange(bins, dtype=torch.float64)
    ang = 2 * math.pi * f[:, None] * torch.arange(tile, dtype=torch.float64) / tile
    d = torch.cat([torch.cos(ang), -torch.sin(ang)])
    c = torch.full((bins,), 2.0, dtype=torch.float64)  # each bin but DC (and Nyquist) stands for two
    c[0] = 1.0
    if tile % 2 == 0:
        c[-1] = 1.0
    ang = 2 * math.pi * torch.arange(k - 1, tile, dtype=torch.float64)[:, None] * f / tile
    e = torch.cat([c * torch.cos(ang), -c * torch.sin(ang)], 1) / tile
    return d.float().to(device), e.float().to(device)


def _kernel_3m(conv: nn.Conv1d, tile: int, device: torch.device) -> torch.Tensor:
    """The flipped kernel's spectrum on a tile for the three real products: ``[3, bins, C, O]`` float32
    (Wr, Wi − Wr, Wr + Wi), cached on the layer."""
    cache = conv.__dict__.setdefault("_fft_kernels", {})
    key = ("3m", tile, str(device))
    if key not in cache:
        w = conv.weight.detach().to(device=device, dtype=torch.float32)
        spec = torch.fft.rfft(w.flip(-1), n=tile, dim=-1).permute(2, 1, 0)  # [bins, C, O]
        cache[key] = torch.stack([spec.real, spec.imag - spec.real, spec.real + spec.imag]).contiguous()
    return cache[key]


def fft_conv1d_tm(x: torch.Tensor, conv: nn.Conv1d, pad: tuple[int, int] = (0, 0), tile: int = 64) -> torch.Tensor:
    """``conv(F.pad(x, pad))`` (stride 1, no dilation) through the DFT, on time-major maps.

    The tiles are laid out ``[tile, tiles · C]`` (a row gather), so the forward DFT is one matrix
    product with :func:`_dft_matrices`' D and leaves every bin's real and imaginary parts as
    contiguous ``[tiles, C]`` matrices; the complex products per bin run as three real ones
    (Gauss: (Xr + Xi)·Wr, Xr·(Wi − Wr), Xi·(Wr + Wi)) instead of four; one matrix product with E
    gives the exact output positions. No transposition of a map is needed (PyTorch's transposing
    copies ran at ~0.5 GB/s on the AVX2 host).

    Parameters
    ----------
    x : Tensor [shape=(batch, T, C)]
        Time-major input.
    conv : nn.Conv1d
        Its weight ``[O, C, k]`` and bias are used (its own padding is ignored).
    pad : (int, int)
        Zeros added before and after the input.
    tile : int
        DFT length N (N − k + 1 outputs per tile).

    Returns
    -------
    Tensor [shape=(batch, T + pad[0] + pad[1] − k + 1, O)]
    """
    k = conv.kernel_size[0]
    b, t, c = x.shape
    n_out = t + pad[0] + pad[1] - k + 1
    hop = tile - k + 1
    n_tiles = -(-n_out // hop)
    bins = tile // 2 + 1
    d, e = _dft_matrices(tile, k, str(x.device))
    xp = F.pad(x, (0, 0, pad[0], (n_tiles - 1) * hop + tile - t - pad[0]))
    tiles = xp.unfold(1, tile, hop).permute(3, 0, 1, 2).contiguous()  # [tile, B, tiles, C]
    spec = (d @ tiles.view(tile, -1)).view(2, bins, b * n_tiles, c)  # real, imaginary parts per bin
    re, im = spec[0], spec[1]
    w = _kernel_3m(conv, tile, x.device)
    p1 = bmm(re + im, w[0])
    out = torch.empty(2, bins, b * n_tiles, conv.out_channels, device=x.device)
    if backend() == "onednn":  # the oneDNN op has no fused accumulate: products, then the sums
        torch.sub(p1, bmm(im, w[2]), out=out[0])  # real part: p1 − Xi·(Wr + Wi)
        torch.add(p1, bmm(re, w[1]), out=out[1])  # imaginary part: p1 + Xr·(Wi − Wr)
    else:
        torch.baddbmm(p1, im, w[2], alpha=-1, out=out[0])
        torch.baddbmm(p1, re, w[1], out=out[1])
    y = (e @ out.view(2 * bins, -1)).view(hop, b, n_tiles, -1)  # [hop, B, tiles, O]
    y = y.permute(1, 2, 0, 3).reshape(b, n_tiles * hop, -1)[:, :n_out]
    if conv.bias is not None:
        y = y.add_(conv.bias.to(y.device))
    return y


def fft_conv2d(x: torch.Tensor, conv: nn.Conv2d, pad: tuple[int, int] = (0, 0), tile: int = 16) -> torch.Tensor:
    """``conv2d(x, padding=pad)`` (stride 1, no dilation) through a 2-D FFT on ``tile × tile`` tiles.

    Parameters
    ----------
    x : Tensor [shape=(batch, C, H, W)]
    conv : nn.Conv2d
    pad : (int, int)
        Zeros on both sides of H and of W (as ``nn.Conv2d(padding=pad)``).
    tile : int

    Returns
    -------
    Tensor [shape=(batch, O, H + 2·pad[0] − kh + 1, W + 2·pad[1] − kw + 1)]
    """
    kh, kw = conv.kernel_size
    b, c, h, w = x.shape
    oh, ow = h + 2 * pad[0] - kh + 1, w + 2 * pad[1] - kw + 1
    hh, hw = tile - kh + 1, tile - kw + 1
    th, tw = -(-oh // hh), -(-ow // hw)
    xp = F.pad(x, (pad[1], (tw - 1) * hw + tile - w - pad[1], pad[0], (th - 1) * hh + tile - h - pad[0]))
    tiles = xp.unfold(2, tile, hh).unfold(3, tile, hw)  # [B, C, th, tw, tile, tile]
    spec = torch.fft.rfft2(tiles)  # [B, C, th, tw, tile, bins]
    n_bins = spec.shape[-2] * spec.shape[-1]
    spec = spec.permute(4, 5, 0, 2, 3, 1).reshape(n_bins, b * th * tw, c)
    out = torch.bmm(spec, _kernel_spectrum(conv, tile, x.device))  # [bins, B·tiles, O]
    out = out.view(tile, -1, b, th, tw, out.shape[-1]).permute(2, 5, 3, 4, 0, 1)  # [B, O, th, tw, tile, bins]
    y = torch.fft.irfft2(out, s=(tile, tile))[..., kh - 1:, kw - 1:]  # [B, O, th, tw, hh, hw]
    y = y.permute(0, 1, 2, 4, 3, 5).reshape(b, -1, th * hh, tw * hw)[:, :, :oh, :ow]
    if conv.bias is not None:
        y = y + conv.bias.view(1, -1, 1, 1)
    return y


# ---------------------------------------------------------------------- the FFT formulations of the front-ends
def _conv2d_maybe_fft(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` (its own zero padding), through a 2-D FFT on 16×16 tiles where :func:`worth_fft` says so."""
    (kh, kw), (ph, pw) = layer.kernel_size, layer.padding
    if worth_fft(layer, (x.shape[-2] + 2 * ph - kh + 1, x.shape[-1] + 2 * pw - kw + 1), 16):
        return fft_conv2d(x, layer, (ph, pw), 16)
    return layer(x)


def _relu_layer(conv: nn.Conv1d, h: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """ReLU of a back-end layer on a time-major map: through the DFT where :func:`worth_fft` says so."""
    k = conv.kernel_size[0]
    if worth_fft(conv, h.shape[1] + pad[0] + pad[1] - k + 1, 64):
        return fft_conv1d_tm(h, conv, pad, 64).clamp_(min=0)
    return conv1d_tm(conv, h, pad).clamp_(min=0)


def _frame_level_fft(fe, x: torch.Tensor) -> list[torch.Tensor]:
    """The optimized time-major path (``_waveform.frame_level_tm``) with the wide back-end layers through the DFT."""
    return fe._maps(x, False, layer=_relu_layer)


def _vgg_fft(fe, x: torch.Tensor) -> list[torch.Tensor]:
    return fe._maps(x, False, conv=_conv2d_maybe_fft)


def fft_layers(fe, x: torch.Tensor) -> bool:
    """Whether any layer of ``fe`` would run through the FFT on ``x`` (else the FFT formulation is the conv one)."""
    name = type(fe).__name__
    if name in ("FrameLevel", "FrameLevelMany"):
        n = (x.shape[1] - 512) // 32 + 1 if name == "FrameLevel" else -(-x.shape[1] // 32)
        return worth_fft(fe.backend.b1, n - 6, 64)
    if name == "VGG":
        t, f = x.shape[-2] // 4, x.shape[-1] // 2  # the second layer's map, the largest deep one
        return len(fe.convs) > 1 and worth_fft(fe.convs[1], (t, f), 16)
    return False


#: Front-end class → its FFT formulation: the front-end's own computation with the wide deep layers through the FFT.
FFT_PATHS = {"FrameLevel": _frame_level_fft, "FrameLevelMany": _frame_level_fft, "VGG": _vgg_fft}
