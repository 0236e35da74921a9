"""Spectrogram settings: :class:`SpectrogramConfig` and the reference studies' named configs.

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
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..exceptions import ParameterError

__all__ = ["SpectrogramConfig", "SPECTROGRAMS", "get_spectrogram"]

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
