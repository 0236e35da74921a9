"""Pretrained sources for transfer: a body (musicnn, VGGish or a checkpoint) and its input pipeline.

Loaded once per process; the table of pipelines is in :mod:`fewshot.training.transfer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..exceptions import ParameterError
from .patches import clip_windows

__all__ = ["Source", "load_source", "known_pretrained", "check_pretrained_name", "embed_inputs", "source_inputs"]

CODE_VERSION = "1"


# ----------------------------------------------------------------------------- sources
class _TaggerBody(nn.Module):
    """A musicnn/vgg tagger → its penultimate embedding."""

    def __init__(self, tagger: nn.Module) -> None:
        super().__init__()
        self.tagger = tagger

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tagger(x)[1]


class _CheckpointBody(nn.Module):
    """A trained model → the input of its last dense layer (its penultimate embedding)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from .protonet import PrototypicalNetwork

        self.net = model.backbone if isinstance(model, PrototypicalNetwork) else model
        linears = [m for m in self.net.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ParameterError(f"model {type(model).__name__} has no dense layer to take an embedding before")
        self._last = linears[-1]
        self.embedding_dim = self._last.in_features
        self._captured: torch.Tensor | None = None
        self._last.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        self._captured = args[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.net(x)
        out, self._captured = self._captured, None
        return out


@dataclass
class Source:
    """A pretrained body and the input pipeline it expects.

    Attributes
    ----------
    name : str
        As written in method names.
    kind : {"musicnn", "vggish", "checkpoint"}
    body : torch.nn.Module
        Patches ``[batch, patch_frames, n_mels]`` → embeddings ``[batch, embedding_dim]``, eval mode.
    embedding_dim, patch_frames, hop : int
        Embedding size, patch length and evaluation hop (frames).
    sr : int
        Sample rate of the audio the pipeline reads.
    spectrogram : str or None
        For checkpoints, the :data:`fewshot.data.spectrogram.SPECTROGRAMS` name of the inputs.
    identity : str
        Names the weights and the pipeline (cache keys of features and inputs).
    """

    name: str
    kind: str
    body: nn.Module
    embedding_dim: int
    patch_frames: int
    hop: int
    sr: int = 16000
    spectrogram: str | None = None
    identity: str = ""
    padding: str = "reflect"
    meta: dict = field(default_factory=dict)

    def clip_input(self, waveform: np.ndarray) -> np.ndarray:
        """The pipeline's log-mel ``[n_frames, n_mels]`` of one mono waveform at ``sr`` (not for checkpoints)."""
        if self.kind == "musicnn":
            from ..pretrained.inputs import log_mel

            return log_mel(np.asarray(waveform, dtype=np.float32), padding=self.padding)
        if self.kind == "vggish":
            from ..pretrained.vggish import log_mel

            return log_mel(waveform)
        raise ParameterError(f"pretrained {self.name!r} reads {self.spectrogram!r} log-mels, not waveforms")

    @property
    def input_key(self) -> str:
        """Names the input representation (``pretrained-musicnn-reflect``, ``pretrained-vggish``, ...)."""
        if self.kind == "musicnn":
            return f"pretrained-musicnn-{self.padding}-v1"
        if self.kind == "vggish":
            return "pretrained-vggish-v1"
        return str(self.spectrogram)


_SOURCES: dict[tuple, Source] = {}


def known_pretrained() -> list[str]:
    """Names usable after ``finetune:``, ``protonet:``, ``probe:``: musicnn models, vggish, registered checkpoints."""
    from ..pretrained import PRETRAINED
    from .checkpoints import user_pretrained

    return sorted(set(PRETRAINED.names()) | {"vggish"} | set(user_pretrained()))


def check_pretrained_name(name: str | None, *, method: str = "") -> None:
    """Raise ParameterError unless ``name`` is a known pretrained model (see :func:`known_pretrained`)."""
    if not name or name not in known_pretrained():
        where = f"method {method!r}: " if method else ""
        raise ParameterError(
            f"{where}unknown pretrained model {name!r}; available: {', '.join(known_pretrained())} "
            "(a checkpoint of fewshot pretrain is named with --pretrained NAME=PATH)"
        )


def load_source(name: str) -> Source:
    """The pretrained body ``name`` (loaded once per process; callers :func:`copy.deepcopy` it to train).

    Raises
    ------
    ParameterError
        Unknown name.
    DataError, FewShotError
        Missing weights (VGGish file, musicnn package, checkpoint file).
    """
    from ..pretrained import PRETRAINED
    from .checkpoints import file_digest, user_pretrained

    check_pretrained_name(name)
    user = user_pretrained()
    if name in PRETRAINED:
        key = ("musicnn", name)
    elif name == "vggish":
        from ..pretrained.vggish import vggish_path

        path = vggish_path(user.get("vggish"))
        key = ("vggish", str(path), path.stat().st_mtime_ns)
    else:
        key = ("checkpoint", str(user[name]), user[name].stat().st_mtime_ns)
    if key in _SOURCES:
        return _SOURCES[key]
    if key[0] == "musicnn":
        from ..pretrained import create_pretrained

        tagger = create_pretrained(name)
        src = Source(name, "musicnn", _TaggerBody(tagger).eval(), tagger.embedding_dim, tagger.n_frames,
                     tagger.n_frames, sr=tagger.sr, padding=tagger.padding,
                     identity=f"musicnn:{name}|padding={tagger.padding}|transfer-v{CODE_VERSION}")
    elif key[0] == "vggish":
        from ..pretrained.vggish import N_FRAMES, SR, load_vggish

        net = load_vggish(key[1])
        src = Source(name, "vggish", net, net.embedding_dim, N_FRAMES, N_FRAMES, sr=SR,
                     identity=f"vggish:{net.file_sha256}|transfer-v{CODE_VERSION}")
    else:
        from ..data.spectrogram import SPECTROGRAMS
        from .checkpoints import load_checkpoint

        model, config = load_checkpoint(key[1])
        body = _CheckpointBody(model).eval()
        spec = config["spectrogram"]
        src = Source(name, "checkpoint", body, body.embedding_dim, int(config["patch_frames"]),
                     int(config["patch_frames"]), sr=SPECTROGRAMS[spec].sr, spectrogram=spec, meta=config,
                     identity=f"checkpoint:{file_digest(key[1])}|transfer-v{CODE_VERSION}")
    for p in src.body.parameters():
        p.requires_grad_(False)
    _SOURCES[key] = src
    return src


def embed_inputs(source: Source, inputs: Sequence[np.ndarray], *, device: str | torch.device = "cpu",
                 batch_size: int = 64) -> np.ndarray:
    """Clip embeddings ``[n_clips, embedding_dim]``: the mean over patches of the frozen body's output."""
    patches, index = clip_windows(inputs, patch_frames=source.patch_frames, hop=source.hop)
    body = source.body.to(device).eval()
    outs = []
    with torch.inference_mode():
        for s in range(0, len(patches), batch_size):
            outs.append(body(torch.from_numpy(patches[s:s + batch_size]).to(device)).float().cpu())
    emb = torch.cat(outs).double().numpy()
    sums = np.zeros((len(inputs), emb.shape[1]))
    np.add.at(sums, index, emb)
    return (sums / np.bincount(index, minlength=len(inputs))[:, None]).astype(np.float32)


def source_inputs(ctx, source: Source, indices: Sequence[int]) -> list[np.ndarray]:
    """The source pipeline's log-mel of each clip of ``ctx.dataset`` (memoised in ``ctx``, cached on disk)."""
    if source.kind == "checkpoint":
        return [ctx.log_mel(int(i), source.spectrogram) for i in indices]
    from ..data.audio import clip_identity

    out = []
    for i in indices:
        key = (int(i), source.input_key)
        if key not in ctx._logmels:
            def compute(i=int(i)) -> np.ndarray:
                return source.clip_input(ctx.waveform(i, source.sr))

            if ctx.cache is None:
                value = compute()
            else:
                ck = ctx.cache.key(namespace="logmel", clip=clip_identity(ctx.dataset, ctx.dataset.clips[int(i)]),
                                   spectrogram=source.input_key, seconds=ctx.config.seconds)
                value = ctx.cache.get_or_compute(ck, compute)
            ctx._logmels[key] = value
        out.append(ctx._logmels[key])
    return out
