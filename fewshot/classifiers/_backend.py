"""Array backend of the fast grids: numpy/scipy on the CPU, torch on any other device.

On a CPU, the grids' many small operations (inner folds of 10–50 clips) are faster in
numpy: torch's OpenMP pool costs 15–40 ms per operation when the cores are shared
(measured with load ≈ 4× the core count), numpy's BLAS nothing noticeable. On ``cuda``
(or ``mps``) the same code runs in torch on the device. Everything is float64, so both
paths select the same hyper-parameters as the plain libsvm / numpy grids.

Small problems (≤ 512 training clips) run with one BLAS thread
(:func:`blas_threads_for`), and factorizations (Cholesky, SVD) always do: on the shared
2-core machine, once torch was imported and the cores were busy, a multi-threaded OpenBLAS
spent 33 ms on a 39 × 30 by 30 × 2,500 product (0.1 ms on one thread) and 0.6 s on a
1,000 × 1,000 Cholesky (0.01 s on one thread). Large products keep every BLAS thread.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.linalg
import scipy.special
import torch
from threadpoolctl import ThreadpoolController

__all__ = ["Backend", "blas_threads_for", "SMALL_PROBLEM"]

SMALL_PROBLEM = 512


_CONTROLLER: list[ThreadpoolController] = []


def _one_blas_thread():
    # one controller, made on first use (scanning the loaded libraries costs ~1 ms a time)
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def blas_threads_for(n_samples: int):
    """Context limiting BLAS to one thread for ≤ :data:`SMALL_PROBLEM` clips (no-op above)."""
    return _one_blas_thread() if n_samples <= SMALL_PROBLEM else contextlib.nullcontext()


class Backend:
    """The few array operations the svm and elm grids need, on one device."""

    def __init__(self, device="cpu") -> None:
        self.device = torch.device(device)
        self.is_torch = self.device.type != "cpu"

    def asarray(self, a):
        if self.is_torch:
            return torch.as_tensor(np.asarray(a), dtype=torch.float64, device=self.device)
        return np.asarray(a, dtype=np.float64)

    def numpy(self, a) -> np.ndarray:
        return np.ascontiguousarray(a.cpu().numpy() if self.is_torch else a)

    def eye(self, n: int):
        return torch.eye(n, dtype=torch.float64, device=self.device) if self.is_torch else np.eye(n)

    def zeros(self, *shape: int):
        if self.is_torch:
            return torch.zeros(*shape, dtype=torch.float64, device=self.device)
        return np.zeros(shape)

    def exp(self, a):
        return torch.exp(a) if self.is_torch else np.exp(a)

    def activation(self, name: str, a):
        if name == "relu":
            return torch.relu(a) if self.is_torch else np.maximum(a, 0.0)
        if name == "tanh":
            return torch.tanh(a) if self.is_torch else np.tanh(a)
        return torch.sigmoid(a) if self.is_torch else scipy.special.expit(a)

    def pinv(self, H, rtol: float):
        """Moore–Penrose pseudo-inverse, singular values below ``rtol·σ_max`` cut."""
        if self.is_torch:
            return torch.linalg.pinv(H, rtol=rtol)
        with _one_blas_thread():
            return scipy.linalg.pinv(H, atol=0.0, rtol=rtol, check_finite=False)

    def spd_solve(self, M, R):
        """Solve ``M X = R`` for symmetric positive definite ``M`` (Cholesky; pinv if it fails)."""
        if self.is_torch:
            L, info = torch.linalg.cholesky_ex(M)
            if int(info) == 0:
                return torch.cholesky_solve(R, L)
            return torch.linalg.pinv(M, hermitian=True) @ R
        with _one_blas_thread():
            try:
                factor = scipy.linalg.cho_factor(M, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                return scipy.linalg.pinvh(M, check_finite=False) @ R
            return scipy.linalg.cho_solve(factor, R, check_finite=False)
