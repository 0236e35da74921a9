"""Fast formulations of the random-weight CNNs; ``Frontend.forward`` runs the fastest one for the machine at hand.

Every front-end has up to five exact formulations (:func:`formulations`): its own
convolutions with pooling / the max over frequency before the monotonic
activation (``"conv"``), the mel bands as input channels of a conv1d (``"mel"``,
the 7×96 vertical filter and the timbral branches), patch matrices × kernels
(``"gemm"``, ``_gemmconv.py``), the FFT for wide deep layers (``"fft"``, ``_fftconv.py``) and
Winograd's minimal filtering for wide 3-tap / 3×3 layers (``"winograd"``, ``_winograd.py``).
Which is fastest depends on the CPU: on an AVX-512 Zen 4 host oneDNN's direct
convolutions ran at twice MKL's sgemm, so "conv" / "mel" won nearly everywhere; on
an AVX2 host "gemm" won for the wide timbral front-ends and "conv" beat "mel" for
the narrow ones. So the choice is measured on the first batch of each input shape
(:mod:`fewshot.frontends.tuning`, on by default); with tuning off
(``FEWSHOT_TUNE=off``) the choice measured on the AVX-512 host is used
(:func:`use_gemm`, the mel-channel paths). ``Frontend.gemm = True`` forces "gemm",
``False`` forces "conv".

The GEMM formulation is in ``_gemmconv.py``, the mel-channel one in ``_melconv.py``, the FFT
in ``_fftconv.py``, Winograd in ``_winograd.py``; this module holds the choice between them and the precision rules.

``precision="bfloat16"`` runs the matrix products in bfloat16 (float32
accumulation inside oneDNN/cuBLAS, float32 maps and means); it changes features
by ~1e-2 relative but keeps clips ranked the same (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._fftconv import FFT_PATHS, fft_layers
from ._gemmconv import GEMM_PATHS as _PATHS
from ._gemmconv import set_block_elements
from ._melconv import DNN_PATHS, use_mel_channels
from ._melwinograd import MEL_WINOGRAD_PATHS, mel_winograd_filters
from ._winograd import WINOGRAD_PATHS, winograd_layers

__all__ = ["fast_maps", "formulations", "use_gemm", "effective_precision", "bf16_native", "PRECISIONS",
           "set_block_elements"]

PRECISIONS = ("float32", "bfloat16")


def _dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def use_gemm(fe, precision: str = "float32", device: str = "cpu") -> bool:
    """Whether the GEMM formulation is the faster one for ``fe`` (measured on CPU, see docs/performance.md).

    On CPU in float32, oneDNN's direct convolutions run at up to ~2× MKL's sgemm
    (AVX-512 vs AVX2 kernels on AMD Zen 4), so the pooled-before-activation conv
    path stays the default except for the wide timbral branches (one shared patch
    matrix, max over frequency per block). In bfloat16 the matrix products run on
    AVX512-BF16 and win for the wide front-ends and the vertical filters. On CUDA
    every front-end with a GEMM path uses it.
    """
    name = type(fe).__name__
    if name not in _PATHS:
        return False
    if device != "cpu":
        return True
    wide = (fe.filters or 0) >= 64
    if precision == "bfloat16":
        if name in ("FrameLevel", "FrameLevelMany") or (name == "CnnMusic" and not len(fe.timbral)):
            return False
        return wide or name == "Vertical"
    return False


def bf16_native(device: str | torch.device = "cpu") -> bool:
    """Whether bfloat16 matrix products run natively on ``device`` (CUDA, or a CPU with AVX512-BF16 / AMX)."""
    if torch.device(device).type != "cpu":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - older builds
        return "AVX512" in torch.backends.cpu.get_cpu_capability()


_WARNED: set[str] = set()


def effective_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``precision``, except "bfloat16" on a CPU without native bfloat16, which falls back to "float32" with a
    warning (emulated bfloat16 GEMMs measured 12–100× slower than float32 there)."""
    if precision == "bfloat16" and not bf16_native(device):
        if "bf16" not in _WARNED:
            _WARNED.add("bf16")
            import warnings

            warnings.warn("precision='bfloat16' asked for, but this CPU has no native bfloat16 (AVX512-BF16 or "
                          "AMX); emulated it runs 12-100x slower, so float32 is used instead", stacklevel=3)
        return "float32"
    return precision


