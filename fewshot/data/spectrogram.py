"""Log-mel spectrograms and the 120-d MFCC vector, with the reference studies' settings.

:func:`log_mel` is ``torch.stft`` → power → a Slaney mel matrix
(:func:`torchaudio.functional.melscale_fbanks`, the same filters as librosa's
``filters.mel``) → log compression, on any device. On CPU one clip at a time is the fast
path (a batch is processed clip by clip there; perf baselines §1: ~2.5-4x librosa).
Output layout is (time, frequency), as in the reference code: ``[..., n_frames, n_mels]``.

Named settings live in :data:`SPECTROGRAMS`:

``elmarc``
    Random-CNN study [1]_: 12 kHz, n_fft 512, hop 256, 96 mels up to 6 kHz, power
    spectrogram, ``10 log10(max(S, 1e-10))`` (ref 1) clipped to 80 dB below the clip's max.
``fewdata``
    Few-data study [2]_: 44.1 kHz, n_fft = hop = 1024 (no overlap), 128 mels up to
    22.05 kHz, ``log10(S + 2.2e-16)`` ("logEPS").
``musicnn``
    musicnn [3]_: 16 kHz, n_fft 512, hop 256, 96 mels up to 8 kHz, powers rounded to
    float16 (clamped at 65504), then ``log10(10000 x + 1)`` in float32 (never in float16,
    which overflows under numpy 2: see ``shared/reference/musicnn-port.md``).

All three use centred frames with **reflect** padding, the default of the librosa versions
those models were built with (0.6-0.8); librosa >= 0.9 pads with zeros. It changes only the
first and last frame.

References
----------
.. [1] J. Pons and X. Serra, "Randomly weighted CNNs for (music) audio classification",
   ICASSP 2019.
.. [2] J. Pons, J. Serrà and X. Serra, "Training neural audio classifiers with few data",
   ICASSP 2019.
.. [3] J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for music
   audio tagging", ISMIR LBD 2019.
.. [4] K. Choi, G. Fazekas, M. Sandler and K. Cho, "Transfer learning for music
   classification and regression tasks", ISMIR 2017 (the MFCC baseline).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..exceptions import DataError, ParameterError
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

_LOGS = ("db", "logeps", "log10p", "none")
_PAD_MODES = ("constant", "reflect")


@dataclass(frozen=True)
class SpectrogramConfig:
    """Every setting of a log-mel spectrogram.

    Parameters
    ----------
    sr : int
        Sample rate the audio is resampled to.
    n_fft, hop_length : int
    n_mels : int
    fmin : float, default=0.0
    fmax : float, optional
        Upper edge of the mel filters; None means ``sr / 2``.
    power : float, default=2.0
        Exponent of the magnitude (2: power spectrogram).
    log : {"db", "logeps", "log10p", "none"}, default="db"
        ``db``: ``10 log10(max(S, amin))`` (ref 1), clipped at ``top_db`` below each clip's max;
        ``logeps``: ``log10(S + eps)``; ``log10p``: ``log10(gain * S + 1)``; ``none``: ``S``.
    top_db : float, optional, default=80.0
        Only for ``db``; None disables the clipping.
    center : bool, default=True
        Frames centred on ``t * hop_length`` (the signal is padded by ``n_fft // 2``).
    pad_mode : {"constant", "reflect"}, default="constant"
    mel_norm : {"slaney", None}, default="slaney"
        Area normalisation of the triangles (librosa ``norm='slaney'``).
    mel_scale : {"slaney", "htk"}, default="slaney"
    win_length : int, optional
        Hann window length (periodic), centred in ``n_fft``; None means ``n_fft``.
    amin : float, default=1e-10
        Floor of ``db``.
    eps : float, default=2.2e-16
        Offset of ``logeps``.
    gain : float, default=10000.0
        Multiplier of ``log10p``.
    float16 : bool, default=False
        Round mel powers to float16 before the log (musicnn's input pipeline).
    """

    sr: int
    n_fft: int
    hop_length: int
    n_mels: int
    fmin: float = 0.0
    fmax: float | None = None
    power: float = 2.0
    log: str = "db"
    top_db: float | None = 80.0
    center: bool = True
    pad_mode: str = "constant"
    mel_norm: str | None = "slaney"
    mel_scale: str = "slaney"
    win_length: int | None = None
    amin: float = 1e-10
    eps: float = 2.2e-16
    gain: float = 10000.0
    float16: bool = False

    def __post_init__(self) -> None:
        for name in ("sr", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ParameterError(f"spectrogram {name} must be a positive int; got {value!r}")
        win = self.n_fft if self.win_length is None else self.win_length
        if not isinstance(win, (int, np.integer)) or not 0 < win <= self.n_fft:
            raise ParameterError(f"spectrogram win_length must be in [1, n_fft={self.n_fft}]; got {win!r}")
        if self.log not in _LOGS:
            raise ParameterError(f"spectrogram log must be one of {', '.join(_LOGS)}; got {self.log!r}")
        if self.pad_mode not in _PAD_MODES:
            raise ParameterError(f"spectrogram pad_mode must be one of {', '.join(_PAD_MODES)}; got {self.pad_mode!r}")
        if self.mel_norm not in ("slaney", None):
            raise ParameterError(f"spectrogram mel_norm must be 'slaney' or None; got {self.mel_norm!r}")
        if self.mel_scale not in ("slaney", "htk"):
            raise ParameterError(f"spectrogram mel_scale must be 'slaney' or 'htk'; got {self.mel_scale!r}")
        if not self.power > 0:
            raise ParameterError(f"spectrogram power must be > 0; got {self.power!r}")
        if not 0 <= self.fmin < self.f_max <= self.sr / 2:
            raise ParameterError(
                f"spectrogram needs 0 <= fmin < fmax <= sr/2 = {self.sr / 2:g}; got fmin={self.fmin!r}, "
                f"fmax={self.fmax!r}"
            )
        if self.top_db is not None and not self.top_db >= 0:
            raise ParameterError(f"spectrogram top_db must be >= 0 or None; got {self.top_db!r}")
        if not (self.amin > 0 and self.eps > 0 and self.gain > 0):
            raise ParameterError("spectrogram amin, eps and gain must be > 0")

    @property
    def f_max(self) -> float:
        """``fmax``, or ``sr / 2`` when None."""
        return float(self.sr) / 2 if self.fmax is None else float(self.fmax)

    def key(self) -> str:
        """Stable one-line text of every setting, for cache keys and run configs."""
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self))
        return f"SpectrogramConfig({fields})"

    def frames(self, n_samples: int) -> int:
        """Number of frames :func:`log_mel` gives for ``n_samples`` samples."""
        if self.center:
            return 1 + int(n_samples) // self.hop_length
        return max(0, 1 + (int(n_samples) - self.n_fft) // self.hop_length)

    def replace(self, **changes) -> SpectrogramConfig:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)


#: The reference studies' spectrogram settings, by name (see the module docstring).
SPECTROGRAMS: dict[str, SpectrogramConfig] = {
    "elmarc": SpectrogramConfig(
        sr=12000,
        n_fft=512,
        hop_length=256,
        n_mels=96,
        fmin=0.0,
        fmax=6000.0,
        log="db",
        amin=1e-10,
        top_db=80.0,
        pad_mode="reflect",
    ),
    "fewdata": SpectrogramConfig(
        sr=44100,
        n_fft=1024,
        hop_length=1024,
        n_mels=128,
        log="logeps",
        eps=2.2e-16,
        top_db=None,
        pad_mode="reflect",
    ),
    "musicnn": SpectrogramConfig(
        sr=16000,
        n_fft=512,
        hop_length=256,
        n_mels=96,
        fmax=8000.0,
        log="log10p",
        gain=10000.0,
        float16=True,
        top_db=None,
        pad_mode="reflect",
    ),
}


def get_spectrogram(name: str | SpectrogramConfig) -> SpectrogramConfig:
    """A named config from :data:`SPECTROGRAMS` (a config passes through)."""
    if isinstance(name, SpectrogramConfig):
        return name
    try:
        return SPECTROGRAMS[name]
    except (KeyError, TypeError):
        raise ParameterError(f"unknown spectrogram {name!r}; available: {', '.join(sorted(SPECTROGRAMS))}") from None


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
