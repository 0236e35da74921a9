"""The front-end contract shared by the random-weight CNNs, the MFCC baseline and user front-ends.

A front-end maps a batch of inputs to a list of feature maps; its feature vector
is the mean of every map per channel (``[batch, channels, ...]`` → ``[batch,
channels]``), concatenated over the listed layers.

Inputs (``Frontend.input``):

- ``"waveform"``: ``float32 [batch, n_samples]`` mono audio at ``Frontend.sr``;
- ``"logmel"``: ``float32 [batch, 1, n_frames, n_mels]`` (time × frequency) in the
  named spectrogram configuration ``Frontend.spectrogram`` (``"elmarc"``: 12 kHz,
  n_fft 512, hop 256, 96 mel bands up to 6 kHz, dB clipped 80 dB below the peak);
- ``"mfcc"``: waveforms at ``Frontend.sr``, turned into a fixed vector per clip
  (not a network).

Inputs shorter than ``min_length`` (samples or frames) are repeat-padded (tiled,
then cut), as the reference code did [1]_.

References
----------
.. [1] J. Pons and X. Serra, "Randomly weighted CNNs for (music) audio
   classification", ICASSP 2019. Code: github.com/jordipons/elmarc.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .._registry import Registry
from ..exceptions import FewShotError, ParameterError

__all__ = [
    "FRONTENDS",
    "CODE_VERSION",
    "ELMARC_LOGMEL",
    "REFERENCE_SECONDS",
    "Frontend",
    "he_normal_",
    "frozen_conv",
    "repeat_pad",
    "map_means",
]

#: The registry of front-ends (names → classes).
FRONTENDS = Registry("front-end")

#: Version of the front-end definitions; part of every identity (cache key). Bump on any change
#: that alters features.
CODE_VERSION = "1"

#: The reference log-mel settings (elmarc ``config_file.py``), named ``"elmarc"`` in
#: :data:`fewshot.data.spectrogram.SPECTROGRAMS`.
ELMARC_LOGMEL = {
    "sr": 12000, "n_fft": 512, "hop_length": 256, "n_mels": 96, "fmin": 0.0, "fmax": 6000.0, "top_db": 80.0,
}

#: The reference clip length: 350,000 samples at 12 kHz (≈ 29.17 s; 1,368 centred frames).
REFERENCE_SECONDS = 350_000 / 12_000

_INPUTS = ("waveform", "logmel", "mfcc")


def he_normal_(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Fill a conv kernel like TF-contrib ``variance_scaling_initializer()`` (He normal, fan-in).

    A normal with σ₀ = sqrt(1.3 · 2 / fan_in) truncated at ±2σ₀ (values outside
    are redrawn, as TF's ``truncated_normal`` does), whose standard deviation is
    ≈ sqrt(2 / fan_in).

    Parameters
    ----------
    weight : Tensor [shape=(out_channels, in_channels, *kernel)]
        Filled in place; fan_in = in_channels · prod(kernel).
    generator : torch.Generator
        The local generator the front-end's weights are drawn from.
    """
    fan_in = weight[0].numel()
    std0 = math.sqrt(1.3 * 2.0 / fan_in)
    with torch.no_grad():
        w = torch.empty(weight.numel(), dtype=torch.float32).normal_(generator=generator)
        bad = (w.abs() > 2.0).nonzero().squeeze(1)
        while bad.numel():
            w[bad] = torch.empty(bad.numel()).normal_(generator=generator)
            bad = bad[w[bad].abs() > 2.0]
        weight.copy_(w.mul_(std0).view_as(weight))
    return weight


def frozen_conv(cls: type[nn.Module], *args: object, generator: torch.Generator, **kwargs: object) -> nn.Module:
    """A conv layer (``nn.Conv1d`` / ``nn.Conv2d``) with He-normal weights, zero biases and no gradients.

    Built on the meta device first, so PyTorch's default initialisation (and the
    global RNG) is never touched.
    """
    conv = cls(*args, device="meta", **kwargs).to_empty(device="cpu")
    he_normal_(conv.weight, generator)
    with torch.no_grad():
        conv.bias.zero_()
    return conv.requires_grad_(False)


