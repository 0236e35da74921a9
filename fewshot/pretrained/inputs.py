"""The musicnn input pipeline, reproduced exactly in numpy: waveform → log-mel → patches.

musicnn [#]_ computes its input with librosa [#]_ and then quantises it:

1. STFT of the 16 kHz mono waveform: ``n_fft=512``, ``hop_length=256``, periodic Hann
   window, centred frames (the signal is padded by 256 samples at both ends, so
   ``n_frames = 1 + n_samples // 256``), power spectrum ``|X|**2``;
2. 96 mel bands from 0 to 8000 Hz on the Slaney mel scale with Slaney area
   normalisation (librosa's ``filters.mel`` defaults), float32, laid out as
   ``(n_frames, 96)``;
3. a cast to **float16** (the training data was stored so), then
   ``log10(10000 * x + 1)`` computed in float32. Under numpy 1 the product of a
   float16 array and the Python int 10000 promoted to float32; under numpy 2 it would
   stay float16 and overflow to inf once ``x > 6.55``, so we convert first;
4. non-overlapping patches of 187 frames (3 s); trailing frames that do not fill a
   patch are dropped.

The edge padding of step 1 depends on the librosa version that musicnn runs with:
``"reflect"`` up to librosa 0.8 (the training-time features, our default) and zeros
(``"constant"``) from librosa 0.9 on, which is what ``musicnn`` 0.1.0 does today.
Only the first and the last frame differ.

References
----------
.. [#] J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for
   music audio tagging", ISMIR 2019 Late-Breaking/Demo.
.. [#] B. McFee et al., "librosa: audio and music signal analysis in Python", SciPy 2015.

Examples
--------
>>> import numpy as np
>>> from fewshot.pretrained.inputs import log_mel, make_patches
>>> waveform = np.zeros(16000 * 10, dtype=np.float32)
>>> log_mel(waveform).shape
(626, 96)
>>> make_patches(log_mel(waveform)).shape
(3, 187, 96)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import get_window

from ..exceptions import ParameterError

__all__ = [
    "SR",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "N_FRAMES",
    "PADDINGS",
    "SHORT_MODES",
    "mel_filterbank",
    "mel_power",
    "log_compress",
    "log_mel",
    "make_patches",
]

SR = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
FMAX = 8000.0
#: Patch length in frames: librosa.time_to_frames(3 s) + 1.
N_FRAMES = 187
#: Edge padding of the centred STFT: "reflect" (librosa ≤ 0.8, training) or "constant" (zeros, librosa ≥ 0.9).
PADDINGS = ("reflect", "constant")
#: What to do with audio shorter than one patch: repeat its frames (as in training) or raise.
SHORT_MODES = ("repeat", "error")


def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above."""
    freqs = np.asarray(freqs, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    mels = freqs / f_sp
    log_t = freqs >= min_log_hz
    mels[log_t] = min_log_mel + np.log(freqs[log_t] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    freqs = f_sp * mels
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


@lru_cache(maxsize=4)
def mel_filterbank(*, sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS, fmax: float = FMAX) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular mel filterbank, as ``librosa.filters.mel``.

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2)], float32 (read-only)
    """
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([fmax]))[0], n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=np.float32)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, np.newaxis]
    weights.setflags(write=False)
    return weights


def _check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise ParameterError(f"padding must be one of {', '.join(PADDINGS)}; got {padding!r}")


def mel_power(waveform: np.ndarray, *, padding: str = "reflect") -> np.ndarray:
    """Mel power spectrogram of a 16 kHz waveform, float32, as librosa's ``melspectrogram``.

    Parameters
    ----------
    waveform : np.ndarray [shape=(n_samples,)]
        Mono audio at 16 kHz, more than 256 samples.
    padding : {"reflect", "constant"}, default="reflect"
        Edge padding of the centred STFT (see the module docstring).

    Returns
    -------
    np.ndarray [shape=(1 + n_samples // 256, 96)], float32
    """
    _check_padding(padding)
    y = np.asarray(waveform, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"waveform must be 1-D (mono); got shape {y.shape}")
    if y.size <= N_FFT // 2:
        raise ParameterError(f"waveform must have more than {N_FFT // 2} samples; got {y.size}")
    if not np.all(np.isfinite(y)):
        raise ParameterError("waveform must be finite everywhere; it holds NaN or inf")
    y = np.pad(y, N_FFT // 2, mode=padding)
    n_frames = 1 + (y.size - N_FFT) // HOP_LENGTH
    frames = np.lib.stride_tricks.as_strided(
        y, shape=(n_frames, N_FFT), strides=(HOP_LENGTH * y.strides[0], y.strides[0]), writeable=False
    )
    window = get_window("hann", N_FFT, fftbins=True)  # periodic Hann, float64, as librosa
    # librosa: float64 FFT of the windowed frames, stored as complex64, then |.|**2 in float32
    spectrum = np.fft.rfft(window * frames, axis=1).astype(np.complex64)
    power = np.abs(spectrum) ** 2
    return np.dot(mel_filterbank(), power.T).T  # float32 (n_frames, 96)


def log_compress(mel: np.ndarray) -> np.ndarray:
    """musicnn's quantised log compression: ``log10(10000 * float16(mel) + 1)`` in float32.

    The float16 rounding is kept (the models were trained on float16 features); the
    float32 conversion before the multiplication reproduces numpy 1's promotion and
    avoids numpy 2's float16 overflow to inf.
    """
    x = np.asarray(mel).astype(np.float16).astype(np.float32)
    return np.log10(np.float32(10000) * x + np.float32(1))


def log_mel(waveform: np.ndarray, *, padding: str = "reflect") -> np.ndarray:
    """musicnn's input representation of a 16 kHz waveform.

    Parameters
    ----------
    waveform : np.ndarray [shape=(n_samples,)]
        Mono audio at 16 kHz.
    padding : {"reflect", "constant"}, default="reflect"
        Edge padding of the centred STFT.

    Returns
    -------
    np.ndarray [shape=(1 + n_samples // 256, 96)], float32
    """
    return log_compress(mel_power(waveform, padding=padding))


def make_patches(
    logmel: np.ndarray, *, n_frames: int = N_FRAMES, hop: int | None = None, short: str = "repeat"
) -> np.ndarray:
    """Cut a log-mel into patches as musicnn does (starts ``range(0, T - n_frames + 1, hop)``).

    Parameters
    ----------
    logmel : np.ndarray [shape=(T, n_mels)]
    n_frames : int, default=187
        Patch length (187 frames = 3 s; the vgg models accept only 187).
    hop : int or None, default=None
        Frames between patch starts; ``None`` means ``n_frames`` (musicnn's
        ``input_overlap=False``).
    short : {"repeat", "error"}, default="repeat"
        For ``T < n_frames``: repeat the frames until one patch is filled (the
        training-time "repeat-pad"; musicnn itself crashes), or raise.

    Returns
    -------
    np.ndarray [shape=(n_patches, n_frames, n_mels)], float32
    """
    logmel = np.asarray(logmel, dtype=np.float32)
    if logmel.ndim != 2:
        raise ParameterError(f"logmel must be 2-D (frames, mels); got shape {logmel.shape}")
    if short not in SHORT_MODES:
        raise ParameterError(f"short must be one of {', '.join(SHORT_MODES)}; got {short!r}")
    hop = n_frames if hop is None else hop
    if n_frames < 1 or hop < 1:
        raise ParameterError(f"n_frames and hop must be positive ints; got n_frames={n_frames}, hop={hop}")
    n_total = logmel.shape[0]
    if n_total < n_frames:
        if short == "error" or n_total == 0:
            raise ParameterError(
                f"audio gives {n_total} frames, fewer than one patch of {n_frames} "
                f"(about {n_frames * HOP_LENGTH / SR:.2f} s at 16 kHz)"
            )
        logmel = np.concatenate([logmel] * -(-n_frames // n_total), axis=0)[:n_frames]
        n_total = n_frames
    starts = range(0, n_total - n_frames + 1, hop)
    return np.stack([logmel[s : s + n_frames] for s in starts]).astype(np.float32, copy=False)
