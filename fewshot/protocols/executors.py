"""Executors: where the units of an experiment are evaluated.

A unit (method × n × fold × run) is one independent task. The driver (the
``fewshot`` process) plans the units, hands them to an executor and writes each
unit's rows to ``results.csv`` as it comes back; only the driver ever writes the
run folder, so a crash of anything else costs at most the units in flight.

- :class:`LocalExecutor` (``--executor local``, the default) evaluates the units in
  the driver's process, one after the other, sharing one :class:`Context` (so a
  random network is drawn and its features extracted once per run).
- :class:`DaskExecutor` (``--executor dask``) sends each unit to a Dask cluster: an
  existing one (``--scheduler tcp://HOST:PORT``, e.g. started by dask-jobqueue on
  Slurm, see ``docs/scaling.md``) or a local one of ``--workers N`` processes. A
  worker rebuilds the :class:`Context` from the experiment's config (dataset spec,
  seed, clips dropped by ``--on-error skip``, the driver's cache folder) once and
  keeps it for the following units. The cache folder must be shared by the driver
  and the workers; it is safe under concurrent writers (atomic renames, checksums).
  A worker lost mid-task is replaced and its unit retried (Dask reschedules it; a
  unit whose workers keep dying is resubmitted up to ``max_retries`` times).

Threads. Each unit runs with ``torch.set_num_threads(k)`` and a BLAS limit of ``k``
threads (threadpoolctl), ``k = --threads``: by default every core for the local
executor, and the cores of a local cluster divided by its workers (1 on an existing
cluster) for Dask. Thread counts change speed, not results: features, classifiers
and subsets give identical rows for any ``k`` (tested), and the rows of a Dask run
equal a local run's apart from ``seconds`` and row order.

Dask is optional: ``pip install 'fewshot[dask]'`` (or ``pip install "dask[distributed]"``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..data.sampler import sample_subset
from ..exceptions import DataError, FewShotError, ParameterError
from ..methods import parse_method
from ..results.store import Unit
from . import evaluate

__all__ = [
    "UnitResult", "LocalExecutor", "DaskExecutor", "make_executor", "evaluate_unit", "check_subsets",
    "pinned_threads", "EXECUTORS",
]

EXECUTORS = ("local", "dask")
DASK_INSTALL = "pip install 'dask[distributed]>=2024.1' (or: pip install -e '.[dask]')"


@dataclass
class UnitResult:
    """What a finished unit sends back to the driver: its rows and its predictions."""

    unit: Unit
    rows: list[dict]
    predictions: dict[str, np.ndarray]


# ----------------------------------------------------------------- one unit
def evaluate_unit(ctx: evaluate.Context, unit: Unit) -> UnitResult:
    """Evaluate one unit in ``ctx``: draw its subset, predict the test fold, make its rows."""
    from .engine import unit_rows

    ds, cfg = ctx.dataset, ctx.config
    spec = parse_method(unit.method)
    subset = sample_subset(ds, unit.fold, unit.n, unit.run, seed=cfg.seed, cap=cfg.cap)
    start = time.perf_counter()
    y_pred = evaluate.predict_unit(ctx, spec, unit, subset)
    seconds = time.perf_counter() - start
    y_true = ds.y[subset.test]
    rows = unit_rows(cfg, ds, unit, y_true=y_true, y_pred=y_pred, n_train=len(subset.train),
                     capped=subset.capped, seconds=seconds)
    return UnitResult(unit, rows, {"test_index": subset.test, "train_index": subset.train,
                                   "y_true": y_true, "y_pred": y_pred})


def check_subsets(dataset, units: Iterable[Unit], *, seed: int, cap: bool) -> None:
    """Fail before any work when a requested n cannot be drawn (a class smaller than n without ``--cap``)."""
    seen = set()
    for u in units:
        if u.n == "all" or (u.n, u.fold) in seen:
            continue
        seen.add((u.n, u.fold))
        sample_subset(dataset, u.fold, u.n, 0, seed=seed, cap=cap)


@contextlib.contextmanager
def pinned_threads(k: int | None):
    """Run the block with ``k`` torch and BLAS threads (None: leave them as they are)."""
    if k is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(int(k))
    try:
        with threadpool_limits(limits=int(k)):
            yield
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------- local
class LocalExecutor:
    """Evaluate units in this process, in order, sharing the driver's :class:`Context`.

    Parameters
    ----------
    threads : int, optional
        Torch/BLAS threads per unit. None: as torch chose (every core).
    """

    name = "local"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def map(self, ctx: evaluate.Context, units: list[Unit], *, dropped: Iterable[str] = ()) -> Iterator[UnitResult]:
        """Yield each unit's result as soon as it is evaluated (``dropped`` is unused: ``ctx`` has no such clips)."""
        with pinned_threads(self.threads):
            for unit in units:
                yield evaluate_unit(ctx, unit)

    def describe(self) -> str:
        return "local" + (f", {self.threads} threads" if self.threads else "")