def repeat_pad(x: np.ndarray | torch.Tensor, length: int, *, axis: int = 0):
    """Tile ``x`` along ``axis`` until it has ``length`` entries, then cut (the reference 'repeat-pad').

    Parameters
    ----------
    x : np.ndarray or Tensor
        A clip (``[n_samples]``, ``[n_frames, n_mels]``) or a batch.
    length : int
        Target length; inputs already at least that long are returned unchanged.
    axis : int, default=0
        Time axis.
    """
    n = x.shape[axis]
    if n >= length:
        return x
    if n == 0:
        raise ParameterError("cannot repeat-pad an empty input (0 samples/frames)")
    reps = -(-length // n)
    if isinstance(x, torch.Tensor):
        dims = [1] * x.dim()
        dims[axis] = reps
        return x.repeat(*dims).narrow(axis, 0, length)
    tiles = [1] * x.ndim
    tiles[axis] = reps
    return np.take(np.tile(x, tiles), np.arange(length), axis=axis)


def map_means(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-channel means of feature maps ``[batch, channels, ...]``, concatenated → ``[batch, Σ channels]``."""
    return torch.cat([m if m.dim() == 2 else m.flatten(2).mean(-1) for m in maps], dim=1)


def resolve_filters(name: str, width: str, filters: int | None, widths: dict[str, int]) -> tuple[str, int]:
    """(width label, filter count) from ``width`` ∈ {small, large, f<F>} and an optional ``filters``."""
    if filters is not None:
        if isinstance(filters, bool) or not isinstance(filters, int | np.integer) or filters < 1:
            raise ParameterError(f"front-end {name!r}: filters must be a positive int; got {filters!r}")
        return f"f{int(filters)}", int(filters)
    if isinstance(width, str) and width.startswith("f") and width[1:].isdigit() and int(width[1:]) > 0:
        return width, int(width[1:])
    if width not in widths:
        raise ParameterError(
            f"front-end {name!r}: width must be one of {', '.join(widths)} or f<filters>; got {width!r}"
        )
    return width, widths[width]


class Frontend(nn.Module):
    """Base class: a frozen module mapping a batch of inputs to feature maps.

    Subclasses set the attributes below in ``__init__`` and implement
    ``_maps(x, plain)``. ``forward(x)`` runs the optimized formulation,
    ``forward(x, plain=True)`` the plain definition (same features within float
    tolerance; tested).

    Attributes
    ----------
    name : str
        Registered name (or the user spec).
    width : str or None
        ``"small"``, ``"large"``, ``"f<F>"``; None for fixed front-ends.
    filters : int or None
        The filter count F the architecture is built with.
    seed : int
        Seed of the local ``torch.Generator`` the weights were drawn from.
    input : "waveform", "logmel" or "mfcc"
    sr : int
        Sample rate of the audio (of the audio behind the log-mel).
    spectrogram : str or None
        Name of the log-mel configuration (``"elmarc"``) for ``input="logmel"``.
    seconds : float or None
        Clips are cut / repeat-padded to this length by :meth:`prepare`; None keeps each clip's length.
    min_length : int
        Fewest samples (waveform) or frames (log-mel) the network needs; shorter inputs are repeat-padded.
    layer_sizes : dict of str to int
        Channels of each feature layer, in order.
    """

    input: str = "waveform"
    sr: int = 12000
    spectrogram: str | None = None
    n_mels: int | None = None
    random: bool = True
    #: Whether clips may run through this front-end from several threads at once (the built-in CNNs: no
    #: state changes in ``forward`` beyond idempotent caches); see :mod:`fewshot.frontends.parallel`.
    thread_safe: bool = False

    def __init__(self, *, name: str, width: str | None, filters: int | None, seed: int, input: str,
                 sr: int, min_length: int, layer_sizes: dict[str, int], seconds: float | None = None,
                 spectrogram: str | None = None, n_mels: int | None = None) -> None:
        super().__init__()
        if input not in _INPUTS:
            raise ParameterError(f"front-end {name!r}: input must be one of {', '.join(_INPUTS)}; got {input!r}")
        if seconds is not None and not seconds > 0:
            raise ParameterError(f"front-end {name!r}: seconds must be positive or None; got {seconds!r}")
        self.name, self.width, self.filters, self.seed = name, width, filters, int(seed)
        self.input, self.sr, self.min_length = input, int(sr), int(min_length)
        self.spectrogram, self.n_mels, self.seconds = spectrogram, n_mels, seconds
        self._layer_sizes = dict(layer_sizes)

    # ------------------------------------------------------------------ description
    @property
    def layer_sizes(self) -> dict[str, int]:
        """Channels of each feature layer, in order."""
        return self._layer_sizes

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """Names of the feature layers, in order (choose a subset with ``layers=``)."""
        return tuple(self.layer_sizes)

    @property
    def n_features(self) -> int:
        """Length of the feature vector (all layers)."""
        return sum(self.layer_sizes.values())

    def n_features_of(self, layers: Sequence[str] | None) -> int:
        """Length of the feature vector over ``layers`` (None = all)."""
        return sum(self.layer_sizes[n] for n in self._layer_names(layers))

    @property
    def length(self) -> int | None:
        """Target input length in samples or frames (from ``seconds``), or None."""
        if self.seconds is None:
            return None
        n_samples = int(round(self.seconds * self.sr))
        if self.input == "logmel":
            return 1 + n_samples // ELMARC_LOGMEL["hop_length"]
        return n_samples

    @property
    def identity(self) -> str:
        """A stable string naming these features: the cache key of a front-end."""
        parts = [
            self.name, f"width={self.width}", f"filters={self.filters}",
            f"seed={self.seed if self.random else '-'}", f"input={self.input}", f"sr={self.sr}",
            f"spectrogram={self.spectrogram}", f"seconds={self.seconds}", f"min_length={self.min_length}",
            f"code=frontends-v{CODE_VERSION}",
        ]
        return "|".join(parts)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, width={self.width!r}, filters={self.filters}, n_features={self.n_features}"

    def default_batch_size(self, device: str | torch.device) -> int:
        """Clips per forward pass: 1 on CPU (batching never paid there), more on CUDA."""
        if torch.device(device).type != "cuda":
            return 1
        big = (self.filters or 0) > 200
        return 4 if big else 16

    # ------------------------------------------------------------------ computation
    def prepare(self, x: np.ndarray) -> np.ndarray:
        """One clip, cut to ``seconds`` (if set) and repeat-padded to the length the network needs.

        Parameters
        ----------
        x : np.ndarray [shape=(n_samples,) or (n_frames, n_mels)]
        """
        target = self.length
        if target is not None:
            x = repeat_pad(x[:target], target)
        return repeat_pad(x, self.min_length)

    def forward(self, x: torch.Tensor, *, plain: bool = False) -> list[torch.Tensor]:
        """Feature maps ``[batch, channels, ...]`` of a batch (short inputs are repeat-padded).

        An optimized formulation may return a map already reduced to its channel means,
        ``[batch, channels]`` (the temporal branches' GEMM formulation does, so that their long maps
        are never written out); :func:`map_means` takes such a map as it is. ``plain=True`` always
        returns the whole maps.

        Parameters
        ----------
        x : Tensor [shape=(batch, n_samples) or (batch, 1, n_frames, n_mels)]
        plain : bool, default=False
            Run the plain definition instead of the optimized formulation.
        """
        x = self._check_input(x)
        gemm = getattr(self, "gemm", None)  # None: where faster; True: always; False: never (see _fast.py)
        if not plain and gemm is not False:
            from ._fast import fast_maps

            maps = fast_maps(self, x, getattr(self, "precision", "float32"), force=bool(gemm))
            if maps is not None:
                return maps
        return self._maps(x, plain)

    def features(self, x: torch.Tensor, *, layers: Sequence[str] | None = None,
                 plain: bool = False) -> torch.Tensor:
        """Feature vectors ``[batch, n_features]``: per-channel means of the listed maps."""
        maps = self.forward(x, plain=plain)
        names = self._layer_names(layers)
        chosen = [m for n, m in zip(self.feature_layers, maps, strict=True) if n in names]
        return map_means(chosen)

    def _layer_names(self, layers: Sequence[str] | None) -> list[str]:
        if layers is None:
            return list(self.feature_layers)
        if isinstance(layers, str):
            layers = [layers]
        bad = [n for n in layers if n not in self.layer_sizes]
        if bad or not layers:
            raise ParameterError(
                f"front-end {self.name!r}: unknown layer(s) {', '.join(map(repr, bad)) or '(none given)'}; "
                f"available: {', '.join(self.feature_layers)}"
            )
        return [n for n in self.feature_layers if n in layers]

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ParameterError(f"front-end {self.name!r}: input must be a torch.Tensor; got {type(x).__name__}")
        if self.input == "logmel":
            if x.dim() == 3:
                x = x.unsqueeze(1)
            if x.dim() != 4 or x.shape[1] != 1 or (self.n_mels is not None and x.shape[3] != self.n_mels):
                raise ParameterError(
                    f"front-end {self.name!r}: input must be log-mels [batch, 1, n_frames, {self.n_mels}]; "
                    f"got shape {tuple(x.shape)}"
                )
            return repeat_pad(x, self.min_length, axis=2)
        if x.dim() == 1:
            x = x.unsqueeze(0)
        if x.dim() != 2:
            raise ParameterError(
                f"front-end {self.name!r}: input must be waveforms [batch, n_samples]; got shape {tuple(x.shape)}"
            )
        return repeat_pad(x, self.min_length, axis=1)

    def _maps(self, x: torch.Tensor, plain: bool) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def check_maps(name: str, out: object, batch: int) -> list[torch.Tensor]:
    """Validate what a (user) front-end returned: a tensor or a list of tensors ``[batch, channels, ...]``."""
    expected = "expected a list of feature maps [batch, channels, ...]"
    maps = [out] if isinstance(out, torch.Tensor) else out
    if not isinstance(maps, list | tuple) or not maps:
        raise FewShotError(f"front-end {name!r} returned {_describe(out)}; {expected}")
    for i, m in enumerate(maps):
        where = "" if isinstance(out, torch.Tensor) else f" (item {i})"
        if not isinstance(m, torch.Tensor):
            raise FewShotError(f"front-end {name!r} returned {_describe(m)}{where}; {expected}")
        if m.dim() < 2 or m.shape[0] != batch:
            raise FewShotError(
                f"front-end {name!r} returned a tensor of shape {tuple(m.shape)}{where} for a batch of {batch}; "
                f"{expected}"
            )
        if not m.is_floating_point():
            raise FewShotError(f"front-end {name!r} returned a {m.dtype} tensor{where}; expected floating point")
    return list(maps)


def _describe(obj: object) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, list | tuple) and not obj:
        return f"an empty {type(obj).__name__}"
    return f"a {type(obj).__name__}"
