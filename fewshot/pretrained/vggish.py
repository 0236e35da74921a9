"""VGGish (Hershey et al. 2017 [#]_) in PyTorch: architecture, input pipeline and an offline loader.

VGGish is the AudioSet embedding network used by the transfer-learning methods of the
few-data study [#]_. Nothing here downloads: the weights come from a **local file** in
the layout of the widely used PyTorch port (harritaylor/torchvggish, ``vggish-*.pth``),
given with ``--pretrained vggish=/path/vggish.pth`` or the ``FEWSHOT_VGGISH``
environment variable.

Input pipeline (``vggish_input.py`` / ``mel_features.py`` of the original), in numpy:

1. mono audio at 16 kHz, repeat-padded to at least 1 s (added by Pons et al.);
2. frames of 25 ms (400 samples) with hop 10 ms (160), **no** centring or padding,
   periodic Hann window, FFT 512, **magnitude** spectrum;
3. 64 mel bands from 125 to 7500 Hz on the HTK mel scale ``1127 ln(1 + f / 700)``
   (triangles built in the mel domain, DC bin zeroed), then ``log(mel + 0.01)``;
4. non-overlapping examples of 96 frames (0.96 s); a trailing part that does not
   fill an example is dropped.

Network (state-dict keys of torchvggish): ``features.{0,3,6,8,11,13}`` are 3×3 'same'
convs (64, 128, 256, 256, 512, 512 filters), each followed by ReLU, with 2×2 max-pools
after the 1st, 2nd, 4th and 6th; the (512, 6, 4) map is flattened in (time, mel,
channel) order (TensorFlow's NHWC) into ``embeddings.0`` (12288 → 4096), ReLU,
``embeddings.2`` (4096 → 4096), ReLU, ``embeddings.4`` (4096 → 128), ReLU. The
128-d output is the raw embedding the study used (no PCA, no quantisation). The
optional PCA parameters ``pproc._pca_matrix`` [128, 128] and ``pproc._pca_means``
[128, 1] are read and checked when present, and used only by
:meth:`VGGish.postprocess`.

References
----------
.. [#] S. Hershey et al., "CNN architectures for large-scale audio classification",
   ICASSP 2017. https://github.com/tensorflow/models/tree/master/research/audioset
.. [#] J. Pons, J. Serra and X. Serra, "Training neural audio classifiers with few
   data", ICASSP 2019.

Examples
--------
>>> import numpy as np
>>> from fewshot.pretrained.vggish import log_mel, make_examples
>>> log_mel(np.zeros(16000, dtype=np.float32)).shape
(98, 64)
>>> make_examples(log_mel(np.zeros(16000 * 3, dtype=np.float32))).shape
(3, 96, 64)
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..exceptions import DataError, ParameterError

__all__ = ["SR", "N_MELS", "N_FRAMES", "EMBEDDING_DIM", "ENV_VAR", "VGGish", "log_mel", "make_examples",
           "vggish_examples", "expected_shapes", "load_vggish", "vggish_path"]

SR = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
N_FFT = 512
N_MELS = 64
FMIN, FMAX = 125.0, 7500.0
LOG_OFFSET = 0.01
N_FRAMES = 96  # 0.96 s examples
EMBEDDING_DIM = 128
#: Environment variable naming the local torchvggish state-dict file.
ENV_VAR = "FEWSHOT_VGGISH"

_CONVS = ((0, 1, 64), (3, 64, 128), (6, 128, 256), (8, 256, 256), (11, 256, 512), (13, 512, 512))
_DENSE = ((0, 512 * 6 * 4, 4096), (2, 4096, 4096), (4, 4096, EMBEDDING_DIM))
_PCA = {"pproc._pca_matrix": (EMBEDDING_DIM, EMBEDDING_DIM), "pproc._pca_means": (EMBEDDING_DIM, 1)}


def _hz_to_mel_htk(f: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


@lru_cache(maxsize=1)
def mel_matrix() -> np.ndarray:
    """VGGish's mel weights ``[257, 64]`` (``mel_features.spectrogram_to_mel_matrix``), float64, read-only."""
    bins_mel = _hz_to_mel_htk(np.linspace(0.0, SR / 2, N_FFT // 2 + 1))
    edges = np.linspace(_hz_to_mel_htk(FMIN), _hz_to_mel_htk(FMAX), N_MELS + 2)
    weights = np.empty((N_FFT // 2 + 1, N_MELS))
    for i in range(N_MELS):
        lower, center, upper = edges[i:i + 3]
        lower_slope = (bins_mel - lower) / (center - lower)
        upper_slope = (upper - bins_mel) / (upper - center)
        weights[:, i] = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    weights[0, :] = 0.0
    weights.setflags(write=False)
    return weights


def log_mel(waveform: np.ndarray) -> np.ndarray:
    """VGGish log-mel of a 16 kHz mono waveform (repeat-padded to ≥ 1 s first).

    Parameters
    ----------
    waveform : np.ndarray [shape=(n_samples,)]

    Returns
    -------
    np.ndarray [shape=(1 + (max(n_samples, 16000) - 400) // 160, 64)], float32
    """
    y = np.asarray(waveform, dtype=np.float64)
    if y.ndim != 1 or y.size == 0:
        raise ParameterError(f"waveform must be a non-empty 1-D (mono) array; got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ParameterError("waveform must be finite everywhere; it holds NaN or inf")
    if y.size < SR:
        y = np.tile(y, -(-SR // y.size))[:SR]
    n_frames = 1 + (y.size - WINDOW) // HOP
    frames = np.lib.stride_tricks.as_strided(y, shape=(n_frames, WINDOW), strides=(HOP * y.strides[0], y.strides[0]),
                                             writeable=False)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)  # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * window, n=N_FFT, axis=1))
    return np.log(magnitude @ mel_matrix() + LOG_OFFSET).astype(np.float32)


def make_examples(logmel: np.ndarray) -> np.ndarray:
    """Non-overlapping 96-frame examples ``[n_examples, 96, 64]`` of a log-mel (at least one: short inputs tile)."""
    x = np.asarray(logmel, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ParameterError(f"logmel must be 2-D (frames, mels) and non-empty; got shape {x.shape}")
    if x.shape[0] < N_FRAMES:
        x = np.tile(x, (-(-N_FRAMES // x.shape[0]), 1))[:N_FRAMES]
    n = 1 + (x.shape[0] - N_FRAMES) // N_FRAMES
    return np.stack([x[i * N_FRAMES:(i + 1) * N_FRAMES] for i in range(n)])


def vggish_examples(waveform: np.ndarray) -> np.ndarray:
    """``make_examples(log_mel(waveform))``: the network's input for one 16 kHz clip."""
    return make_examples(log_mel(waveform))


class VGGish(nn.Module):
    """The VGGish network with torchvggish's module names (``features.*``, ``embeddings.*``).

    ``forward(x)`` maps examples ``[batch, 96, 64]`` (or ``[batch, 1, 96, 64]``) to the
    raw 128-d embedding ``[batch, 128]`` (after the last ReLU, as the study used it).
    """

    embedding_dim = EMBEDDING_DIM
    n_frames = N_FRAMES
    n_mels = N_MELS
    sr = SR

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 1
        for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIM), nn.ReLU(inplace=True),
        )
        self.register_buffer("pca_matrix", None, persistent=False)
        self.register_buffer("pca_means", None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        h = self.features(x)  # (B, 512, 6, 4)
        h = h.permute(0, 2, 3, 1).flatten(1)  # NHWC order, as TensorFlow flattened it
        return self.embeddings(h)

    def postprocess(self, embedding: torch.Tensor) -> torch.Tensor:
        """PCA-whitened, 8-bit-quantised embeddings (AudioSet release format), as floats in [0, 255]."""
        if self.pca_matrix is None:
            raise ParameterError("this VGGish state-dict holds no PCA parameters (pproc._pca_matrix/_pca_means)")
        pca = (embedding - self.pca_means.reshape(1, -1)) @ self.pca_matrix.T
        return torch.round((pca.clamp(-2.0, 2.0) + 2.0) * (255.0 / 4.0))


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Required state-dict keys and shapes (torchvggish layout); PCA keys are optional (see ``_PCA``)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, cin, cout in _CONVS:
        shapes[f"features.{i}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{i}.bias"] = (cout,)
    for i, fin, fout in _DENSE:
        shapes[f"embeddings.{i}.weight"] = (fout, fin)
        shapes[f"embeddings.{i}.bias"] = (fout,)
    return shapes


def _normalise_keys(state: dict) -> dict:
    """Accept the PCA parameters with or without the ``pproc.`` prefix and a ``module.`` (DataParallel) prefix."""
    out = {}
    for k, v in state.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k in ("_pca_matrix", "_pca_means"):
            k = f"pproc.{k}"
        out[k] = v
    return out


def vggish_path(path: str | os.PathLike | None = None) -> Path:
    """The VGGish file: ``path`` if given, else ``$FEWSHOT_VGGISH``; raises when neither names a file."""
    chosen = path if path is not None else os.environ.get(ENV_VAR)
    if not chosen:
        raise DataError(
            "VGGish needs a local torchvggish state-dict (e.g. vggish-10086976.pth); nothing is downloaded. "
            f"Give it with --pretrained vggish=/path/vggish.pth or the {ENV_VAR} environment variable"
        )
    p = Path(chosen).expanduser()
    if not p.is_file():
        raise DataError(f"VGGish weights: no such file {str(p)!r} (from --pretrained vggish=... or ${ENV_VAR})")
    return p


def load_vggish(path: str | os.PathLike | None = None) -> VGGish:
    """Build :class:`VGGish` from a local torchvggish state-dict file, in eval mode.

    Parameters
    ----------
    path : path, optional
        A ``.pth`` holding a dict of tensors (``torch.load(weights_only=True)``; no
        pickled code runs). Default: ``$FEWSHOT_VGGISH``.

    Raises
    ------
    DataError
        No file, not a state-dict, or keys/shapes that do not match the layout (the
        message names the missing, unexpected and mis-shaped keys).
    """
    p = vggish_path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's input error
        raise DataError(
            f"VGGish weights {str(p)!r}: not a readable tensor state-dict ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"VGGish weights {str(p)!r}: expected a dict of tensors (a torchvggish state_dict)")
    state = _normalise_keys(state)
    want = expected_shapes()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want) - set(_PCA))
    shapes = {**want, **_PCA}
    wrong = sorted(f"{k} {tuple(state[k].shape)} (expected {shapes[k]})" for k in state
                   if k in shapes and tuple(state[k].shape) != shapes[k])
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected[:10])}" + (" ..." if len(unexpected) > 10 else ""))
        if wrong:
            parts.append(f"wrong shapes: {', '.join(wrong)}")
        raise DataError(
            f"VGGish weights {str(p)!r} do not match the torchvggish layout "
            f"(features.0.weight ... embeddings.4.bias): {'; '.join(parts)}"
        )
    model = VGGish()
    model.load_state_dict({k: state[k].float() for k in want})
    if all(k in state for k in _PCA):
        model.pca_matrix = state["pproc._pca_matrix"].float()
        model.pca_means = state["pproc._pca_means"].float()
    model.file_sha256 = _sha256(p)
    return model.eval()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]

