"""Fast formulations of the random-weight CNNs; ``Frontend.forward`` runs the fastest one for the machine at hand.

Every front-end has up to four exact formulations (:func:`formulations`): its own
convolutions with pooling / the max over frequency before the monotonic
activation (``"conv"``), the mel bands as input channels of a conv1d (``"mel"``,
the 7×96 vertical filter and the timbral branches), patch matrices × kernels
(``"gemm"``, below) and the FFT for wide deep layers (``"fft"``, ``_fftconv.py``).
Which is fastest depends on the CPU: on an AVX-512 Zen 4 host oneDNN's direct
convolutions ran at twice MKL's sgemm, so "conv" / "mel" won nearly everywhere; on
an AVX2 host "gemm" won for the wide timbral front-ends and "conv" beat "mel" for
the narrow ones. So the choice is measured on the first batch of each input shape
(:mod:`fewshot.frontends.tuning`, on by default); with tuning off
(``FEWSHOT_TUNE=off``) the choice measured on the AVX-512 host is used
(:func:`use_gemm`, the mel-channel paths). ``Frontend.gemm = True`` forces "gemm",
``False`` forces "conv".

GEMM formulations:

Every convolution of the registered random CNNs has a single input channel, a
few channels with a short kernel, or a long stride; oneDNN's direct convolutions
run those at 1–60 GFLOP/s on CPU. Here each one is written as matrix products
over a time-major layout ``[batch, time, (frequency,) channels]``:

- a window view of the (padded) input (``as_strided``: rows = output positions,
  columns = the taps of one window, in the weight's (tap, channel) order), copied
  one block of output rows at a time so that the patch matrix stays in cache;
- one ``matmul`` with the kernel reshaped to ``[taps · in_channels, out_channels]``;
- pooling / the max over frequency positions *before* the monotonic activation
  (exact), applied per block, so the large pre-pool map is never written out whole.

Sharing: the three timbral branches with the same frequency extent (k_t = 7, 3,
1) read one 7-frame patch matrix; the 3- and 1-frame branches use its middle
columns (no zero-padded kernels, no extra FLOPs). The 512-tap stride-32
frame-level convolution reads the waveform as rows of 32 samples (a window = 16
consecutive rows); the sample-level first convolution (kernel 3, stride 3) is one
matmul over the waveform viewed as rows of 3.

Feature maps keep the plain shapes ``[batch, channels, ...]`` (as strided views),
so the features equal the plain definition's within float tolerance (tested in
``tests/test_perf_paths.py``).

``precision="bfloat16"`` runs the matrix products in bfloat16 (float32
accumulation inside oneDNN/cuBLAS, float32 maps and means); it changes features
by ~1e-2 relative but keeps clips ranked the same (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._fftconv import FFT_PATHS, fft_layers
from ._melconv import DNN_PATHS, use_mel_channels

__all__ = ["fast_maps", "formulations", "use_gemm", "vgg_first_layer", "effective_precision", "bf16_native",
           "PRECISIONS", "set_block_elements"]

PRECISIONS = ("float32", "bfloat16")

#: Target size (elements) of one block's output matrix; chosen so blocks stay in L2/L3.
_BLOCK = {"elements": 1 << 18}


def set_block_elements(n: int) -> None:
    """Set the target elements per block output (benchmarks/tests)."""
    _BLOCK["elements"] = int(n)


def _dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision == "bfloat16" else torch.float32


def _wmat(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Conv weight ``[out, in, *kernel]`` → ``[prod(kernel) · in, out]`` in (taps…, in) row order."""
    dims = list(range(2, weight.dim())) + [1, 0]
    return weight.permute(*dims).reshape(-1, weight.shape[0]).to(dtype).contiguous()


