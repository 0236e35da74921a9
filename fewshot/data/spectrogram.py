"""Log-mel spectrograms and the 120-d MFCC vector, with the reference studies' settings.

:func:`log_mel` is ``torch.stft`` → power → a Slaney mel matrix
(:func:`torchaudio.functional.melscale_fbanks`, the same filters as librosa's
``filters.mel``) → log compression, on any device. On CPU one clip at a time is the fast
path (a batch is processed clip by clip there; perf baselines §1: ~2.5-4x librosa).
Output layout is (time, frequency), as in the reference code: ``[..., n_frames, n_mels]``.

The settings, :class:`SpectrogramConfig` and the named configs of :data:`SPECTROGRAMS`
(``elmarc``, ``fewdata``, ``musicnn``), live in :mod:`fewshot.data._spectrogram_config` and
are importable from here.

References
----------
.. [4] K. Choi, G. Fazekas, M. Sandler and K. Cho, "Transfer learning for music
   classification and regression tasks", ISMIR 2017 (the MFCC baseline).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..exceptions import DataError, ParameterError
from ._spectrogram_config import SPECTROGRAMS, SpectrogramConfig, get_spectrogram
from .audio import clip_identity, fix_length, read_clip

if TYPE_CHECKING:
    from .cache import ArrayCache
    from .datasets._base import Clip, Dataset

__all__ = [
    "SpectrogramConfig",
    "SPECTROGRAMS",
    "get_spectrogram",
    "log_mel",
    "LogMel",
    "mfcc_vector",
    "mfcc_config",
    "clip_log_mel",
    "clip_mfcc",
]


@functools.lru_cache(maxsize=32)
def _buffers(config: SpectrogramConfig, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(window [win_length], mel filterbank [n_fft//2+1, n_mels]) on ``device``."""
    import torchaudio

    win = config.win_length or config.n_fft
    window = torch.hann_window(win, periodic=True, dtype=torch.float32)
    fbank = torchaudio.functional.melscale_fbanks(
        config.n_fft // 2 + 1,
        f_min=float(config.fmin),
        f_max=config.f_max,
        n_mels=config.n_mels,
        sample_rate=config.sr,
        norm=config.mel_norm,
        mel_scale=config.mel_scale,
    )
    return window.to(device), fbank.to(device=device, dtype=torch.float32).contiguous()


def _compress(mel: torch.Tensor, config: SpectrogramConfig) -> torch.Tensor:
    if config.float16:
        # musicnn stored its inputs as float16; clamp at float16's max (65504) instead of
        # letting a very loud bin become inf.
        mel = mel.clamp(max=65504.0).half().float()
    if config.log == "db":
        out = 10.0 * torch.log10(torch.clamp(mel, min=config.amin))
        if config.top_db is not None:
            peak = out.amax(dim=(-2, -1), keepdim=True)
            out = torch.maximum(out, peak - config.top_db)
        return out
    if config.log == "logeps":
        return torch.log10(mel + config.eps)
    if config.log == "log10p":
        return torch.log10(config.gain * mel + 1.0)
    return mel


def _log_mel(x: torch.Tensor, config: SpectrogramConfig, window: torch.Tensor, fbank: torch.Tensor) -> torch.Tensor:
    """[batch, n_samples] float32 → [batch, n_frames, n_mels]."""
    if config.center and config.pad_mode == "reflect" and x.shape[-1] <= config.n_fft // 2:
        raise DataError(
            f"audio of {x.shape[-1]} samples is too short for reflect padding with n_fft={config.n_fft}; "
            f"it needs more than {config.n_fft // 2} samples (pad the clip first)"
        )
    if not config.center and x.shape[-1] < config.n_fft:
        raise DataError(f"audio of {x.shape[-1]} samples is shorter than n_fft={config.n_fft} (center=False)")
    spec = torch.stft(
        x,
        config.n_fft,
        hop_length=config.hop_length,
        win_length=window.shape[0],
        window=window,
        center=config.center,
        pad_mode=config.pad_mode,
        return_complex=True,
    )  # [batch, n_freq, n_frames]
    if config.power == 2.0:
        power = spec.real.square() + spec.imag.square()  # exact |X|^2, no sqrt
    elif config.power == 1.0:
        power = spec.abs()
    else:
        power = spec.abs().pow(config.power)
    mel = torch.matmul(power.transpose(-1, -2), fbank)  # [batch, n_frames, n_mels]
    return _compress(mel, config)


