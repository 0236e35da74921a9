"""Taggrams and embeddings of audio files with a pretrained musicnn/vgg model.

Behind ``fewshot embed --model M --out DIR FILES…``: for each file, decode it to mono
16 kHz (other rates are resampled with soxr, see :func:`fewshot.data.audio.load_audio`),
compute musicnn's log-mel (:func:`fewshot.pretrained.inputs.log_mel`), cut it into
non-overlapping 3 s patches and run the network on them, one patch per row:

- ``<stem>.taggram.npy``: float32 ``[n_patches, n_tags]``, sigmoid outputs;
- ``<stem>.embedding.npy``: float32 ``[n_patches, embedding_dim]``, the penultimate
  layer (200-d for musicnn, 256-d for vgg).

Examples
--------
>>> from fewshot.pretrained import create_pretrained
>>> from fewshot.pretrained.embed import embed_file, embed_files
>>> model = create_pretrained("mtt_musicnn")                       # doctest: +SKIP
>>> taggram, embedding = embed_file(model, "song.wav")             # doctest: +SKIP
>>> embed_files("msd_vgg", ["a.wav", "b.flac"], "embeddings/")     # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..exceptions import ParameterError
from .inputs import log_mel, make_patches
from .musicnn import PretrainedTagger

__all__ = ["embed_waveform", "embed_file", "embed_files"]


def embed_waveform(
    model: PretrainedTagger, waveform: np.ndarray, *, hop: int | None = None, short: str = "repeat",
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Taggram and embedding of a mono 16 kHz waveform.

    Parameters
    ----------
    model : PretrainedTagger
        From :func:`fewshot.pretrained.create_pretrained`; its ``padding`` is used.
    waveform : np.ndarray [shape=(n_samples,)]
        Mono audio at 16 kHz.
    hop : int or None, default=None
        Frames between patch starts; None: 187 (non-overlapping, as musicnn).
    short : {"repeat", "error"}, default="repeat"
        Audio shorter than one patch (about 2.98 s): repeat it to fill one patch, or raise.
    batch_size : int, default=64
        Patches per forward pass (results do not depend on it beyond float rounding).

    Returns
    -------
    taggram : np.ndarray [shape=(n_patches, n_tags)], float32
    embedding : np.ndarray [shape=(n_patches, embedding_dim)], float32
    """
    patches = make_patches(log_mel(waveform, padding=model.padding), n_frames=model.n_frames, hop=hop,
                           short=short)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    tags, embs = [], []
    try:
        with torch.no_grad():
            for start in range(0, len(patches), batch_size):
                x = torch.from_numpy(patches[start : start + batch_size]).to(device)
                logits, emb = model(x)
                tags.append(torch.sigmoid(logits).cpu().numpy())
                embs.append(emb.cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(tags).astype(np.float32), np.concatenate(embs).astype(np.float32)


def embed_file(
    model: PretrainedTagger, path: str | os.PathLike, *, hop: int | None = None, short: str = "repeat"
) -> tuple[np.ndarray, np.ndarray]:
    """Taggram ``[patches, tags]`` and embedding ``[patches, dims]`` of one audio file.

    The file is decoded, mixed down to mono and resampled to 16 kHz (soxr HQ; musicnn
    used librosa's resampler, so non-16 kHz files match the original only closely).

    Raises
    ------
    DataError
        Missing, undecodable, empty, non-finite or silent audio (the message names the file).
    """
    from ..data.audio import check_waveform, load_audio

    waveform, _ = load_audio(path, sr=model.sr)
    check_waveform(waveform, source=os.fspath(path))
    return embed_waveform(model, waveform, hop=hop, short=short)


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def embed_files(
    model_name: str, files: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *, padding: str = "reflect"
) -> list[Path]:
    """Write ``<stem>.taggram.npy`` and ``<stem>.embedding.npy`` for each file into ``out_dir``.

    The function behind ``fewshot embed --model M --out DIR FILES…``.

    Parameters
    ----------
    model_name : str
        A registered pretrained model: ``mtt_musicnn``, ``msd_musicnn``, ``mtt_vgg``, ``msd_vgg``.
    files : sequence of path
        Audio files; their stems must be distinct.
    out_dir : path
        Created if missing.
    padding : {"reflect", "constant"}, default="reflect"

    Returns
    -------
    list of Path
        The files written, two per input (taggram, embedding), in input order.

    Raises
    ------
    ParameterError
        Unknown model, no files, or two inputs with the same stem.
    DataError
        An input is missing or unreadable (files before it are already written).
    """
    from . import create_pretrained

    paths = [Path(f) for f in files]
    if not paths:
        raise ParameterError("files must name at least one audio file; got none")
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise ParameterError(
                f"two input files have the same stem {p.stem!r} ({seen[p.stem]} and {p}); outputs would collide"
            )
        seen[p.stem] = p
    model = create_pretrained(model_name, padding=padding)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p in paths:
        taggram, embedding = embed_file(model, p)
        for kind, array in (("taggram", taggram), ("embedding", embedding)):
            target = out / f"{p.stem}.{kind}.npy"
            _save(target, array)
            written.append(target)
    return written
