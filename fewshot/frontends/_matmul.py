"""Matrix products of the GEMM-shaped formulations: MKL's sgemm or oneDNN's, whichever runs faster here.

Why. ``torch.matmul`` on float32 CPU tensors calls MKL's sgemm. On AMD CPUs MKL runs
its AVX2 kernels, while oneDNN (the library behind PyTorch's CPU convolutions) uses
AVX-512 where the CPU has it. On the 2-vCPU AMD EPYC host with AVX-512 (2026-12-02),
a 2,048 × 512 × 256 float32 product ran at 173 GFLOP/s through MKL and 423 GFLOP/s
through oneDNN (two threads; 183 and 421 GFLOP/s as two one-thread workers), with
the same float32 results (max relative difference ~1e-6). Products under ~2 M
multiply-adds lost (64 × 96 × 96: 114 against 67 GFLOP/s: oneDNN's per-call cost).
The weight matrix is made contiguous first: as a column slice of a wider matrix it
sent oneDNN to a reference kernel ~1,000× slower (4,096 × 86 × 256: 1.08 s, against
1.06 ms contiguous).
So the GEMM, Winograd, mel-Winograd and FFT formulations (``_gemmconv``, ``_winograd``,
``_melwinograd``, ``_fftconv``) multiply through :func:`mm` / :func:`bmm`, which use oneDNN's
float32 inner product (``torch.ops.mkldnn._linear_pointwise``, PyTorch's own op for
its CPU linear-layer fusions) for large products where it was measured faster on
this machine (:func:`backend`), and ``torch.matmul`` otherwise.

The backend is measured once per process on a 1,024 × 256 × 256 product (five
interleaved samples of each; oneDNN must be 1.2× faster by median; measured again after
:func:`~fewshot.frontends.tuning.clear_tuned`), and not measured with tuning off
(``FEWSHOT_TUNE=off``: ``torch.matmul``). bfloat16 products always use
``torch.matmul`` (PyTorch already sends them to oneDNN).
"""

from __future__ import annotations

import statistics
import threading
import time

import torch

__all__ = ["mm", "bmm", "backend", "set_backend"]

#: Products smaller than this many multiply-adds use torch.matmul (oneDNN's per-call cost dominates them).
MIN_MACS = 1 << 21
#: oneDNN must be this many times faster than MKL by median to be used.
_FASTER = 1.2
_STATE: dict[str, str | None] = {"backend": None}
_LOCK = threading.Lock()  # clip workers may reach the first product at once: measure once


def _onednn_op():
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return None


_LINEAR = _onednn_op()


def set_backend(name: str | None) -> None:
    """Force ``"onednn"`` or ``"torch"`` for this process, or ``None`` to measure again at next use."""
    if name not in (None, "onednn", "torch"):
        raise ValueError(f"matmul backend must be 'onednn', 'torch' or None; got {name!r}")
    if name == "onednn" and _LINEAR is None:
        raise ValueError("matmul backend 'onednn' is not available: this PyTorch build has no oneDNN linear op")
    _STATE["backend"] = name


def backend() -> str:
    """``"onednn"`` or ``"torch"``: the backend of :func:`mm` for large float32 CPU products in this process."""
    if _STATE["backend"] is None:
        with _LOCK:
            if _STATE["backend"] is None:
                _STATE["backend"] = _measure()
    return _STATE["backend"]


def _measure() -> str:
    from .tuning import tuning_enabled

    if _LINEAR is None or not tuning_enabled():
        return "torch"
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1024, 256, generator=g)
    w = torch.randn(256, 256, generator=g)
    ways = {"torch": lambda: torch.matmul(a, w), "onednn": lambda: _LINEAR(a, w.t(), None, "none", [], "")}
    try:
        ref, got = ways["torch"](), ways["onednn"]()
    except RuntimeError:  # the op exists but refuses these tensors: never use it
        return "torch"
    if not torch.allclose(ref, got, rtol=1e-4, atol=1e-3):
        return "torch"
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(5):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            for _ in range(10):
                fn()
            times[name].append(time.perf_counter() - t0)
    faster = statistics.median(times["torch"]) > _FASTER * statistics.median(times["onednn"])
    return "onednn" if faster else "torch"


def _use_onednn(a: torch.Tensor, m: int, k: int, n: int) -> bool:
    return (a.dtype == torch.float32 and a.device.type == "cpu" and m * k * n >= MIN_MACS
            and backend() == "onednn")


def mm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None, *,
       out: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b (+ bias)`` for ``a [M, K]`` (any strides) and ``b [K, N]`` (a weight matrix: N is a few thousand at
    most); float32 results within rounding of ``torch.matmul`` (oneDNN and MKL sum in different orders).
    ``out`` (``[M, N]``) is written when the product runs through ``torch.matmul``; use the returned tensor."""
    m, k = a.shape
    n = b.shape[1]
    if _use_onednn(a, m, k, n):
        return _LINEAR(a, b.contiguous().t(), bias, "none", [], "")
    if bias is None:
        return torch.matmul(a, b, out=out) if out is not None else torch.matmul(a, b)
    return torch.addmm(bias, a, b, out=out) if out is not None else torch.addmm(bias, a, b)


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(a, b)`` for ``a [B, M, K]``, ``b [B, K, N]``: one oneDNN product per batch entry where each is
    large enough and oneDNN is the faster backend."""
    nb, m, k = a.shape
    n = b.shape[2]
    if not _use_onednn(a, m, k, n):
        return torch.bmm(a, b)
    b = b.contiguous()
    out = torch.empty(nb, m, n, dtype=a.dtype, device=a.device)
    for i in range(nb):
        out[i] = _LINEAR(a[i], b[i].t(), None, "none", [], "")
    return out