def formulations(fe, x: torch.Tensor, precision: str = "float32") -> dict[str, Callable[[], list[torch.Tensor]]]:
    """The exact formulations of ``fe`` on the batch ``x``: name → function of no arguments giving the maps.

    ``"conv"``: the front-end's own convolutions with pooling before the activation
    (``fe._maps(x, plain=False)``); ``"mel"``: the mel bands as input channels of a conv1d
    (vertical 7×96, the timbral branches); ``"gemm"``: patch matrices × kernels
    (``precision`` applies here only); ``"fft"``: the wide deep layers through the FFT
    (``_fftconv.py``; frame-level back-ends, VGG's second and later layers); ``"winograd"``: the wide
    3-tap / 3×3 / 7-tap layers by F(m, r) with the pooling inside each block (``_winograd.py``:
    sample-level, VGG, frame-level back-ends; ``_melwinograd.py``: the one-channel vertical and timbral
    filters along time, mel bands as channels; float32 only).
    """
    name = type(fe).__name__
    labels = ["conv"]
    if name in DNN_PATHS and use_mel_channels(fe):
        labels.append("mel")
    if name in _PATHS:
        labels.append("gemm")
    if name in FFT_PATHS and fft_layers(fe, x):
        labels.append("fft")
    if precision == "float32" and (name in WINOGRAD_PATHS and winograd_layers(fe, x)
                                   or name in MEL_WINOGRAD_PATHS and mel_winograd_filters(fe)):
        labels.append("winograd")
    return {label: (lambda label=label: run_formulation(fe, x, label, precision)) for label in labels}


def run_formulation(fe, x: torch.Tensor, label: str, precision: str = "float32") -> list[torch.Tensor]:
    """The maps of ``fe`` on ``x`` through the formulation ``label`` (see :func:`formulations`)."""
    name = type(fe).__name__
    if label == "conv":
        return fe._maps(x, False)
    if label == "mel":
        return DNN_PATHS[name](fe, x)
    if label == "gemm":
        return _PATHS[name](fe, x.float(), _dtype(precision))
    if label == "winograd":
        return (MEL_WINOGRAD_PATHS.get(name) or WINOGRAD_PATHS[name])(fe, x.float())
    return FFT_PATHS[name](fe, x)


def fast_maps(fe, x: torch.Tensor, precision: str = "float32", *, force: bool = False) -> list[torch.Tensor] | None:
    """Feature maps of ``fe`` on a checked, padded batch through its fastest formulation, or None for the
    front-end's own optimized ``_maps`` (front-ends without alternative formulations).

    With tuning on (:mod:`fewshot.frontends.tuning`, the default) the formulations of
    :func:`formulations` are timed on the first batch of each input shape and the
    fastest is kept; with tuning off, the static choice measured on the development
    CPUs (:func:`use_gemm`, the mel-channel paths). ``force=True`` always runs the
    GEMM formulation.

    Parameters
    ----------
    fe : Frontend
        A registered random CNN.
    x : Tensor [shape=(batch, n_samples) or (batch, 1, n_frames, n_mels)]
    precision : "float32" or "bfloat16"
    """
    fn = _PATHS.get(type(fe).__name__)
    if fn is not None and force:
        return fn(fe, x.float(), _dtype(precision))
    if fn is None and all(type(fe).__name__ not in paths for paths in (DNN_PATHS, FFT_PATHS, WINOGRAD_PATHS,
                                                                          MEL_WINOGRAD_PATHS)):
        return None
    from .tuning import architecture_key, length_bucket, pick_fastest, tuned_choices, tuning_enabled

    if tuning_enabled() and getattr(fe, "gemm", None) is None:
        shape = tuple(x.shape[:-2]) + (length_bucket(x.shape[-2]), x.shape[-1]) if x.dim() == 4 else \
            (x.shape[0], length_bucket(x.shape[-1]))
        key = ("formulation", architecture_key(fe), shape, str(x.device), precision, torch.get_num_threads())
        label = tuned_choices(copy=False).get(key)
        if label == "conv":
            return None  # Frontend.forward runs fe._maps itself: no wrapper in the way of the cheapest calls
        if label is not None:
            return run_formulation(fe, x, label, precision)
        return pick_fastest(key, formulations(fe, x, precision), x.device)
    if fn is not None and use_gemm(fe, precision, x.device.type):
        return fn(fe, x.float(), _dtype(precision))
    if use_mel_channels(fe) and getattr(fe, "gemm", None) is None:
        return DNN_PATHS[type(fe).__name__](fe, x)
    return None
