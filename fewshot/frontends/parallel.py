"""Clips in parallel, one core each: a CPU extraction mode measured against PyTorch's intra-op threads.

Why. A batch-1 forward pass of a narrow random CNN is a chain of small operations
(convolutions over 20–40 channels, pools, means) that PyTorch's intra-op threads split
poorly: on the 2-vCPU development VM the plain sample_level small pass ran no faster on
two threads than on one. Two clips at once, each on one thread, keep both cores busy.
Some networks split well over threads instead (temporal's one long-kernel GEMM; some
wide layers), so, like the formulation and the batch size, the mode is measured on the
first clips of an extraction (:func:`fewshot.frontends.tuning.run_in_batches`) and used
only where it is faster. With it the two-thread extraction table on 5-s clips went from
1.70× to 2.04–2.07× the plain forward pass at batch 1 (geometric mean of two runs;
docs/performance.md, "fourth pass", which also gives the smaller gains on 29-s clips).

The workers are Python threads: PyTorch releases the GIL inside its operators, and with
``torch.set_num_threads(1)`` each operator runs on the thread that calls it. Every
worker enters the caller's inference / grad mode (both are thread-local). The function
run by the workers must be safe to call concurrently (the extraction functions store
rows and report progress under a lock).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

__all__ = ["run_parallel", "parallel_workers", "one_torch_thread"]

_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def parallel_workers(device: torch.device) -> int:
    """How many clips could run at once, one core each: torch's thread count on CPU, else 1."""
    return torch.get_num_threads() if device.type == "cpu" else 1


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block with one torch thread (torch's setting is per process; restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pool(workers: int) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads kept for the process (recreated after a fork: its threads do not survive)."""
    key = (os.getpid(), workers)
    with _LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="fewshot-clip")
        return _POOLS[key]


def run_parallel(chunks: Sequence[list[int]], run: Callable[[list[int]], object], workers: int) -> None:
    """Call ``run(chunk)`` for every chunk on ``workers`` threads at once, torch limited to one thread each.

    Chunks are handed out one at a time (clips of different cost balance out). The first
    exception raised by ``run`` is re-raised here once the chunks already started have
    finished; chunks not started are cancelled. Torch's thread count is restored on return.

    Parameters
    ----------
    chunks : sequence of list of int
        Clip indices, one list per call.
    run : callable
        ``run(chunk)``; must be safe to call from several threads at once.
    workers : int
        Threads (≥ 2; 1 runs the chunks in order on this thread).
    """
    if workers < 2 or len(chunks) < 2:
        for chunk in chunks:
            run(chunk)
        return
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def work(chunk: list[int]) -> None:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            run(chunk)

    futures = []
    with one_torch_thread():
        try:
            pool = _pool(workers)
            futures = [pool.submit(work, chunk) for chunk in chunks]
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            for future in futures:  # let started chunks finish before torch's threads change back
                if not future.cancelled():
                    future.exception()
            raise
