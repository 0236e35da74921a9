"""Measured choices for feature extraction: which formulation and batch size run fastest on the machine at hand.

Why measure instead of a table: the fastest formulation of a random CNN depends on
the CPU. On an AVX-512 Zen 4 host oneDNN's direct convolutions ran at twice MKL's
sgemm, so the conv formulations won everywhere until the other formulations' products
also ran through oneDNN (``_matmul.py``); on an AVX2 host of the same family
the GEMM formulation of the wide timbral front-end was 1.25× faster than the conv
one, and the mel-channel formulation of the narrow timbral front-end lost to the
plain conv (0.87×). A table tuned on one CPU made extraction slower than the
plain definition on the other (docs/performance.md).

So the first time a front-end architecture meets an input shape, each candidate
formulation (:func:`fewshot.frontends._fast.formulations`) runs on that very batch
— a warm-up call (oneDNN primitive creation, cached kernel transforms), then
timed calls, short ones repeated for at least 20 ms (:func:`measure`); candidates
within 2× of the fastest, and the default within 3×, are timed twice more,
interleaved (:func:`race`), since one busy moment of a shared host can slow any
single sample, and the two leaders up to four times more while within 15 % —
and the fastest by median is remembered for the process (an alternative to the first,
default formulation must be 5 % faster, so noise never picks a slower path); its
output is returned, so the features are never computed by a path other than one of the exact formulations
(they agree within float tolerance, tested in ``tests/test_perf_paths.py``).
A candidate whose first timed call is over 3× the best so far is not timed again.
The CPU batch size (1 or :data:`BATCH_CANDIDATE` clips per pass) and whether clips
run in parallel are measured the same way on the first clips of an extraction; where
that race is close, its two leaders are then timed on the extraction's own clips,
features kept, and the faster by median is kept for good (:func:`run_in_batches`).

Choices are keyed by architecture (parameter shapes, so every seed of one
front-end shares them), input shape (length rounded to a power of two), device,
precision and torch's thread count. ``FEWSHOT_TUNE=off`` in the environment (or
:func:`set_tuning`) turns measuring off: the formulations measured fastest on the
development CPUs are used (``use_gemm`` in ``_fast.py``) and batch 1 on CPU.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence

import torch

from .parallel import one_torch_thread, parallel_workers, run_parallel

__all__ = ["tuning_enabled", "set_tuning", "tuned_choices", "clear_tuned", "pick_fastest", "run_in_batches",
           "architecture_key", "measure", "race", "sample", "remembered", "BATCH_CANDIDATE"]

#: The batch size tried against 1 on CPU (batches of 16 were measured slower per clip on 29-s clips).
BATCH_CANDIDATE = 4

_STATE = {"enabled": os.environ.get("FEWSHOT_TUNE", "on").strip().lower() not in ("off", "0", "false", "no")}
_CHOICES: dict[tuple, object] = {}
#: A candidate whose first timed call is slower than this × the best so far is not timed again.
_DROP_FACTOR = 3.0
#: An alternative must take at most this fraction of the default's time to be chosen (the default: the first
#: formulation, which is the plain computation reordered; batch 1; one network per pass), so that timer noise
#: never makes extraction slower than the plain definition.
MARGIN = 0.95
#: A timed sample lasts at least this long (short calls repeated, at most _MAX_CALLS times).
MIN_SAMPLE = 0.02
_MAX_CALLS = 200
#: Candidates within this factor of the fastest after one round (the default: within _DROP_FACTOR) are timed
#: again (a close race; one busy moment of this 2-vCPU VM slowed single samples by up to 2×) ...
_CLOSE = 2.0
#: ... this many more times, interleaved (two: one busy moment of the host rarely covers both samples).
_ROUNDS = 2
#: While the leader's held time is within this factor of the runner-up's, the two are timed again ...
_TIE = 1.15
#: ... up to this many rounds in all: single samples on the 2-vCPU VM moved by 10–30 %, so two rounds left
#: close calls to chance. It does not settle every one: vertical_7x86 small on 29-s clips still made four
#: different choices in four extractions, since on its first clips the ways it weighs read the same
#: (23–28.5 ms per clip) although two clips at once is ~20 % faster over a whole extraction (seventh pass in
#: docs/performance.md).
_MAX_ROUNDS = 6
#: A way of running clips (batch size, clips in parallel) whose runner-up reads within this factor of it is
#: refined on the extraction's own clips (:func:`run_in_batches`): the probes' samples left such races to
#: chance (sample_level small on 29-s clips chose two clips at once in one run and batches of four one at a
#: time in the next, 1.81× against 1.52× the plain pass; docs/performance.md, eighth and ninth passes) ...
_REFINE_CLOSE = 1.3
#: ... over this many rounds, each an untimed unit (which settles the threads) and a timed block of real
#: clips per finalist, their features kept; the refined choice is the median of these blocks alone (the
#: probes may read differently from the extraction itself) ...
_REFINE_ROUNDS = 5
#: ... a round running only while the clips after it number at least this many times all those refined so far
#: in the call, so that at most a quarter of an extraction's clips go to refining (half of them to the leader);
#: small extractions leave the race open for a later, larger one.
_REFINE_REST = 3
_OPEN: dict[tuple, dict] = {}


def tuning_enabled() -> bool:
    """Whether formulations and batch sizes are measured (default; ``FEWSHOT_TUNE=off`` turns it off)."""
    return _STATE["enabled"]


def set_tuning(enabled: bool) -> None:
    """Turn measuring on or off for this process (forgets earlier choices)."""
    _STATE["enabled"] = bool(enabled)
    clear_tuned()


def tuned_choices(copy: bool = True) -> dict[tuple, object]:
    """The choices made so far in this process: key → candidate name, batch size or stacking (a copy, unless
    ``copy=False``: the live mapping, for lookups on every forward pass)."""
    return dict(_CHOICES) if copy else _CHOICES


def clear_tuned() -> None:
    """Forget every choice, the matrix-product backend included (the next extraction measures again)."""
    from ._matmul import set_backend

    _CHOICES.clear()
    _OPEN.clear()
    set_backend(None)


def remembered(key: tuple, decide: Callable[[], object]) -> object:
    """The choice remembered for ``key``, or ``decide()`` (a measurement), remembered."""
    if key not in _CHOICES:
        _CHOICES[key] = decide()
    return _CHOICES[key]


def architecture_key(module: torch.nn.Module) -> tuple:
    """What determines a front-end's speed: class, name and every parameter's shape (not the seed)."""
    sig = module.__dict__.get("_architecture_key")
    if sig is None:
        shapes = tuple(tuple(p.shape) for p in module.parameters())
        sig = (type(module).__name__, getattr(module, "name", ""), shapes)
        module.__dict__["_architecture_key"] = sig
    return sig


def length_bucket(n: int) -> int:
    """``n`` rounded to the nearest power of two (choices hold across nearby lengths)."""
    return 1 << max(0, round(math.log2(max(n, 1))))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, calls: int = 1) -> tuple[float, object]:
    """Seconds per call of ``calls`` consecutive calls, and the last call's result."""
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        out = fn()
    _sync(device)
    return (time.perf_counter() - t0) / calls, out


