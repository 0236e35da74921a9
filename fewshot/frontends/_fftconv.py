"""Convolutions through the FFT (overlap-save): fewer multiplications for the deep layers of wide random CNNs.

A convolution with C input and O output channels and a kernel of k taps costs
2·k·C·O FLOP per output position. Cut the (padded) input into overlapping tiles
of N positions, transform each tile and each kernel with a real FFT, and the
convolution becomes, for every one of the N/2 + 1 frequency bins, one complex
matrix product ``[tiles, C] × [C, O]`` (8 FLOP per complex multiply-add), then
an inverse FFT per output tile, of which the last N − k + 1 positions are exact
(overlap-save). Per output position that is 8·(N/2+1)/(N−k+1)·C·O, so for the
kernel-7 back-end of the frame-level front-ends (C = O = 896 at the large width)
and N = 64 the arithmetic drops 3.1×; measured on one AVX2 core, a 896 → 896
kernel-7 layer over 1,854 frames ran 2.0× faster than oneDNN's direct
convolution. In two dimensions (VGG's 3×3 layers, 16×16 tiles) the drop is 3×.
Accuracy: the FFT's rounding error is ~1e-6 relative to the largest output, as
for any float32 sum of C·k products (tested against the convolution).

The transformed kernels are computed once per layer, tile size and device and
kept on the layer (``[bins, C, O]`` complex64: 8·(N/2+1)·C·O bytes, e.g. 109 MB
for one 896-channel layer at N = 64), which is why only layers with many input
channels and enough output positions use this path (:func:`worth_fft`); which
formulation runs is measured per machine (:mod:`fewshot.frontends.tuning`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fft_conv1d", "fft_conv2d", "worth_fft", "fft_layers", "FFT_PATHS"]

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


def fft_conv1d(x: torch.Tensor, conv: nn.Conv1d, pad: tuple[int, int] = (0, 0), tile: int = 64) -> torch.Tensor:
    """``conv(F.pad(x, pad))`` (stride 1, no dilation) through the FFT.

    Parameters
    ----------
    x : Tensor [shape=(batch, C, T)]
    conv : nn.Conv1d
        Its weight ``[O, C, k]`` and bias are used (its own padding is ignored).
    pad : (int, int)
        Zeros added before and after the input.
    tile : int
        FFT length N (N − k + 1 outputs per tile).

    Returns
    -------
    Tensor [shape=(batch, O, T + pad[0] + pad[1] − k + 1)]
    """
    k = conv.kernel_size[0]
    b, c, t = x.shape
    n_out = t + pad[0] + pad[1] - k + 1
    hop = tile - k + 1
    n_tiles = -(-n_out // hop)
    xp = F.pad(x, (pad[0], (n_tiles - 1) * hop + tile - t - pad[0]))
    spec = torch.fft.rfft(xp.unfold(2, tile, hop), dim=-1)  # [B, C, tiles, bins]
    spec = spec.permute(3, 0, 2, 1).reshape(spec.shape[-1], b * n_tiles, c)
    out = torch.bmm(spec, _kernel_spectrum(conv, tile, x.device))  # [bins, B·tiles, O]
    out = out.view(-1, b, n_tiles, out.shape[-1]).permute(1, 3, 2, 0)  # [B, O, tiles, bins]
    y = torch.fft.irfft(out, n=tile, dim=-1)[..., k - 1:]  # the exact (non-wrapped) positions
    y = y.reshape(b, -1, n_tiles * hop)[..., :n_out]
    if conv.bias is not None:
        y = y + conv.bias.view(1, -1, 1)
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
def _conv1d_maybe_fft(layer: nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
    """``layer(h)`` (its own zero padding), through the FFT where :func:`worth_fft` says so."""
    k, pad = layer.kernel_size[0], layer.padding[0]
    if worth_fft(layer, h.shape[-1] + 2 * pad - k + 1, 64):
        return fft_conv1d(h, layer, (pad, pad), 64)
    return layer(h)


def _conv2d_maybe_fft(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` (its own zero padding), through a 2-D FFT on 16×16 tiles where :func:`worth_fft` says so."""
    (kh, kw), (ph, pw) = layer.kernel_size, layer.padding
    if worth_fft(layer, (x.shape[-2] + 2 * ph - kh + 1, x.shape[-1] + 2 * pw - kw + 1), 16):
        return fft_conv2d(x, layer, (ph, pw), 16)
    return layer(x)


def _frame_level_fft(fe, x: torch.Tensor) -> list[torch.Tensor]:
    return fe._maps(x, False, conv=_conv1d_maybe_fft)


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
