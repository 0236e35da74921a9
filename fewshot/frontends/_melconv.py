"""The mel-channel formulation: a 1-input-channel conv2d over (time, frequency) as a conv1d over mel bands.

A random CNN's spectrogram filters (7×96 vertical, the timbral k×38 / k×86
branches) read a one-channel log-mel; oneDNN runs a one-input-channel conv2d at a
few GFLOP/s. Laid out ``[batch, n_mels, T]``, the same filters are a conv1d whose
*input channels* are the mel bands: ``s`` output frequency positions at a time,
each with its kernel zero-padded to ``s + kf − 1`` bands, then the max over the
positions (before the monotonic activation, exact). On the AVX-512 development
host this ran 2–2.6× faster than the conv2d for the 7×96 filter and the 1×38
branch; whether it runs is measured per machine (``_fast.formulations``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["mel_conv_max", "use_mel_channels", "DNN_PATHS"]


def _mel_weight(fe, key, conv, s: int, f0: int, n_pos: int) -> torch.Tensor:
    """Zero-padded kernels for output frequency positions f0 … f0+n_pos−1 as one conv1d over mel channels:
    ``[n_pos · F, n_pos + kf − 1, kt]`` (cached on the front-end)."""
    cache = fe.__dict__.setdefault("_mel_weights", {})
    k = (key, s, f0, conv.weight.device, conv.weight.dtype)
    if k not in cache:
        fo, _, kt, kf = conv.weight.shape
        w = conv.weight[:, 0].permute(0, 2, 1)  # [F, kf, kt]
        wz = w.new_zeros(n_pos, fo, n_pos + kf - 1, kt)
        for j in range(n_pos):
            wz[j, :, j:j + kf] = w
        cache[k] = wz.view(n_pos * fo, n_pos + kf - 1, kt)
    return cache[k]


def mel_conv_max(fe, key, conv, xc: torch.Tensor, *, pad: int, s: int) -> torch.Tensor:
    """``max over frequency positions of conv2d(x, w)`` with the mel bands as input channels.

    ``xc`` is the log-mel laid out ``[batch, n_mels, T]`` (contiguous). Output positions are
    taken ``s`` at a time: one conv1d with ``s + kf − 1`` input channels (a contiguous slice of
    the bands) and ``s · F`` zero-padded kernels, then the max over the ``s`` positions; oneDNN
    runs these at near its AVX-512 peak, unlike a 1-input-channel conv2d. Returns ``[batch, F, T']``
    before the activation (the caller applies the monotonic ReLU after the max).
    """
    fo, _, kt, kf = conv.weight.shape
    n_pos = xc.shape[1] - kf + 1
    out = None
    for f0 in range(0, n_pos, s):
        m = min(s, n_pos - f0)
        w = _mel_weight(fe, key, conv, s, f0, m)
        y = F.conv1d(xc[:, f0:f0 + m + kf - 1], w, padding=pad)
        y = y.view(y.shape[0], m, fo, -1).amax(1) if m > 1 else y
        out = y if out is None else torch.maximum(out, y, out=out)
    return out + conv.bias.view(1, -1, 1)


def _mel_step(kt: int, kf: int, n_filters: int) -> int | None:
    """Positions per call for the mel-channel formulation, or None where conv2d + max stays faster."""
    if kf == 96:
        return 1
    if kf == 38 and kt == 1:
        return 4
    return None


def _vertical_dnn(fe, x: torch.Tensor) -> list[torch.Tensor]:
    xc = x[:, 0].transpose(1, 2).contiguous()
    y = mel_conv_max(fe, "v", fe.conv, xc, pad=0, s=1)
    return [F.relu(y, inplace=True).unsqueeze(-1)]


def _cnn_music_dnn(fe, x: torch.Tensor) -> list[torch.Tensor]:
    """Timbral branches: mel-channel conv1d where faster, else conv2d + max over frequency; temporal: as defined."""
    maps = []
    xc = x[:, 0].transpose(1, 2).contiguous() if len(fe.timbral) else None
    for i, conv in enumerate(fe.timbral):
        kt, kf = conv.kernel_size
        s = _mel_step(kt, kf, conv.out_channels)
        if s is None:
            xp = F.pad(x, (0, 0, (kt - 1) // 2, (kt - 1) // 2))
            y = F.conv2d(xp, conv.weight, conv.bias).amax(-1)
        else:
            y = mel_conv_max(fe, i, conv, xc, pad=(kt - 1) // 2, s=s)
        maps.append(F.relu(y, inplace=True).unsqueeze(-1))
    return maps + temporal_maps(fe, x)


def temporal_maps(fe, x: torch.Tensor) -> list[torch.Tensor]:
    """The temporal branches of a :class:`CnnMusic` as defined: conv1d over the frequency-average, ReLU."""
    if not len(fe.temporal):
        return []
    signal = x.mean(dim=3)
    maps = []
    for conv, k in zip(fe.temporal, fe.kernels, strict=True):
        left = (k - 1) // 2
        maps.append(F.relu(conv(F.pad(signal, (left, k - 1 - left))), inplace=True))
    return maps


DNN_PATHS = {"Vertical": _vertical_dnn, "CnnMusic": _cnn_music_dnn}


def use_mel_channels(fe) -> bool:
    name = type(fe).__name__
    if name == "Vertical":
        return fe.conv.kernel_size[1] == 96
    if name == "CnnMusic":
        return len(fe.timbral) > 0
    return False