def measure(fn: Callable[[], object], device: torch.device, *, give_up: float = math.inf) -> tuple[float, object]:
    """Best seconds per call of ``fn`` and its last result: a warm-up call (one-time costs such as oneDNN
    primitives or cached kernel spectra are not the formulation's speed), one timed call, and, unless that
    call took over ``give_up`` seconds, one more sample of at least :data:`MIN_SAMPLE` seconds (short calls
    are repeated, so sub-millisecond formulations are compared on more than timer noise)."""
    fn()
    first, out = _timed(fn, device)
    if first > give_up:
        return first, out
    again, out = _timed(fn, device, _sample_calls(first))
    return min(first, again), out


def sample(fn: Callable[[], object], device: torch.device, seconds_per_call: float, *,
           settle: bool = False) -> float:
    """Seconds per call of one more timed sample of ``fn`` (``seconds_per_call``: an earlier measurement,
    which sets how many calls make :data:`MIN_SAMPLE` seconds).

    ``settle=True`` makes one untimed call first. Use it for clips run in parallel (one torch thread
    each) when the call before may have used several torch threads: OpenMP's idle threads then spin for
    a few milliseconds and take a core from the workers. On the 2-vCPU VM, two temporal small clips at
    once took 2.35 ms per clip right after a two-thread pass and 1.25 ms after another parallel call
    (1.26 ms with ``GOMP_SPINCOUNT=0``), so unsettled samples made a race favour one clip at a time.
    Extraction pays this once per :func:`~fewshot.frontends.parallel.run_parallel` call, over all its clips.
    """
    if settle:
        fn()
    return _timed(fn, device, _sample_calls(seconds_per_call))[0]


