"""``probe:<pretrained>``: frozen pretrained embeddings as a fixed (non-random) front-end.

The feature vector of a clip is the mean over its patches of the pretrained body's
penultimate embedding (musicnn 200-d, musicnn-vgg 256-d, VGGish 128-d, or the input
of a ``fewshot pretrain`` checkpoint's last dense layer), each source with its own
input pipeline (:class:`fewshot.training.transfer.Source`). Patches are
non-overlapping plus one aligned with the clip's end; short clips are repeat-padded.

Because it is a front-end, ``probe:msd_musicnn+svm`` runs in ``fewshot randomcnn``
next to random networks (``vgg-small+svm``) and in ``fewshot run`` next to trained
models, with the classifier tuned on the n-shot subset only. The weights do not
depend on the run, so features are computed once per clip and cached.

Examples
--------
>>> from fewshot.frontends import create_frontend
>>> fe = create_frontend("probe:msd_musicnn")         # doctest: +SKIP
>>> fe.n_features, fe.input, fe.sr, fe.random          # doctest: +SKIP
(200, 'waveform', 16000, False)
"""

from __future__ import annotations

import numpy as np
import torch

from ..exceptions import ParameterError
from ._base import CODE_VERSION, Frontend

__all__ = ["PREFIX", "is_probe_name", "check_probe_name", "ProbeFrontend", "create_probe_frontend"]

PREFIX = "probe:"


def is_probe_name(name: object) -> bool:
    """Whether ``name`` is ``probe:<pretrained>``."""
    return isinstance(name, str) and name.startswith(PREFIX)


def check_probe_name(name: str) -> None:
    """Raise ParameterError unless ``name`` is ``probe:`` + a known pretrained model."""
    from ..training.transfer import check_pretrained_name

    check_pretrained_name(name[len(PREFIX):], method=name)


class ProbeFrontend(Frontend):
    """Mean penultimate embedding of a frozen pretrained network (one map ``embedding`` of shape ``[batch, D]``)."""

    random = False

    def __init__(self, source, *, seconds: float | None = None) -> None:
        if source.kind == "checkpoint":
            from ..data.spectrogram import SPECTROGRAMS

            cfg = SPECTROGRAMS[source.spectrogram]
            super().__init__(name=PREFIX + source.name, width=None, filters=None, seed=0, input="logmel", sr=cfg.sr,
                             min_length=1, layer_sizes={"embedding": source.embedding_dim}, seconds=seconds,
                             spectrogram=source.spectrogram, n_mels=cfg.n_mels)
        else:
            super().__init__(name=PREFIX + source.name, width=None, filters=None, seed=0, input="waveform",
                             sr=source.sr, min_length=401, layer_sizes={"embedding": source.embedding_dim},
                             seconds=seconds)
        self.random = False
        self.source = source

    @property
    def identity(self) -> str:
        return "|".join([self.name, f"source={self.source.identity}", f"input={self.input}", f"sr={self.sr}",
                         f"spectrogram={self.spectrogram}", f"seconds={self.seconds}",
                         f"code=frontends-v{CODE_VERSION}"])

    def default_batch_size(self, device: str | torch.device) -> int:
        return 1

    def _maps(self, x: torch.Tensor, plain: bool) -> list[torch.Tensor]:
        from ..training.transfer import embed_inputs

        rows = x.detach().cpu().numpy()
        if self.input == "logmel":
            clips = [r[0] for r in rows]
        else:
            clips = [self.source.clip_input(r) for r in rows]
        emb = embed_inputs(self.source, clips, device=x.device)
        return [torch.from_numpy(np.ascontiguousarray(emb)).to(x.device)]


def create_probe_frontend(name: str, *, width: str | None = None, filters: int | None = None, seed: int = 0,
                          seconds: float | None = None, **kwargs) -> ProbeFrontend:
    """Build ``probe:<pretrained>`` (``width``, ``filters`` and ``seed`` are ignored: the weights are fixed)."""
    from ..training.transfer import load_source

    if kwargs:
        raise ParameterError(f"front-end {name!r}: unexpected options {', '.join(sorted(kwargs))}")
    check_probe_name(name)
    return ProbeFrontend(load_source(name[len(PREFIX):]), seconds=seconds)