def log_mel(
    waveform: np.ndarray | torch.Tensor,
    config: SpectrogramConfig | str,
    *,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Log-mel spectrogram of one clip or a batch of equal-length clips.

    Parameters
    ----------
    waveform : np.ndarray or torch.Tensor, shape [n_samples] or [batch, n_samples]
        Audio at ``config.sr``.
    config : SpectrogramConfig or str
        A config or a name in :data:`SPECTROGRAMS`.
    device : str or torch.device, optional
        Where to compute; default: the tensor's device (CPU for numpy input).

    Returns
    -------
    torch.Tensor, float32, shape [n_frames, n_mels] or [batch, n_frames, n_mels]
        On ``device``. ``n_frames = config.frames(n_samples)``. With ``log="db"`` and
        ``top_db`` the clipping is per clip, so a batch equals its clips one by one.
    """
    config = get_spectrogram(config)
    x = torch.as_tensor(waveform)
    if x.ndim not in (1, 2):
        raise ParameterError(f"waveform must be [n_samples] or [batch, n_samples]; got shape {tuple(x.shape)}")
    dev = torch.device(device) if device is not None else x.device
    x = x.to(device=dev, dtype=torch.float32)
    window, fbank = _buffers(config, str(dev))
    single = x.ndim == 1
    batch = x.unsqueeze(0) if single else x
    with torch.no_grad():
        if dev.type == "cpu" and batch.shape[0] > 1:
            # One clip at a time: a batched complex STFT falls out of the CPU caches (3-4x slower).
            out = torch.stack([_log_mel(clip[None], config, window, fbank)[0] for clip in batch])
        else:
            out = _log_mel(batch, config, window, fbank)
    return out[0] if single else out


class LogMel(nn.Module):
    """:func:`log_mel` as a module: window and mel filters are buffers (they follow ``.to()``).

    Parameters
    ----------
    config : SpectrogramConfig or str

    Shape
    -----
    ``[batch, n_samples]`` → ``[batch, n_frames, n_mels]`` (``[n_samples]`` → ``[n_frames, n_mels]``).
    """

    def __init__(self, config: SpectrogramConfig | str) -> None:
        super().__init__()
        self.config = get_spectrogram(config)
        window, fbank = _buffers(self.config, "cpu")
        self.register_buffer("window", window.clone(), persistent=False)
        self.register_buffer("fbank", fbank.clone(), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        single = waveform.ndim == 1
        x = waveform[None] if single else waveform
        out = _log_mel(x.to(self.window.dtype), self.config, self.window, self.fbank)
        return out[0] if single else out

    def extra_repr(self) -> str:
        return self.config.key()


# -- MFCC -----------------------------------------------------------------------------------

#: Length under which a clip is zero-padded before the MFCC (elmarc's "min length to have
#: 3-frame mfcc's"; Choi padded to 1024).
MFCC_MIN_SAMPLES = 2048


def mfcc_config(sr: int) -> SpectrogramConfig:
    """The spectrogram under :func:`mfcc_vector`: librosa's ``feature.mfcc`` defaults at ``sr``."""
    return SpectrogramConfig(
        sr=int(sr),
        n_fft=2048,
        hop_length=512,
        n_mels=128,
        log="db",
        amin=1e-10,
        top_db=80.0,
        pad_mode="reflect",
    )


@functools.lru_cache(maxsize=4)
def _dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Orthonormal DCT-II as a [n_mels, n_mfcc] matrix (scipy ``dct(type=2, norm='ortho')``)."""
    k = np.arange(n_mfcc)[None, :]
    n = np.arange(n_mels)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[:, 0] /= np.sqrt(2.0)
    return basis


def mfcc_vector(waveform: np.ndarray, sr: int, *, n_mfcc: int = 20) -> np.ndarray:
    """The 120-d MFCC baseline of the reference studies [4]_: statistics of MFCC, Δ and ΔΔ.

    20 MFCC (librosa ``feature.mfcc`` defaults: n_fft 2048, hop 512, 128 Slaney mels, dB with
    top_db 80, orthonormal DCT-II, c0 kept), Δ = first difference along time, ΔΔ = difference
    of Δ; the vector is ``[mean(MFCC), std(MFCC), mean(Δ), std(Δ), mean(ΔΔ), std(ΔΔ)]``
    (std with ddof 0), in that order.

    The whole clip is used. elmarc's default ``fix_length_by='crop'`` truncated the audio
    to 2048 samples (0.17 s) first, a bug (facts C-A8) that we do not copy. Clips shorter
    than 2048 samples are zero-padded to 2048 so that ΔΔ exists.

    Parameters
    ----------
    waveform : np.ndarray, float32, shape [n_samples]
    sr : int
    n_mfcc : int, default=20

    Returns
    -------
    np.ndarray, float32, shape [6 * n_mfcc] (120)
    """
    y = np.asarray(waveform, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"waveform must be [n_samples]; got shape {y.shape}")
    if y.shape[0] < MFCC_MIN_SAMPLES:
        y = fix_length(y, MFCC_MIN_SAMPLES, mode="zero") if y.size else y
    if y.size == 0:
        raise DataError("cannot compute MFCC of an empty waveform")
    config = mfcc_config(sr)
    db = log_mel(y, config).numpy().astype(np.float64)  # [n_frames, n_mels]
    mfcc = db @ _dct_matrix(config.n_mels, n_mfcc)  # [n_frames, n_mfcc]
    d1 = np.diff(mfcc, axis=0)
    d2 = np.diff(d1, axis=0)
    stats = [f(m, axis=0) for m in (mfcc, d1, d2) for f in (np.mean, np.std)]
    return np.concatenate(stats).astype(np.float32)


# -- per-clip, cached ----------------------------------------------------------------------

#: Version of the clip → log-mel / MFCC recipes; part of their cache keys.
FEATURE_RECIPE = 1


def clip_log_mel(
    dataset: Dataset,
    clip: Clip,
    config: SpectrogramConfig | str,
    *,
    cache: ArrayCache | None,
    seconds: float | None = None,
    frames: int | None = None,
    pad: str = "repeat",
) -> np.ndarray:
    """Log-mel of one clip of a dataset, read and cached (namespace ``logmel``).

    Parameters
    ----------
    dataset : Dataset
    clip : Clip
    config : SpectrogramConfig or str
    cache : ArrayCache or None
        The decoded audio is cached too (namespace ``audio``), so other settings at the same
        sample rate decode nothing.
    seconds : float, optional
        Fix the waveform to ``round(seconds * sr)`` samples before the STFT.
    frames : int, optional
        Fix the log-mel to this many frames after the log, as the reference code does
        (elmarc: 1376 frames; few-data: 128-frame patches).
    pad : {"repeat", "zero", "crop"}, default="repeat"
        How :func:`~fewshot.data.audio.fix_length` lengthens short clips.

    Returns
    -------
    np.ndarray, float32, shape [n_frames, n_mels]
    """
    config = get_spectrogram(config)
    n_samples = None
    if seconds is not None:
        if not seconds > 0:
            raise ParameterError(f"seconds must be > 0; got {seconds!r}")
        n_samples = int(round(seconds * config.sr))

    def compute() -> np.ndarray:
        y = read_clip(dataset, clip, sr=config.sr, cache=cache)
        if n_samples is not None:
            y = fix_length(y, n_samples, mode=pad)
        out = log_mel(y, config).numpy()
        if frames is not None:
            out = fix_length(out, frames, mode=pad, axis=0)
        return np.ascontiguousarray(out, dtype=np.float32)

    if cache is None:
        return compute()
    key = cache.key(
        "logmel",
        source=clip_identity(dataset, clip),
        config=config,
        n_samples=n_samples,
        frames=frames,
        pad=pad,
        recipe=FEATURE_RECIPE,
    )
    return cache.get_or_compute(key, compute, meta={"path": clip.path})


def clip_mfcc(dataset: Dataset, clip: Clip, *, cache: ArrayCache | None, sr: int = 12000) -> np.ndarray:
    """:func:`mfcc_vector` of one clip at ``sr`` (12 kHz as in the studies), cached (``features``)."""

    def compute() -> np.ndarray:
        return mfcc_vector(read_clip(dataset, clip, sr=sr, cache=cache), sr)

    if cache is None:
        return compute()
    key = cache.key("features", kind="mfcc120", source=clip_identity(dataset, clip), sr=int(sr), recipe=FEATURE_RECIPE)
    return cache.get_or_compute(key, compute, meta={"path": clip.path})