def _sample_calls(seconds_per_call: float) -> int:
    """Calls that make a timed sample of at least :data:`MIN_SAMPLE` seconds (at most ``_MAX_CALLS``)."""
    return max(1, min(_MAX_CALLS, math.ceil(MIN_SAMPLE / max(seconds_per_call, 1e-7))))


def pick_fastest(key: tuple, candidates: dict[str, Callable[[], object]], device: torch.device) -> object:
    """Run the remembered choice for ``key``, or measure every candidate and remember the fastest.

    Each candidate is measured once (:func:`measure`); the close ones are timed twice more,
    interleaved, and are compared by the median of their samples (:func:`race`; a tie within 15 % is timed
    up to four more times). The first candidate is the default: the others must beat it by 5 % (:data:`MARGIN`).

    Parameters
    ----------
    key : tuple
        What the choice depends on (:func:`architecture_key`, input shape, device, ...).
    candidates : dict of str to callable
        Name → a function of no arguments computing the same result by one formulation.
    device : torch.device
        Where the candidates run (CUDA is synchronised around each timed call).

    Returns
    -------
    object
        The chosen candidate's result (from its last call when measuring).
    """
    choice = _CHOICES.get(key)
    if choice in candidates:
        return candidates[choice]()
    if len(candidates) == 1 or not tuning_enabled():
        return next(iter(candidates.values()))()
    default = next(iter(candidates))
    first: dict[str, float] = {}
    best_name, best_out = None, None
    for name, fn in candidates.items():
        t, out = measure(fn, device, give_up=_DROP_FACTOR * min(first.values(), default=math.inf))
        first[name] = t
        if best_name is None or _held(name, t, default) < _held(best_name, first[best_name], default):
            best_name, best_out = name, out
        del out
    outs = {}

    def timer(name: str) -> float:
        t, outs[name] = _timed(candidates[name], device, _sample_calls(first[name]))
        return t

    choice, _ = race(first, timer, default)
    _CHOICES[key] = choice
    return outs[choice] if choice in outs else best_out


def _held(name: object, seconds: float, default: object) -> float:
    """A candidate's time as compared: alternatives to the default must beat it by 5 % (:data:`MARGIN`)."""
    return seconds if name == default else seconds / MARGIN


def race(first: dict, timer: Callable[[object], float], default: object) -> tuple[object, dict]:
    """The fastest candidate after re-timing the close ones, interleaved; and every candidate's median seconds.

    ``first`` maps each candidate to its first measurement (seconds per unit of work); ``timer(name)`` times
    one more sample of it. The finalists are the candidates within ``_CLOSE`` (2×) of the fastest and the
    default if within ``_DROP_FACTOR`` (3×) of it, since a busy moment of the host can slow any one
    measurement. They are timed :data:`_ROUNDS` more times, one after the other, and compared by the median
    of their samples (the first measurement included); while the two leaders are then within 15 %
    (:data:`_TIE`), those two are timed again, up to :data:`_MAX_ROUNDS` rounds in all.
    Alternatives must beat the default by 5 % (:data:`MARGIN`), so noise does not pick a slower path.

    Why the median, not the best sample: first measurements are taken one candidate after the other, and
    this 2-vCPU VM runs fast and slow for seconds at a time, so a candidate first measured in a fast spell
    kept a time no later sample came near. vertical_7x86 small (29-s clips, three seeds) kept its
    separate networks on a first 44.3 ms although they then read 48.7–64.0 ms in six interleaved rounds,
    against 43.5–52.4 ms for two stacked passes at once (docs/performance.md, eighth pass).
    """
    samples = {name: [t] for name, t in first.items()}

    def held(name: object) -> float:
        return _held(name, statistics.median(samples[name]), default)

    best = min(first, key=lambda n: _held(n, first[n], default))
    lead = _held(best, first[best], default)
    close = [n for n in first
             if _held(n, first[n], default) < (_DROP_FACTOR if n == default else _CLOSE) * lead]
    if len(close) > 1:
        for _ in range(_ROUNDS):
            for name in close:
                samples[name].append(timer(name))
        for _ in range(_MAX_ROUNDS - _ROUNDS):  # a tie between the two leaders: more samples of both
            pair = sorted(close, key=held)[:2]
            if held(pair[1]) >= _TIE * held(pair[0]):
                break
            for name in pair:
                samples[name].append(timer(name))
        best = min(close, key=held)
    return best, {name: statistics.median(times) for name, times in samples.items()}