# ----------------------------------------------------------------- dask
@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to rebuild the experiment's :class:`Context`."""

    config: str  # ExperimentConfig.to_dict() as JSON
    dropped: tuple[str, ...]  # clip paths dropped by --on-error skip
    cache_dir: str | None
    dataset_id: str
    n_clips: int
    threads: int | None

    @property
    def digest(self) -> str:
        text = json.dumps([self.config, self.dropped, self.cache_dir, self.dataset_id, self.n_clips])
        return hashlib.sha256(text.encode()).hexdigest()


_local = threading.local()


def _worker_context(spec: WorkerSpec) -> evaluate.Context:
    """The Context of ``spec`` in this worker thread, built once and kept for the next units."""
    cached = getattr(_local, "context", None)
    if cached is not None and cached[0] == spec.digest:
        return cached[1]
    from dataclasses import replace

    from .._allocator import keep_heap
    from ..data.cache import ArrayCache
    from ..data.datasets import load_dataset
    from .config import ExperimentConfig
    from .engine import resolve_device

    keep_heap()  # as the CLI does for its own process
    cfg = ExperimentConfig(**json.loads(spec.config))
    ds = load_dataset(cfg.dataset, seed=cfg.seed, n_folds=cfg.n_folds)
    if spec.dropped:
        drop = set(spec.dropped)
        ds = replace(ds, clips=[c for c in ds.clips if c.path not in drop])
    if ds.id != spec.dataset_id or len(ds) != spec.n_clips:
        raise DataError(
            f"worker on {os.uname().nodename} sees dataset {ds.id!r} with {len(ds)} clips, the driver "
            f"{spec.dataset_id!r} with {spec.n_clips}; workers need the same dataset at the same path"
        )
    ctx = evaluate.Context(ds, cfg, ArrayCache(spec.cache_dir) if spec.cache_dir else None,
                           resolve_device(cfg.device))
    _local.context = (spec.digest, ctx)
    return ctx


def run_unit_on_worker(spec: WorkerSpec, unit: Unit) -> UnitResult:
    """The Dask task of one unit."""
    ctx = _worker_context(spec)
    with pinned_threads(spec.threads):
        return evaluate_unit(ctx, unit)


def _require_dask():
    try:
        import distributed
    except ImportError:
        raise ParameterError(f"--executor dask needs Dask, which is not installed; install it with: {DASK_INSTALL}") \
            from None
    return distributed


