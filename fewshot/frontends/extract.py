"""Feature extraction: clips → ``X [n_clips, n_features]`` through a front-end, without gradients.

:func:`extract_features` is pure (no caching, no global state): the protocol caches
rows per (``frontend.identity``, audio settings, clip) through
``fewshot/data/cache.py``.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..exceptions import FewShotError, ParameterError
from ._base import Frontend, check_maps, map_means
from ._fast import effective_precision
from .tuning import architecture_key, length_bucket, run_in_batches

__all__ = ["extract_features", "resolve_device", "length_groups", "to_batch"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as ``torch.device``."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ParameterError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r} was asked for but CUDA is not available")
    return dev


def _check_clip(frontend: Frontend, i: int, x: object) -> np.ndarray:
    if not isinstance(x, np.ndarray) and not isinstance(x, torch.Tensor):
        raise ParameterError(f"front-end {frontend.name!r}: input {i} must be a numpy array; got {type(x).__name__}")
    x = np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    want = 2 if frontend.input == "logmel" else 1
    if x.ndim != want or x.shape[0] == 0:
        layout = "[n_frames, n_mels] log-mel" if want == 2 else "[n_samples] waveform"
        raise ParameterError(
            f"front-end {frontend.name!r}: input {i} must be a non-empty {layout}; got shape {x.shape}"
        )
    n_mels = getattr(frontend, "n_mels", None)
    if want == 2 and n_mels is not None and x.shape[1] != n_mels:
        raise ParameterError(f"front-end {frontend.name!r}: input {i} has {x.shape[1]} mel bands; expected {n_mels}")
    return frontend.prepare(x)


def check_batch_size(batch_size: object) -> int | None:
    """``batch_size`` if it is a positive int or None; else ParameterError."""
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ParameterError(f"batch_size must be a positive int or None; got {batch_size!r}")
    return batch_size


def check_precision(precision: object) -> None:
    """ParameterError unless ``precision`` is "float32" or "bfloat16"."""
    if precision not in ("float32", "bfloat16"):
        raise ParameterError(f"precision must be 'float32' or 'bfloat16'; got {precision!r}")


def prepare_clips(frontend: Frontend, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Checked clips, cut / repeat-padded by ``frontend.prepare``."""
    return [_check_clip(frontend, i, x) for i, x in enumerate(inputs)]