def run_in_batches(key: tuple, indices: Sequence[int], run: Callable[[list[int]], None], *,
                   batch_size: int | None, device: torch.device, default: int,
                   probe: Callable[[list[int]], object] | None = None, parallel: bool = False) -> None:
    """Call ``run(chunk)`` over ``indices`` in chunks (clips of one length).

    The chunk size is ``batch_size`` when given; on CUDA, with tuning off or
    without a ``probe``, ``default``; on CPU the remembered choice for ``key``, or,
    with at least ``2 · BATCH_CANDIDATE`` clips, measured: ``probe`` (the same
    computation as ``run`` without its side effects) on the first clip and on the
    first :data:`BATCH_CANDIDATE` clips (:func:`measure`, then :func:`race`); the larger
    batch is kept if it is at least 5 % faster per clip.

    With ``parallel=True`` (``run`` is safe to call from several threads) and no
    ``batch_size``, on a CPU where torch has T > 1 threads and with at least 2 · T
    clips, two more candidates are measured the same way: T chunks at once, one
    thread each (:mod:`fewshot.frontends.parallel`), of one clip or of the chosen
    batch size (given 2 · T · size clips), each timed after a warm-up on one thread
    (which makes the one-thread formulation choices). The choice, ``(T, chunk)`` or
    ``(1, size)``, is kept under ``("parallel", *key[1:])``: T at once must be at
    least 5 % faster per clip than the chosen batch size on T threads.

    Refinement on real clips: where the last of these races was close (runner-up within
    ``_REFINE_CLOSE`` = 1.3× of the leader), its two leaders are timed again on the
    clips being extracted, whose features are kept (:func:`_refine`): per round, one
    untimed unit and one timed block of each, for ``_REFINE_ROUNDS`` = 5 rounds, which
    may span several calls; a round runs only while the clips after it are at least 3×
    those refined in the call so far (at most a quarter of the call's clips). Then the
    leader by the median of its blocks is kept for good (with the 5 % margin for
    alternatives to the default).
    """
    idx = list(indices)
    size = batch_size
    workers = 1
    if size is None:
        size = default
        measuring = device.type == "cpu" and tuning_enabled() and probe is not None
        per_clip: dict[str, float] = {}
        medians: dict[tuple, dict] = {}  # key → every candidate's median, for a race run in this call
        if measuring and (key in _CHOICES or len(idx) >= 2 * BATCH_CANDIDATE):
            def decide() -> int:
                first = {n: measure(lambda n=n: probe(idx[:n]), device)[0] / n for n in (1, BATCH_CANDIDATE)}
                best, medians[key] = race(first, lambda n: sample(lambda: probe(idx[:n]), device, first[n] * n) / n, 1)
                per_clip["best"] = medians[key][best]
                return best

            size = int(remembered(key, decide))
        batch = size  # the batch-size choice: the parallel race's default is (1, batch)
        threads = parallel_workers(device)
        pkey = ("parallel", *key[1:])
        in_parallel = measuring and parallel and threads > 1
        if in_parallel and (pkey in _CHOICES or len(idx) >= 2 * threads):
            def decide_parallel() -> tuple[int, int]:
                first = {(1, size): per_clip.get("best") or measure(lambda: probe(idx[:size]), device)[0] / size}
                for chunk in sorted({1, size}):  # one clip per thread, or the chosen batch per thread
                    if len(idx) >= 2 * threads * chunk:
                        first[threads, chunk] = _parallel_time(probe, idx[:threads * chunk], chunk, device)

                def timer(choice: tuple[int, int]) -> float:
                    n, chunk = choice[0] * choice[1], choice[1]
                    chunks = [idx[s:s + chunk] for s in range(0, n, chunk)]
                    work = (lambda: probe(chunks[0])) if choice[0] == 1 else \
                        (lambda: run_parallel(chunks, probe, len(chunks)))
                    return sample(work, device, first[choice] * n, settle=choice[0] > 1) / n

                best, medians[pkey] = race(first, timer, (1, size))  # T at once must beat one at a time by 5 %
                return best

            at_once, chunk = remembered(pkey, decide_parallel)
            if at_once > 1:  # else the batch-size choice stands (it may have been measured after this one)
                workers, size = at_once, chunk
        # the last race refines: the parallel one where clips may run in parallel, else the batch size
        last = pkey if in_parallel else key
        if last in medians:
            _open_refinement(last, medians[last], (1, batch) if last == pkey else 1)
        if measuring and last in _OPEN:
            idx = _refine(last, idx, run, device)
            choice = _CHOICES[last]
            if last == key:
                size = choice
            elif choice[0] > 1:
                workers, size = choice
            else:
                workers, size = 1, batch
    _run_way(idx, run, workers, size)


