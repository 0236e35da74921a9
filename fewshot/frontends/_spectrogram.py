"""Random-weight CNNs on log-mel spectrograms: VGG, the vertical 7×96 / 7×86 filters, and the
musically motivated timbral / temporal front-ends of elmarc [1]_ (``dl_models.py``).

Input ``[batch, 1, n_frames, 96]`` (time × frequency) in the ``"elmarc"`` log-mel
configuration. Weights are He-normal (TF ``variance_scaling_initializer``), biases
zero, no batch norm; all maps are frozen.

The optimized formulations take the max (pooling, or the max over all frequency
positions) *before* the monotonic activation (ELU, ReLU): ``max(act(x)) ==
act(max(x))`` exactly, on a map 8–59× smaller.

References
----------
.. [1] J. Pons and X. Serra, "Randomly weighted CNNs for (music) audio
   classification", ICASSP 2019.
.. [2] K. Choi, G. Fazekas, M. Sandler and K. Cho, "Transfer learning for music
   classification and regression tasks", ISMIR 2017.
.. [3] J. Pons, T. Lidy and X. Serra, "Experimenting with musically motivated
   convolutional neural networks", CBMI 2016.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..exceptions import ParameterError
from ._base import ELMARC_LOGMEL, Frontend, frozen_conv, resolve_filters

__all__ = ["VGG", "Vertical", "CnnMusic", "cnn_music_temporal_filters"]

N_MELS = ELMARC_LOGMEL["n_mels"]
_COMMON = {"input": "logmel", "sr": ELMARC_LOGMEL["sr"], "spectrogram": "elmarc", "n_mels": N_MELS}


class VGG(Frontend):
    """Choi's 5-layer convnet without BN [2]_ (elmarc ``cnn_small_filters``): 5 × [3×3 conv, ELU, max-pool].

    Pools (time × frequency) 4×2, 4×3, 5×2, 4×2, 4×4; feature = mean of each
    pooled map → 5F. Needs ≥ 1,280 frames (the product of the time pools);
    shorter inputs are repeat-padded to 1,280 frames (the reference could not run
    on 4-s clips at all; facts C-A7).

    Parameters
    ----------
    width : "small", "large" or "f<F>", default="small"
        F = 32 (160 features) or 717 (3,585 features).
    filters : int, optional
        Explicit F (overrides ``width``).
    seed : int, default=0
    seconds : float, optional
        Cut / repeat-pad clips to this length in :meth:`prepare` (None: whole clips).
    """

    thread_safe = True

    WIDTHS = {"small": 32, "large": 717}
    POOLS = ((4, 2), (4, 3), (5, 2), (4, 2), (4, 4))

    @classmethod
    def count_features(cls, filters: int) -> int:
        return 5 * filters

    def __init__(self, *, width: str = "small", filters: int | None = None, seed: int = 0,
                 seconds: float | None = None) -> None:
        width, nf = resolve_filters("vgg", width, filters, self.WIDTHS)
        super().__init__(name="vgg", width=width, filters=nf, seed=seed, seconds=seconds,
                         min_length=1280, layer_sizes={f"pool{i + 1}": nf for i in range(5)}, **_COMMON)
        g = torch.Generator().manual_seed(self.seed)
        self.convs = nn.ModuleList(
            frozen_conv(nn.Conv2d, 1 if i == 0 else nf, nf, 3, padding=1, generator=g) for i in range(5)
        )

    def _maps(self, x: torch.Tensor, plain: bool, conv=None) -> list[torch.Tensor]:
        """``conv(layer, x)`` replaces ``layer(x)`` when given (another exact formulation, e.g. the FFT)."""
        maps = []
        for i, (layer, pool) in enumerate(zip(self.convs, self.POOLS, strict=True)):
            if plain:
                x = F.max_pool2d(F.elu(layer(x)), pool)
            elif i == 0 and x.device.type == "cpu":  # one input channel: a patch GEMM pooled in cache
                from ._gemmconv import vgg_first_layer

                x = vgg_first_layer(layer, x, pool).contiguous()
            else:
                y = layer(x) if conv is None else conv(layer, x)
                x = F.elu(max_pool2d(y, pool), inplace=True)
            maps.append(x)
        return maps


def max_pool2d(y: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
    """``F.max_pool2d(y, pool)`` (stride = pool, floor) as two single-axis maxima: the same values, 3–7× faster
    on CPU for ``[batch, C, T, F]`` maps, where ``max_pool2d`` also computes indices (measured in
    docs/performance.md: 18.7 → 2.8 ms for VGG's first 32 × 1,280 × 96 map, one AVX2 core)."""
    b, c, t, f = y.shape
    pt, pf = pool
    return y[:, :, :t // pt * pt, :f // pf * pf].view(b, c, t // pt, pt, f // pf, pf).amax(3).amax(4)


class Vertical(Frontend):
    """One vertical filter (elmarc ``cnn_single``): conv k_t × k_f valid, ReLU, max over frequency.

    ``7x96`` spans all 96 bands (the pool is the identity); ``7x86`` leaves 11
    frequency positions, max-pooled. Feature = time-mean of the pooled map → F.

    Parameters
    ----------
    shape : "7x96" or "7x86"
    width : "small", "large" or "f<F>", default="small"
        F = 160 or 3,585.
    filters, seed, seconds
        As for :class:`VGG`.
    """

    thread_safe = True

    WIDTHS = {"small": 160, "large": 3585}

    @classmethod
    def count_features(cls, filters: int) -> int:
        return filters

    def __init__(self, shape: str = "7x96", *, width: str = "small", filters: int | None = None,
                 seed: int = 0, seconds: float | None = None) -> None:
        kt, kf = (int(v) for v in shape.split("x"))
        name = f"vertical_{shape}"
        width, nf = resolve_filters(name, width, filters, self.WIDTHS)
        super().__init__(name=name, width=width, filters=nf, seed=seed, seconds=seconds, min_length=kt,
                         layer_sizes={"pool": nf}, **_COMMON)
        g = torch.Generator().manual_seed(self.seed)
        self.conv = frozen_conv(nn.Conv2d, 1, nf, (kt, kf), generator=g)

    def _maps(self, x: torch.Tensor, plain: bool) -> list[torch.Tensor]:
        y = self.conv(x)  # [batch, F, T - kt + 1, 96 - kf + 1]
        if plain:
            return [F.max_pool2d(F.relu(y), (1, y.shape[-1]))]
        return [F.relu(y.amax(-1, keepdim=True), inplace=True)]


def cnn_music_temporal_filters(filters: int) -> list[int]:
    """Temporal-branch filter counts F−r, 2F−r, 4F−r, 8F−r with r = F // 4 (elmarc's lookup is F/4)."""
    r = filters // 4
    return [filters - r, 2 * filters - r, 4 * filters - r, 8 * filters - r]


class CnnMusic(Frontend):
    """Musically motivated front-end [3]_ (elmarc ``cnn_music`` / ``cnn_audio``).

    Timbral part: six conv2d branches 7×86 (F), 3×86 (2F), 1×86 (4F), 7×38 (F),
    3×38 (2F), 1×38 (4F) filters; time zero-padded to keep T frames, valid in
    frequency, ReLU, max over all remaining frequency positions → 14F.
    Temporal part: the frequency-average of the log-mel (a 1-D signal of T
    frames) through four conv1d branches with 'same' padding and ReLU; kernels
    165, 128, 64, 32 frames (``cnn_music``) or 64, 32, 16, 8 (``cnn_audio``, short
    clips), F−r, 2F−r, 4F−r, 8F−r filters (r = F // 4) → 14F when 4 divides F.
    Each branch is one feature layer; feature = time-mean per filter.

    Parameters
    ----------
    kind : "timbral", "temporal", "timbral_temporal" or "timbral_time"
    width : "small", "large" or "f<F>", default="small"
        Large: F = 256 (timbral, temporal: 3,584 features) or 128 (both parts: 3,584).
        Small (the reference never recorded it; ours): F = 12 (168 features) or 6 for
        both parts (84 + 86 = 170), near the other front-ends' ≈160.
    filters, seed, seconds
        As for :class:`VGG` (the reference accepted only F ∈ {4, 8, …, 256}; any F ≥ 1 works here).
    """

    thread_safe = True

    KINDS = {
        "timbral": (True, None),
        "temporal": (False, (165, 128, 64, 32)),
        "timbral_temporal": (True, (165, 128, 64, 32)),
        "timbral_time": (True, (64, 32, 16, 8)),
    }
    WIDTHS_ONE = {"small": 12, "large": 256}
    WIDTHS_BOTH = {"small": 6, "large": 128}
    TIMBRAL = ((7, 86, 1), (3, 86, 2), (1, 86, 4), (7, 38, 1), (3, 38, 2), (1, 38, 4))  # (kt, kf, × F)

    @classmethod
    def widths(cls, kind: str) -> dict[str, int]:
        timbral, temporal = cls.KINDS[kind]
        return cls.WIDTHS_BOTH if timbral and temporal else cls.WIDTHS_ONE

    @classmethod
    def count_features(cls, filters: int, kind: str = "timbral") -> int:
        timbral, temporal = cls.KINDS[kind]
        return 14 * filters * timbral + (sum(cnn_music_temporal_filters(filters)) if temporal else 0)

    def __init__(self, kind: str = "timbral", *, width: str = "small", filters: int | None = None,
                 seed: int = 0, seconds: float | None = None, chunk: int = 64) -> None:
        if kind not in self.KINDS:
            raise ParameterError(f"cnn_music kind must be one of {', '.join(self.KINDS)}; got {kind!r}")
        timbral, kernels = self.KINDS[kind]
        width, nf = resolve_filters(kind, width, filters, self.widths(kind))
        sizes: dict[str, int] = {}
        if timbral:
            sizes.update({f"timbral_{kt}x{kf}": m * nf for kt, kf, m in self.TIMBRAL})
        if kernels:
            sizes.update({f"temporal_{k}": n for k, n in zip(kernels, cnn_music_temporal_filters(nf), strict=True)})
        super().__init__(name=kind, width=width, filters=nf, seed=seed, seconds=seconds, min_length=1,
                         layer_sizes=sizes, **_COMMON)
        self.chunk = int(chunk)
        g = torch.Generator().manual_seed(self.seed)
        self.timbral = nn.ModuleList(
            frozen_conv(nn.Conv2d, 1, m * nf, (kt, kf), generator=g) for kt, kf, m in (self.TIMBRAL if timbral else ())
        )
        self.kernels = tuple(kernels or ())
        self.temporal = nn.ModuleList(
            frozen_conv(nn.Conv1d, 1, n, k, generator=g)
            for k, n in zip(self.kernels, cnn_music_temporal_filters(nf) if kernels else [], strict=True)
        )

    def _maps(self, x: torch.Tensor, plain: bool) -> list[torch.Tensor]:
        maps = []
        for conv in self.timbral:
            kt = conv.kernel_size[0]
            xp = F.pad(x, (0, 0, (kt - 1) // 2, (kt - 1) // 2))  # zeros in time: T frames out
            if plain:
                y = F.relu(conv(xp))
                maps.append(F.max_pool2d(y, (1, y.shape[-1])))
            else:  # max over frequency before ReLU, a chunk of filters at a time (bounded memory)
                parts = [F.conv2d(xp, w, b).amax(-1, keepdim=True)
                         for w, b in zip(conv.weight.split(self.chunk), conv.bias.split(self.chunk), strict=True)]
                maps.append(F.relu(torch.cat(parts, 1) if len(parts) > 1 else parts[0], inplace=True))
        if self.temporal:
            signal = x.mean(dim=3)  # [batch, 1, T]: frequency-average of the log-mel
            for conv, k in zip(self.temporal, self.kernels, strict=True):
                left = (k - 1) // 2  # TF 'same': the extra zero goes to the right
                maps.append(F.relu(conv(F.pad(signal, (left, k - 1 - left)))))
        return maps