def _rows_per_block(cols_per_row: int, n_out: int) -> int:
    return max(1, _BLOCK["elements"] // max(1, cols_per_row * n_out))


def _windows_gemm(xp: torch.Tensor, k: int, n_out: int, wmat: torch.Tensor, post=None, *, multiple: int = 1,
                  n_post: int | None = None, dtype=torch.float32) -> torch.Tensor:
    """1-D windows as one GEMM per block.

    ``xp`` is ``[batch, rows, D]`` (contiguous, already padded); output row t reads
    input rows t … t+k−1 (k·D values, contiguous in memory). Returns
    ``post(block) → [batch, n_post, C]`` (or the raw ``[batch, n_out, C]`` product).
    ``multiple``: block sizes are multiples of this (pooling).
    """
    b, _, d = xp.shape
    c = wmat.shape[1]
    xp = xp.contiguous()
    out_rows = n_post if n_post is not None else n_out
    out = torch.empty(b, out_rows, c, dtype=torch.float32, device=xp.device)
    blk = _rows_per_block(max(k * d, c), 1)
    blk = max(multiple, blk // multiple * multiple)
    for i in range(b):
        base = xp[i]
        for t0 in range(0, n_out if post is None else out_rows * multiple, blk):
            t1 = min(t0 + blk, n_out if post is None else out_rows * multiple)
            cols = base.as_strided((t1 - t0, k * d), (d, 1), base.storage_offset() + t0 * d)
            y = torch.matmul(cols.to(dtype), wmat)
            if y.dtype != torch.float32:
                y = y.float()
            if post is None:
                out[i, t0:t1] = y
            else:
                out[i, t0 // multiple:t1 // multiple] = post(y)
    return out


def _conv1d_tm(h: torch.Tensor, conv, *, pad: tuple[int, int], dtype, pool: int = 1,
               act=None) -> torch.Tensor:
    """Time-major conv1d (stride 1) ``[batch, L, Cin]`` → ``[batch, L', Cout]``, then max-pool ``pool`` and ``act``."""
    k = conv.kernel_size[0]
    hp = F.pad(h, (0, 0, pad[0], pad[1])) if pad != (0, 0) else h
    n_out = hp.shape[1] - k + 1
    w = _wmat(conv.weight, dtype)
    bias = conv.bias.float()

    def post(y):
        y = y.add_(bias)  # y is the fresh GEMM output
        if pool > 1:
            y = y.view(-1, pool, y.shape[-1]).amax(1)
        return act(y) if act is not None else y

    if pool > 1:
        return _windows_gemm(hp, k, n_out, w, post, multiple=pool, n_post=n_out // pool, dtype=dtype)
    return _windows_gemm(hp, k, n_out, w, post, n_post=n_out, dtype=dtype)


def _cf(h: torch.Tensor) -> torch.Tensor:
    """Time-major ``[batch, L, C]`` → the plain layout ``[batch, C, L]`` (a view)."""
    return h.transpose(1, 2)


def _relu_(y):
    return y.clamp_(min=0)


# ---------------------------------------------------------------------- waveform front-ends
def _sample_level(fe, x: torch.Tensor, dtype) -> list[torch.Tensor]:
    n = x.shape[1] // 3 * 3
    w0 = _wmat(fe.conv0.weight, dtype)
    rows = x[:, :n].reshape(x.shape[0], n // 3, 3)
    h = _windows_gemm(rows, 1, n // 3, w0, lambda y: _relu_(y.add_(fe.conv0.bias)), n_post=n // 3, dtype=dtype)
    maps = [_cf(h)]
    for conv in fe.convs:
        h = _conv1d_tm(h, conv, pad=(1, 1), dtype=dtype, pool=3, act=_relu_)
        maps.append(_cf(h))
    return maps


def _frames(x: torch.Tensor, left: int, k: int, n_out: int, stride: int = 32) -> torch.Tensor:
    """Zero-pad waveforms ``[batch, n]`` on the left by ``left`` and lay them out as rows of ``stride`` samples,
    enough rows for ``n_out`` windows of ``k`` samples (``k`` a multiple of ``stride``)."""
    need = (n_out - 1) * stride + k
    rows = -(-need // stride)
    right = rows * stride - left - x.shape[1]
    xp = F.pad(x, (left, right)) if right >= 0 else F.pad(x, (left, 0))[:, :rows * stride]
    return xp.reshape(x.shape[0], rows, stride)


def _strided_conv(fe_conv, x: torch.Tensor, left: int, n_out: int, dtype) -> torch.Tensor:
    k = fe_conv.kernel_size[0]
    rows = _frames(x, left, k, n_out)
    w = _wmat(fe_conv.weight, dtype)
    bias = fe_conv.bias.float()
    return _windows_gemm(rows, k // 32, n_out, w, lambda y: _relu_(y.add_(bias)), n_post=n_out, dtype=dtype)


def _backend(be, h: torch.Tensor, dtype) -> list[torch.Tensor]:
    e1 = _conv1d_tm(h, be.b1, pad=(0, 0), dtype=dtype, act=_relu_)
    e2 = _conv1d_tm(e1, be.b2, pad=(3, 3), dtype=dtype, act=_relu_).add_(e1)
    n = e2.shape[1] // 2 * 2
    p = e2[:, :n].reshape(e2.shape[0], n // 2, 2, e2.shape[2]).amax(2)
    e3 = _conv1d_tm(p, be.b3, pad=(3, 3), dtype=dtype, act=_relu_).add_(p)
    return [_cf(e1), _cf(e2), _cf(e3)]


def _frame_level(fe, x: torch.Tensor, dtype) -> list[torch.Tensor]:
    n_out = (x.shape[1] - 512) // 32 + 1
    h = _strided_conv(fe.conv, x, 0, n_out, dtype)
    return [_cf(h), *_backend(fe.backend, h, dtype)]


def _frame_level_many(fe, x: torch.Tensor, dtype) -> list[torch.Tensor]:
    from ._waveform import _same_pad

    n = x.shape[1]
    n_out = -(-n // 32)
    fronts = [_strided_conv(conv, x, _same_pad(n, k, 32)[0], n_out, dtype)
              for conv, k in zip(fe.convs, fe.KERNELS, strict=True)]
    h = torch.cat(fronts, 2)
    return [*(_cf(f) for f in fronts), *_backend(fe.backend, h, dtype)]


# ---------------------------------------------------------------------- log-mel front-ends
def _patch_gemm(xp: torch.Tensor, kt: int, kf: int, n_t: int, n_f: int, wmats: list[tuple], post,
                *, multiple: int = 1, n_post: int, out_channels: list[int], dtype) -> list[torch.Tensor]:
    """2-D patches (kt × kf × C) of a time-major map ``xp [batch, T, Fq, C]`` (padded) as one patch matrix
    per block of output frames, multiplied by one or more weight matrices.

    ``wmats``: (column slice of the patch matrix, weight matrix, bias); ``post(i, y [rows, n_f, C]) →
    [rows // multiple, ...]`` for weight i. Returns one time-major output per weight.
    """
    b, _, fp, c = xp.shape
    xp = xp.contiguous()
    outs = [None] * len(wmats)
    k = kt * kf * c
    blk = _rows_per_block(n_f * max(k, max(out_channels)), 1)
    blk = max(multiple, blk // multiple * multiple)
    total = n_post * multiple
    for i in range(b):
        base = xp[i]
        off = base.storage_offset()
        for t0 in range(0, total, blk):
            t1 = min(t0 + blk, total)
            cols = base.as_strided((t1 - t0, n_f, kt, kf, c), (fp * c, c, fp * c, c, 1), off + t0 * fp * c)
            cols = cols.reshape((t1 - t0) * n_f, k).to(dtype)
            for j, (sl, w, bias) in enumerate(wmats):
                y = torch.matmul(cols[:, sl] if sl is not None else cols, w)
                if y.dtype != torch.float32:
                    y = y.float()
                r = post(j, y.add_(bias).view(t1 - t0, n_f, -1))
                if outs[j] is None:
                    outs[j] = torch.empty((b, n_post) + tuple(r.shape[1:]), dtype=torch.float32, device=xp.device)
                outs[j][i, t0 // multiple:t1 // multiple] = r
    return outs


def _vgg_layer(conv, h: torch.Tensor, pool: tuple[int, int], dtype) -> torch.Tensor:
    """One VGG layer on a time-major map ``[batch, T, F, C]``: 3×3 'same' conv, max-pool, ELU (pooled per block)."""
    pt, pf = pool
    t, fq = h.shape[1], h.shape[2]
    hp = F.pad(h, (0, 0, 1, 1, 1, 1))
    nf_out = fq // pf * pf

    def post(_, y):
        y = y[:, :nf_out]
        y = y.reshape(-1, pt, nf_out // pf, pf, y.shape[-1]).amax(1).amax(2)  # one axis at a time: ~10x faster
        return F.elu(y, inplace=True)

    (out,) = _patch_gemm(hp, 3, 3, t // pt * pt, fq, [(None, _wmat(conv.weight, dtype), conv.bias.float())], post,
                         multiple=pt, n_post=t // pt, out_channels=[conv.out_channels], dtype=dtype)
    return out


def vgg_first_layer(conv, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
    """ELU(max-pool(conv(x))) of VGG's one-channel first layer ``[batch, 1, T, F]`` → ``[batch, C, T', F']``.

    oneDNN runs a one-input-channel 3×3 convolution at ~3 GFLOP/s and writes the whole
    pre-pool map (352 MB per 29-s clip at the large width); a 9-column patch GEMM per
    block of frames, pooled in cache, measured 3–5× faster on one AVX2 core
    (docs/performance.md). The result is a channels-last view of a time-major map.
    """
    return _vgg_layer(conv, x[:, 0].unsqueeze(-1), pool, torch.float32).permute(0, 3, 1, 2)


def _vgg(fe, x: torch.Tensor, dtype) -> list[torch.Tensor]:
    h = x[:, 0].unsqueeze(-1)  # [batch, T, 96, 1]
    maps = []
    for conv, pool in zip(fe.convs, fe.POOLS, strict=True):
        h = _vgg_layer(conv, h, pool, dtype)
        maps.append(h.permute(0, 3, 1, 2))
    return maps


def _vertical(fe, x: torch.Tensor, dtype) -> list[torch.Tensor]:
    kt, kf = fe.conv.kernel_size
    t, fq = x.shape[2], x.shape[3]
    n_f = fq - kf + 1
    h = x[:, 0].unsqueeze(-1)
    w = _wmat(fe.conv.weight, dtype)
    (y,) = _patch_gemm(h, kt, kf, t - kt + 1, n_f, [(None, w, fe.conv.bias.float())],
                       lambda _, y: _relu_(y.amax(1)), n_post=t - kt + 1, out_channels=[w.shape[1]], dtype=dtype)
    return [y.transpose(1, 2).unsqueeze(-1)]


def _cnn_music(fe, x: torch.Tensor, dtype) -> list[torch.Tensor]:
    maps: list[torch.Tensor] = []
    if len(fe.timbral):
        t = x.shape[2]
        h = F.pad(x[:, 0], (0, 0, 3, 3)).unsqueeze(-1)  # 3 zero frames each side: the widest (7) branch
        by_kf: dict[int, list[int]] = {}
        for i, conv in enumerate(fe.timbral):
            by_kf.setdefault(conv.kernel_size[1], []).append(i)
        results: dict[int, torch.Tensor] = {}
        for kf, idx in by_kf.items():
            kt_max = max(fe.timbral[i].kernel_size[0] for i in idx)
            lo = (7 - kt_max) // 2
            hp = h[:, lo:h.shape[1] - lo] if lo else h
            wmats = []
            for i in idx:
                conv = fe.timbral[i]
                kt = conv.kernel_size[0]
                start = (kt_max - kt) // 2 * kf
                sl = slice(start, start + kt * kf) if kt != kt_max else None
                wmats.append((sl, _wmat(conv.weight, dtype), conv.bias.float()))
            outs = _patch_gemm(hp, kt_max, kf, t, x.shape[3] - kf + 1, wmats, lambda _, y: _relu_(y.amax(1)),
                               n_post=t, out_channels=[w.shape[1] for _, w, _ in wmats], dtype=dtype)
            results.update(zip(idx, outs, strict=True))
        maps = [results[i].transpose(1, 2).unsqueeze(-1) for i in range(len(fe.timbral))]
    if len(fe.temporal):
        signal = x.mean(dim=3).transpose(1, 2)  # [batch, T, 1]
        for conv, k in zip(fe.temporal, fe.kernels, strict=True):
            left = (k - 1) // 2
            h = _conv1d_tm(signal, conv, pad=(left, k - 1 - left), dtype=dtype, act=_relu_)
            maps.append(_cf(h))
    return maps


_PATHS = {
    "SampleLevel": _sample_level,
    "FrameLevel": _frame_level,
    "FrameLevelMany": _frame_level_many,
    "VGG": _vgg,
    "Vertical": _vertical,
    "CnnMusic": _cnn_music,
}


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
    (``_fftconv.py``; frame-level back-ends, VGG's second and later layers).
    """
    name = type(fe).__name__
    labels = ["conv"]
    if name in DNN_PATHS and use_mel_channels(fe):
        labels.append("mel")
    if name in _PATHS:
        labels.append("gemm")
    if name in FFT_PATHS and fft_layers(fe, x):
        labels.append("fft")
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
    if fn is None and type(fe).__name__ not in DNN_PATHS and type(fe).__name__ not in FFT_PATHS:
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
