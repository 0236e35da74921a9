"""Features of several networks of one architecture (a study's runs): stacked into one pass where measured faster.

:func:`extract_features_many` is ``[extract_features(fe, inputs) for fe in frontends]``
with the networks run K at a time as one stacked network (:mod:`fewshot.frontends.stacked`)
where :func:`~fewshot.frontends.stacked.stack_size` allows it and one stacked pass is
measured faster than K single ones on this machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..exceptions import ParameterError
from ._base import Frontend
from ._fast import effective_precision
from .extract import (
    batch_key,
    check_batch_size,
    check_precision,
    extract_features,
    length_groups,
    prepare_clips,
    resolve_device,
    to_batch,
)
from .parallel import one_torch_thread, parallel_workers, run_parallel
from .stacked import StackedFrontend, _list_problem, stack_frontends, stack_size, stacking_problem
from .tuning import (
    architecture_key,
    length_bucket,
    measure,
    race,
    remembered,
    run_in_batches,
    sample,
    tuned_choices,
    tuning_enabled,
)

__all__ = ["extract_features_many"]


def extract_features_many(
    frontends: Sequence[Frontend],
    inputs: Sequence[np.ndarray],
    *,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    layers: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    precision: str = "float32",
) -> list[np.ndarray]:
    """Feature matrices of several networks: ``[extract_features(fe, inputs, ...) for fe in frontends]``.

    Where the front-ends stack (:func:`stacking_problem`), :func:`stack_size` of the
    first allows it and one stacked pass is measured faster than K single ones on
    the first clip (remembered per architecture, K and length; not measured with
    tuning off), they run in groups of up to that many as one stacked network per
    batch of clips; otherwise (user, probe or MFCC front-ends,
    mixed architectures, wide widths, CUDA, bfloat16) one network at a time.
    Either way clips are processed one batch at a time.

    Parameters
    ----------
    frontends : sequence of Frontend
    inputs : sequence of np.ndarray
        As for :func:`fewshot.frontends.extract.extract_features`.
    device, batch_size, layers, precision
        As for :func:`~fewshot.frontends.extract.extract_features`.
    progress : callable, optional
        Called as ``progress(n_done, n_total)`` in network-clips (``len(frontends) · len(inputs)`` in all).

    Returns
    -------
    list of np.ndarray [shape=(n_clips, n_features), dtype=float32]
        One per front-end, in order.
    """
    problem = _list_problem(frontends)
    if problem is not None:
        raise ParameterError(problem)
    frontends = list(frontends)
    dev = resolve_device(device)
    check_batch_size(batch_size)
    check_precision(precision)
    precision = effective_precision(precision, dev)
    inputs = list(inputs)
    total = len(frontends) * len(inputs)
    size = stack_size(frontends[0], dev, precision)
    n_groups = -(-len(frontends) // size)  # balanced groups of at most `size` networks
    bounds = np.linspace(0, len(frontends), n_groups + 1).round().astype(int)
    out: list[np.ndarray] = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        group = frontends[lo:hi]
        base = len(out) * len(inputs)
        report = None if progress is None else (lambda d, _n, base=base: progress(base + d, total))
        if len(group) > 1 and stacking_problem(group) is None:
            stacked = _stacked_if_faster(group, inputs, dev)
            if stacked is not None:
                out += _extract_stacked(stacked, inputs, dev, batch_size, layers, report)
                continue
        for fe in group:
            base = len(out) * len(inputs)
            report = None if progress is None else (lambda d, _n, base=base: progress(base + d, total))
            out.append(extract_features(fe, inputs, device=dev, batch_size=batch_size, layers=layers,
                                        progress=report, precision=precision))
    return out


def _stacked_if_faster(group: list[Frontend], inputs: list[np.ndarray], dev: torch.device) -> StackedFrontend | None:
    """``group`` stacked, or None where one stacked pass is not faster than K single ones on this machine.

    Measured on the first clip (:func:`~fewshot.frontends.tuning.measure`, then
    :func:`~fewshot.frontends.tuning.race`) and remembered per architecture, K and length: the K networks
    one pass each, or one stacked pass; and, for thread-safe front-ends where torch has T > 1 threads, each
    of these with T clips at once, one thread each, since the single networks may then win where a stacked
    pass beats them one at a time (timbral large on 29-s clips). Stacking must be 5 % faster than the best
    way without it. Stacked without measuring when tuning is off (the static :func:`stack_size` rule chose to
    stack), off the CPU or with no clips."""
    if not inputs or not tuning_enabled() or dev.type != "cpu":
        return stack_frontends(group).to(dev)
    first = group[0]
    x = to_batch(first, prepare_clips(first, inputs[:1]), [0], dev)
    key = ("stack", architecture_key(first), len(group), length_bucket(x.shape[-2 if x.dim() == 4 else -1]),
           torch.get_num_threads())
    if tuned_choices(copy=False).get(key) is False:
        return None  # known not to pay: do not build the stacked network
    stacked = stack_frontends(group).to(dev)
    workers = parallel_workers(dev) if first.thread_safe else 1
    k = stacked.n_seeds
    # (stacked, clips at once) → (one call, seconds per clip for all K networks = seconds per call × factor)
    nets = {False: lambda: first.features(x), True: lambda: stacked.features(x)}
    ways = {(st, 1): (nets[st], k if not st else 1) for st in (False, True)}
    if workers > 1:
        for st in (False, True):
            ways[st, workers] = (lambda fn=nets[st]: run_parallel([[0]] * workers, lambda _: fn(), workers),
                                 (k if not st else 1) / workers)

    def decide() -> bool:
        times = {}
        with torch.inference_mode():
            for way, (fn, factor) in ways.items():
                if way[1] > 1:
                    with one_torch_thread():  # the one-thread formulation choices, made without a neighbour
                        nets[way[0]]()
                times[way] = measure(fn, dev)[0] * factor
            # the best way with K separate networks is the default stacking must beat
            apart = min((w for w in times if not w[0]), key=times.__getitem__)
            rivals = {w: t for w, t in times.items() if w == apart or w[0]}
            best = race(rivals, lambda w: sample(ways[w][0], dev, times[w] / ways[w][1], settle=w[1] > 1)
                        * ways[w][1], apart)[0]
        return bool(best[0])

    return stacked if remembered(key, decide) else None


def _extract_stacked(stacked: StackedFrontend, inputs: list[np.ndarray], dev: torch.device,
                     batch_size: int | None, layers: Sequence[str] | None, progress) -> list[np.ndarray]:
    """One stacked pass per batch of clips; ``progress(n_done, n_total)`` in network-clips."""
    frontends = stacked.frontends
    first = frontends[0]
    clips = prepare_clips(first, inputs)
    out = [np.empty((len(clips), first.n_features_of(layers)), dtype=np.float32) for _ in frontends]
    done = 0
    lock = threading.Lock()  # run() may be called from several threads (clips in parallel)

    def run(chunk: list[int]) -> None:
        nonlocal done
        feats = stacked.features(to_batch(first, clips, chunk, dev), layers=layers).float().cpu().numpy()
        with lock:
            for k, rows in enumerate(feats):
                out[k][chunk] = rows
            done += len(chunk)
            if progress is not None:
                progress(done * len(frontends), len(clips) * len(frontends))

    with torch.inference_mode():
        for length, idx in length_groups(clips):
            run_in_batches(batch_key(stacked.net, length, dev, "float32"), idx, run, batch_size=batch_size,
                           device=dev, default=first.default_batch_size(dev),
                           probe=lambda chunk: stacked.features(to_batch(first, clips, chunk, dev), layers=layers),
                           parallel=first.thread_safe)
    return out