def length_groups(clips: list[np.ndarray]) -> list[tuple[int, list[int]]]:
    """``(length, clip indices)`` per distinct clip length, shortest first (a batch holds one length)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, c in enumerate(clips):
        groups[c.shape[0]].append(i)
    return sorted(groups.items())


def to_batch(frontend: Frontend, clips: list[np.ndarray], chunk: list[int], dev: torch.device) -> torch.Tensor:
    """The clips ``chunk`` (of one length) as a batch tensor on ``dev``.

    Log-mel batches get their channel axis (``[batch, 1, n_frames, n_mels]``); on CUDA batches go through
    pinned memory with asynchronous copies.
    """
    batch = torch.from_numpy(np.stack([clips[i] for i in chunk]))
    if frontend.input == "logmel":
        batch = batch.unsqueeze(1)
    if dev.type == "cuda":
        batch = batch.pin_memory().to(dev, non_blocking=True)
    return batch


def batch_key(module: torch.nn.Module, length: int, dev: torch.device, precision: str) -> tuple:
    """What a CPU batch-size choice depends on (see :func:`fewshot.frontends.tuning.run_in_batches`)."""
    return ("batch", architecture_key(module), length_bucket(length), str(dev), precision, torch.get_num_threads())


def extract_features(
    frontend: Frontend,
    inputs: Sequence[np.ndarray],
    *,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    layers: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    plain: bool = False,
    precision: str = "float32",
) -> np.ndarray:
    """Feature vectors of clips: per-channel means of the front-end's feature maps.

    Clips are prepared by ``frontend.prepare`` (cut to ``frontend.seconds``,
    repeat-padded to ``frontend.min_length``), grouped by length, and run in
    batches under ``torch.inference_mode``; on CUDA batches go through pinned
    memory with asynchronous copies. The front-end is moved to ``device`` for the
    call and moved back afterwards.

    Parameters
    ----------
    frontend : Frontend
        From :func:`fewshot.frontends.create_frontend`.
    inputs : sequence of np.ndarray
        Per clip: ``float32 [n_samples]`` waveforms at ``frontend.sr`` (``input`` "waveform" or
        "mfcc") or ``float32 [n_frames, n_mels]`` log-mels (``input`` "logmel").
    device : str or torch.device, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    batch_size : int, optional
        Clips per forward pass. Default: on CPU, 1 or 4, whichever is measured faster per clip on the
        first clips, or one clip on each of torch's threads at once where that measured faster still
        (:func:`fewshot.frontends.tuning.run_in_batches`, :mod:`fewshot.frontends.parallel`); on CUDA
        ``frontend.default_batch_size(device)``.
    layers : sequence of str, optional
        Feature layers to keep (``frontend.feature_layers``); default all.
    progress : callable, optional
        Called as ``progress(n_done, n_total)`` after each batch.
    plain : bool, default=False
        Use the plain definition instead of the optimized one (benchmarks, tests).
    precision : "float32" or "bfloat16", default="float32"
        bfloat16 lets the GEMM formulations run their matrix products in bfloat16 (features within ~1e-2;
        clips rank the same, tested) where that is measured faster; see ``fewshot/frontends/_fast.py``. On a
        CPU without native bfloat16 it falls back to float32 with a warning.

    Returns
    -------
    np.ndarray [shape=(n_clips, n_features), dtype=float32]

    Raises
    ------
    ParameterError
        Bad inputs, layers, batch size or device.
    FewShotError
        A (user) front-end returned something that is not a list of feature maps.
    """
    dev = resolve_device(device)
    check_batch_size(batch_size)
    check_precision(precision)
    precision = effective_precision(precision, dev)
    clips = prepare_clips(frontend, inputs)
    n_out = frontend.n_features_of(layers) if layers is not None else None
    names = frontend._layer_names(layers) if layers is not None else None
    out: np.ndarray | None = None
    params = list(frontend.parameters()) + list(frontend.buffers())
    home = params[0].device if params else None
    frontend.eval()
    saved_precision = getattr(frontend, "precision", "float32")
    frontend.precision = precision
    if home is not None and home != dev:
        frontend.to(dev)
    done = 0
    lock = threading.Lock()  # run() may be called from several threads (clips in parallel)

    def run(chunk: list[int]) -> None:
        nonlocal out, done
        batch = to_batch(frontend, clips, chunk, dev)
        maps = check_maps(frontend.name, frontend.forward(batch, plain=plain), len(chunk))
        if names is not None:
            maps = [m for n, m in zip(frontend.feature_layers, maps, strict=True) if n in names]
        feats = map_means(maps).float().cpu().numpy()
        with lock:
            if out is None:
                out = np.empty((len(clips), n_out or feats.shape[1]), dtype=np.float32)
            if feats.shape[1] != out.shape[1]:
                raise FewShotError(
                    f"front-end {frontend.name!r} gave {feats.shape[1]} features for some clips and "
                    f"{out.shape[1]} for others; feature maps must have a fixed number of channels"
                )
            out[chunk] = feats
            done += len(chunk)
            if progress is not None:
                progress(done, len(clips))

    try:
        with torch.inference_mode():
            for length, idx in length_groups(clips):
                default = frontend.default_batch_size(dev)
                run_in_batches(batch_key(frontend, length, dev, precision), idx, run, device=dev, default=default,
                               batch_size=batch_size or (default if plain else None),  # plain: as defined
                               probe=lambda chunk: map_means(frontend.forward(to_batch(frontend, clips, chunk, dev))),
                               parallel=frontend.thread_safe and not plain)
    finally:
        frontend.precision = saved_precision
        if home is not None and home != dev:
            frontend.to(home)
    if out is None:
        return np.empty((0, frontend.n_features_of(layers)), dtype=np.float32)
    return out
