"""The registered front-ends: the random-weight CNNs of elmarc [1]_ and the 120-d MFCC baseline.

==================  ========  ==============  =============================  ==============
name                input     F small/large   feature layers                 features s / l
==================  ========  ==============  =============================  ==============
sample_level        waveform  23 / 512        conv0, pool1…pool6             161 / 3584
frame_level         waveform  40 / 896        frontend, b1, b2, b3           160 / 3584
frame_level_many    waveform  20 / 448        frontend_512…_32, b1, b2, b3   160 / 3584
vertical_7x96       logmel    160 / 3585      pool                           160 / 3585
vertical_7x86       logmel    160 / 3585      pool                           160 / 3585
timbral             logmel    12 / 256        timbral_7x86 … timbral_1x38    168 / 3584
temporal            logmel    12 / 256        temporal_165 … temporal_32     168 / 3584
timbral_temporal    logmel    6 / 128         both (kernels 165…32)          170 / 3584
timbral_time        logmel    6 / 128         both (kernels 64…8)            170 / 3584
vgg                 logmel    32 / 717        pool1 … pool5                  160 / 3585
mfcc                mfcc      —               mfcc                           120
==================  ========  ==============  =============================  ==============

The small width of the cnn_music family is not recorded in the reference (which
only accepted F = 4…256, giving 112 or 224); ours is chosen near the others'
≈160. See ``docs/frontends.md`` for the differences from the reference.

References
----------
.. [1] J. Pons and X. Serra, "Randomly weighted CNNs for (music) audio
   classification", ICASSP 2019.
.. [2] K. Choi, G. Fazekas, M. Sandler and K. Cho, "Transfer learning for music
   classification and regression tasks", ISMIR 2017 (the MFCC baseline).
"""

from __future__ import annotations

import numpy as np
import torch

from ..exceptions import ParameterError
from ._base import FRONTENDS, Frontend
from ._spectrogram import VGG, CnnMusic, Vertical
from ._waveform import FrameLevel, FrameLevelMany, SampleLevel

__all__ = ["VGG", "Vertical", "CnnMusic", "SampleLevel", "FrameLevel", "FrameLevelMany", "MFCC"]


class MFCC(Frontend):
    """The 120-d MFCC baseline [2]_: mean and std of 20 MFCCs, Δ and ΔΔ (``fewshot.data.spectrogram.mfcc_vector``).

    Not a network: ``input="mfcc"`` means waveforms at 12 kHz, each turned into a
    fixed vector. Clips shorter than 2,048 samples are repeat-padded (the
    reference's 'crop' mode cut every clip to 2,048 samples, facts C-A8; we use the
    whole clip, as Choi did). ``width``, ``filters`` and ``seed`` do not change it.
    """

    random = False

    @classmethod
    def count_features(cls, filters: int | None = None) -> int:
        return 120

    def __init__(self, *, width: str | None = None, filters: int | None = None, seed: int = 0,
                 seconds: float | None = None) -> None:
        if filters is not None:
            raise ParameterError(f"front-end 'mfcc' has no filters; got filters={filters!r}")
        super().__init__(name="mfcc", width=None, filters=None, seed=seed, input="mfcc", sr=12000,
                         min_length=2048, layer_sizes={"mfcc": 120}, seconds=seconds)

    def _maps(self, x: torch.Tensor, plain: bool) -> list[torch.Tensor]:
        from ..data.spectrogram import mfcc_vector  # lazily: the data layer is optional for the CNNs

        rows = [np.asarray(mfcc_vector(np.ascontiguousarray(r, dtype=np.float32), self.sr), dtype=np.float32)
                for r in x.detach().cpu().numpy()]
        return [torch.from_numpy(np.stack(rows)).to(x.device)]


def _register(name: str, cls, description: str, input: str, widths: dict | None, count) -> None:
    FRONTENDS.register(name, description=description, input=input, widths=widths, count=count,
                       random=widths is not None)(cls)


_register("sample_level", SampleLevel, "sample-level CNN on waveforms (conv 3/3, 6 × conv 3 + pool 3)",
          "waveform", SampleLevel.WIDTHS, SampleLevel.count_features)
_register("frame_level", FrameLevel, "frame-level conv 512/32 on waveforms + residual back-end",
          "waveform", FrameLevel.WIDTHS, FrameLevel.count_features)
_register("frame_level_many", FrameLevelMany, "five frame-level convs (512…32 taps) + residual back-end",
          "waveform", FrameLevelMany.WIDTHS, FrameLevelMany.count_features)
for _shape in ("7x96", "7x86"):
    _register(f"vertical_{_shape}", lambda *, _s=_shape, **kw: Vertical(_s, **kw),
              f"one {_shape} vertical filter bank on log-mels, ReLU, max over frequency",
              "logmel", Vertical.WIDTHS, Vertical.count_features)
for _kind, _desc in (
    ("timbral", "six timbral branches (7/3/1 × 86/38) on log-mels, max over frequency"),
    ("temporal", "four temporal branches (165/128/64/32 frames) on the band-averaged log-mel"),
    ("timbral_temporal", "timbral + temporal branches"),
    ("timbral_time", "timbral + short temporal branches (64/32/16/8 frames), for short clips"),
):
    _register(_kind, lambda *, _k=_kind, **kw: CnnMusic(_k, **kw), _desc, "logmel", CnnMusic.widths(_kind),
              lambda f, _k=_kind: CnnMusic.count_features(f, _k))
_register("vgg", VGG, "5-layer VGG (3×3 conv, ELU, max-pool) on log-mels", "logmel", VGG.WIDTHS,
          VGG.count_features)
FRONTENDS.register("mfcc", description="120-d MFCC baseline (mean/std of 20 MFCC, Δ, ΔΔ)", input="mfcc",
                   widths=None, count=MFCC.count_features, random=False)(MFCC)