class DaskExecutor:
    """Evaluate units as Dask tasks on an existing cluster or a local one.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://HOST:PORT``). None starts a
        ``LocalCluster`` of ``workers`` processes with one thread each.
    workers : int, optional
        Workers of the local cluster. Default: 2, or the cores / ``threads``.
    threads : int, optional
        Torch/BLAS threads per unit. Default: cores / workers on a local cluster, 1 on a remote one.
    window : int, optional
        Units in flight at once. Default: 4 × the cluster's worker threads.
    max_retries : int, default=3
        Times a unit whose workers died (Dask's ``KilledWorker``) is resubmitted before giving up.
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None, threads: int | None = None,
                 window: int | None = None, max_retries: int = 3) -> None:
        _require_dask()
        if scheduler is not None and workers is not None:
            raise ParameterError("--scheduler and --workers exclude each other: --workers starts a local cluster")
        if workers is not None and workers < 1:
            raise ParameterError(f"--workers must be a positive int; got {workers}")
        cores = os.cpu_count() or 1
        self.scheduler = scheduler
        self.workers = workers or (None if scheduler else max(1, cores // (threads or 1)))
        self.threads = threads or (1 if scheduler else max(1, cores // self.workers))
        self.window = window
        self.max_retries = max_retries
        self._client = None
        self._cluster = None

    def describe(self) -> str:
        where = self.scheduler or f"local cluster of {self.workers} workers"
        return f"dask ({where}, {self.threads} threads per unit)"

    # -- cluster ---------------------------------------------------------------------------
    def _connect(self):
        distributed = _require_dask()
        if self._client is not None:
            return self._client
        import logging

        if self.scheduler:
            try:
                self._client = distributed.Client(self.scheduler, timeout="30s")
            except (OSError, TimeoutError) as err:
                raise ParameterError(f"--scheduler {self.scheduler}: cannot connect ({err}); is the scheduler "
                                     "running and reachable from here?") from None
        else:
            self._cluster = distributed.LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            self._client = distributed.Client(self._cluster)
        return self._client

    def close(self) -> None:
        """Disconnect, and stop the local cluster if this executor started one."""
        with contextlib.suppress(Exception):
            if self._client is not None:
                self._client.close()
        with contextlib.suppress(Exception):
            if self._cluster is not None:
                self._cluster.close()
        self._client = self._cluster = None

    # -- tasks -----------------------------------------------------------------------------
    def submit_all(self, fn: Callable, items: list, *args) -> Iterator[tuple[object, object]]:
        """Run ``fn(*args, item)`` for every item; yield ``(item, result)`` as tasks finish.

        At most ``window`` tasks are in flight; a task whose worker died is resubmitted up to
        ``max_retries`` times; any other error stops the run (remaining tasks are cancelled).
        """
        distributed = _require_dask()
        client = self._connect()
        window = self.window or max(4, 4 * sum(client.nthreads().values()))
        pending = list(reversed(items))
        tries: dict[int, int] = {}
        owner = {}
        queue = distributed.as_completed()

        def submit(item, index):
            fut = client.submit(fn, *args, item, pure=False)
            owner[fut.key] = (index, item)
            queue.add(fut)

        index = 0
        while pending and index < window:
            submit(pending.pop(), index)
            index += 1
        try:
            for fut in queue:
                i, item = owner.pop(fut.key)
                if fut.status == "error":
                    err = fut.exception()
                    if isinstance(err, distributed.KilledWorker) and tries.get(i, 0) < self.max_retries:
                        tries[i] = tries.get(i, 0) + 1
                        submit(item, i)
                        continue
                    if isinstance(err, distributed.KilledWorker):
                        raise FewShotError(f"{item}: its worker died {tries.get(i, 0) + 1} times "
                                           "(out of memory?); results so far are kept") from None
                    raise err
                result = fut.result()
                fut.release()
                yield item, result
                if pending:
                    submit(pending.pop(), index)
                    index += 1
        finally:
            for fut in list(queue.futures):
                with contextlib.suppress(Exception):
                    fut.cancel()

    def map(self, ctx: evaluate.Context, units: list[Unit], *, dropped: Iterable[str] = ()) -> Iterator[UnitResult]:
        """Yield each unit's result as its task finishes (in completion order)."""
        if not units:
            return
        cache_dir = str(ctx.cache.root.resolve()) if ctx.cache is not None else None
        spec = WorkerSpec(json.dumps(ctx.config.to_dict()), tuple(sorted(dropped)), cache_dir, ctx.dataset.id,
                          len(ctx.dataset), self.threads)
        try:
            for _, result in self.submit_all(run_unit_on_worker, list(units), spec):
                yield result
        finally:
            self.close()


def make_executor(executor: str | None = "local", *, scheduler: str | None = None, workers: int | None = None,
                  threads: int | None = None):
    """An executor from the CLI options ``--executor``, ``--scheduler``, ``--workers``, ``--threads``."""
    executor = (executor or "local").strip().lower()
    if executor not in EXECUTORS:
        raise ParameterError(f"--executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    if threads is not None and threads < 1:
        raise ParameterError(f"--threads must be a positive int; got {threads}")
    if executor == "local":
        if scheduler or workers:
            raise ParameterError("--scheduler and --workers need --executor dask")
        return LocalExecutor(threads)
    return DaskExecutor(scheduler, workers, threads)