def _run_way(clips: list[int], run: Callable[[list[int]], None], workers: int, size: int) -> None:
    """``run`` over ``clips`` in chunks of ``size``, ``workers`` chunks at once (one thread each) or in order."""
    chunks = [clips[s:s + size] for s in range(0, len(clips), size)]
    if workers > 1:
        run_parallel(chunks, run, workers)
        return
    for chunk in chunks:
        run(chunk)


def _as_way(choice: object) -> tuple[int, int]:
    """A batch-size or parallel choice as ``(chunks at once, clips per chunk)``."""
    return choice if isinstance(choice, tuple) else (1, int(choice))


def _open_refinement(key: tuple, medians: dict, default: object) -> None:
    """Keep the two leaders of a race just run (``medians``: candidate → median seconds per clip, from
    :func:`race`) for :func:`_refine`, if the runner-up is within ``_REFINE_CLOSE`` of the leader (the 5 %
    margin counted)."""
    if len(medians) < 2:
        return
    held = {w: _held(w, t, default) for w, t in medians.items()}
    lead, second = sorted(held, key=held.__getitem__)[:2]
    if held[second] < _REFINE_CLOSE * held[lead]:
        _OPEN[key] = {"samples": {lead: [], second: []}, "default": default, "rounds": 0}


def _refine(key: tuple, clips: list[int], run: Callable[[list[int]], None], device: torch.device) -> list[int]:
    """Refinement rounds of the open race ``key`` on the first of ``clips``; the clips not yet run.

    Each round runs, for each of the two leaders in turn (the order alternating between
    rounds), one untimed unit of clips (its chunks at once, so that threads left spinning by
    the other way do not count) and then a timed block of ``lcm`` of both units, and adds
    the block's seconds per clip to that leader's samples. Every clip is run once, by one
    of the two ways, so all features are kept. After each round the leader by the held
    median of its blocks becomes the choice; after ``_REFINE_ROUNDS`` the race is closed.
    """
    state = _OPEN[key]
    samples, default = state["samples"], state["default"]
    ways = list(samples)
    units = [_as_way(w)[0] * _as_way(w)[1] for w in ways]
    block = math.lcm(*units)
    per_round = sum(units) + block * len(ways)
    pos = 0
    # a round runs only if the clips left after it are at least 3× those this call has refined
    while state["rounds"] < _REFINE_ROUNDS and len(clips) - pos - per_round >= _REFINE_REST * (pos + per_round):
        turn = list(zip(ways, units, strict=True))
        for way, unit in turn if state["rounds"] % 2 == 0 else turn[::-1]:
            at_once, size = _as_way(way)
            _run_way(clips[pos:pos + unit], run, at_once, size)
            pos += unit
            blk = clips[pos:pos + block]
            samples[way].append(_timed(lambda c=blk, w=at_once, n=size: _run_way(c, run, w, n), device)[0] / block)
            pos += block
        state["rounds"] += 1
        _CHOICES[key] = min(ways, key=lambda w: _held(w, statistics.median(samples[w]), default))
    if state["rounds"] >= _REFINE_ROUNDS:
        del _OPEN[key]
    return clips[pos:]


def _parallel_time(probe: Callable[[list[int]], object], clips: list[int], chunk: int,
                   device: torch.device) -> float:
    """Seconds per clip of ``probe`` on ``clips`` in chunks of ``chunk``, the chunks run at once, one thread each
    (after a warm-up on one thread, alone, so that the one-thread formulation choices are measured without a
    neighbour)."""
    with one_torch_thread():
        probe(clips[:chunk])
    chunks = [clips[s:s + chunk] for s in range(0, len(clips), chunk)]
    return measure(lambda: run_parallel(chunks, probe, len(chunks)), device)[0] / len(clips)
