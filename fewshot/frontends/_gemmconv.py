"""The GEMM formulation of the random-weight CNNs: patch matrices × kernels, pooled per block.

Every convolution of the registered random CNNs has a single input channel, a
few channels with a short kernel, or a long stride; oneDNN's direct convolutions
run those at 1–60 GFLOP/s on CPU. Here each one is written as matrix products
over a time-major layout ``[batch, time, (frequency,) channels]``:

- a window view of the (padded) input (``as_strided``: rows = output positions,
  columns = the taps of one window, in the weight's (tap, channel) order), copied
  one block of output rows at a time so that the patch matrix stays in cache;
- one ``matmul`` with the kernel reshaped to ``[taps · in_channels, out_channels]``;
- pooling / the max over frequency positions *before* the monotonic activation
  (exact), applied per block, so the large pre-pool map is never written out whole;
- the temporal branches of ``CnnMusic`` (one input channel, kernels of 8–165
  frames, no pooling) are rectified and summed per block, and returned as their
  channel means ``[batch, C]`` (:func:`_temporal_means`).

Sharing: the three timbral branches with the same frequency extent (k_t = 7, 3,
1) read one 7-frame patch matrix; the 3- and 1-frame branches use its middle
columns (no zero-padded kernels, no extra FLOPs). The 512-tap stride-32
frame-level convolution reads the waveform as rows of 32 samples (a window = 16
consecutive rows); the sample-level first convolution (kernel 3, stride 3) is one
matmul over the waveform viewed as rows of 3. VGG's one-channel first layer always
runs here on CPU (:func:`vgg_first_layer`, also inside the "conv" and "fft" formulations).

Other feature maps keep the plain shapes ``[batch, channels, ...]`` (as strided views);
the features equal the plain definition's within float tolerance (tested in
``tests/test_perf_paths.py``).

``dtype=torch.bfloat16`` runs the matrix products in bfloat16 (float32
accumulation inside oneDNN/cuBLAS, float32 maps and means); it changes features
by ~1e-2 relative but keeps clips ranked the same (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._matmul import mm

__all__ = ["GEMM_PATHS", "vgg_first_layer", "set_block_elements"]

#: Target size (elements) of one block's output matrix. 2¹⁸ (blocks in L2) was the fastest of those tried with
#: MKL's products on the AVX2 host; with oneDNN's (``_matmul``) on the AVX-512 host 2²⁰ ran every GEMM formulation
#: as fast or faster (29-s clips, five interleaved runs, one and two threads; December 2026): the large widths
#: 1.1–1.4× (vertical 7×86 351 → 251 ms, timbral 185 → 148, temporal 3.6 → 2.6), the small ones up to 2×
#: (timbral_time 57 → 28 ms): fewer, larger products amortise oneDNN's per-call cost. 2²² and 2²⁴ were no faster.
_BLOCK = {"elements": 1 << 20}


def set_block_elements(n: int) -> None:
    """Set the target elements per block output (benchmarks/tests)."""
    _BLOCK["elements"] = int(n)


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
            y = mm(cols.to(dtype), wmat)
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

    def post(y):  # y is the fresh GEMM output; the bias after the pool (a max commutes with it): a third of the adds
        if pool > 1:
            y = y.view(-1, pool, y.shape[-1]).amax(1)
        y = y.add_(bias)
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
def sample_level_first(fe, x: torch.Tensor, dtype) -> torch.Tensor:
    """ReLU of the sample-level first convolution (kernel 3, stride 3): one matmul over the waveform ``[batch, n]``
    viewed as rows of 3 → time-major ``[batch, n // 3, F]``."""
    n = x.shape[1] // 3 * 3
    w0 = _wmat(fe.conv0.weight, dtype)
    rows = x[:, :n].reshape(x.shape[0], n // 3, 3)
    return _windows_gemm(rows, 1, n // 3, w0, lambda y: _relu_(y.add_(fe.conv0.bias)), n_post=n // 3, dtype=dtype)


def sample_level_tm(fe, x: torch.Tensor, layer, dtype=torch.float32) -> list[torch.Tensor]:
    """The sample-level maps, time-major: the first layer by :func:`sample_level_first`, then
    ``layer(conv, h)`` = ReLU(max-pool 3(conv(h))) of each 3-tap 'same' layer on a time-major map ``[batch, T, F]``.
    The formulations differ only in ``layer``; the maps are returned in the plain layout (views)."""
    h = sample_level_first(fe, x, dtype)
    maps = [_cf(h)]
    for conv in fe.convs:
        h = layer(conv, h)
        maps.append(_cf(h))
    return maps


def _sample_level(fe, x: torch.Tensor, dtype) -> list[torch.Tensor]:
    return sample_level_tm(fe, x, lambda conv, h: _conv1d_tm(h, conv, pad=(1, 1), dtype=dtype, pool=3, act=_relu_),
                           dtype)


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


def _frame_level(fe, x: torch.Tensor, dtype) -> list[torch.Tensor]:
    from ._waveform import frame_level_tm

    return frame_level_tm(fe, x, lambda conv, x, left, n_out: _strided_conv(conv, x, left, n_out, dtype),
                          lambda conv, h, pad: _conv1d_tm(h, conv, pad=pad, dtype=dtype, act=_relu_))


# ---------------------------------------------------------------------- log-mel front-ends
def _patch_gemm(xp: torch.Tensor, kt: int, kf: int, n_t: int, n_f: int, wmats: list[tuple], pool, act,
                *, multiple: int = 1, n_post: int, out_channels: list[int], dtype) -> list[torch.Tensor]:
    """2-D patches (kt × kf × C) of a time-major map ``xp [batch, T, Fq, C]`` (padded) as one patch matrix
    per block of output frames, multiplied by one or more weight matrices.

    ``wmats``: (column slice of the patch matrix, weight matrix, bias); ``pool(y [rows, n_f, C]) →
    [rows // multiple, ...]`` max-pools a block's product; the bias is added after it (a max commutes with a
    per-channel constant: one pass over the pooled block instead of the whole product, which is 11× larger
    for the 7 × 86 filters) and then ``act`` (in place). Returns one time-major output per weight.
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
                y = mm(cols[:, sl] if sl is not None else cols, w)
                if y.dtype != torch.float32:
                    y = y.float()
                r = act(pool(y.view(t1 - t0, n_f, -1)).add_(bias))
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

    def pool_block(y):
        y = y[:, :nf_out]
        return y.reshape(-1, pt, nf_out // pf, pf, y.shape[-1]).amax(1).amax(2)  # one axis at a time: ~10x faster

    (out,) = _patch_gemm(hp, 3, 3, t // pt * pt, fq, [(None, _wmat(conv.weight, dtype), conv.bias.float())],
                         pool_block, lambda y: F.elu(y, inplace=True), multiple=pt, n_post=t // pt,
                         out_channels=[conv.out_channels], dtype=dtype)
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


def _freq_max(y: torch.Tensor) -> torch.Tensor:
    """The max over a block's frequency positions: ``[rows, P, C]`` → ``[rows, C]``."""
    return y.amax(1)


def _vertical(fe, x: torch.Tensor, dtype) -> list[torch.Tensor]:
    kt, kf = fe.conv.kernel_size
    t, fq = x.shape[2], x.shape[3]
    n_f = fq - kf + 1
    h = x[:, 0].unsqueeze(-1)
    w = _wmat(fe.conv.weight, dtype)
    (y,) = _patch_gemm(h, kt, kf, t - kt + 1, n_f, [(None, w, fe.conv.bias.float())], _freq_max, _relu_,
                       n_post=t - kt + 1, out_channels=[w.shape[1]], dtype=dtype)
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
            outs = _patch_gemm(hp, kt_max, kf, t, x.shape[3] - kf + 1, wmats, _freq_max, _relu_,
                               n_post=t, out_channels=[w.shape[1] for _, w, _ in wmats], dtype=dtype)
            results.update(zip(idx, outs, strict=True))
        maps = [results[i].transpose(1, 2).unsqueeze(-1) for i in range(len(fe.timbral))]
    if len(fe.temporal):
        signal = x.mean(dim=3)[:, 0]  # [batch, T]
        for conv, k in zip(fe.temporal, fe.kernels, strict=True):
            left = (k - 1) // 2
            maps.append(_temporal_means(F.pad(signal, (left, k - 1 - left)), conv, dtype))
    return maps


def _temporal_means(sp: torch.Tensor, conv, dtype) -> torch.Tensor:
    """Time-means of ``relu(conv1d(sp))`` for a one-channel conv1d: ``[batch, L]`` (padded) → ``[batch, C]``.

    The temporal branches write T × 14F values that are only averaged: at 29 s and F = 256 that is
    19 MB per clip, written, rectified and read again. Here each block of output rows (a window view
    of the signal × the kernel, bias added by ``addmm``) is rectified and summed while in cache, and
    only the sums are kept. The means are returned as a 2-D map (:func:`~._base.map_means` takes
    them as they are). Blocks hold ~4 MB of products (528 rows at 1,984 filters): on the AVX2 dev VM,
    two threads, a 29-s clip at the large width, the four branches took 8.4 ms against 19.0 ms as
    defined (conv1d, ReLU, mean); 128-row blocks took 11.3 ms (per-call costs). On 5-s clips (234 frames)
    it ran at 0.86–0.89× the defined branches, so the measured choice keeps those there.
    """
    k = conv.kernel_size[0]
    w = _wmat(conv.weight, dtype)  # [k, C]
    bias = conv.bias.float()
    b, length = sp.shape
    n_out, c = length - k + 1, w.shape[1]
    rows = min(n_out, max(1, (_BLOCK["elements"] << 2) // c))
    sums = torch.zeros(b, c, dtype=torch.float32, device=sp.device)
    buf = torch.empty(rows, c, dtype=torch.float32, device=sp.device) if dtype == torch.float32 else None
    sp = sp.contiguous()
    for i in range(b):
        base = sp[i]
        for t0 in range(0, n_out, rows):
            t1 = min(t0 + rows, n_out)
            cols = base.as_strided((t1 - t0, k), (1, 1), base.storage_offset() + t0)
            if buf is not None:
                y = mm(cols, w, bias, out=buf[:t1 - t0])
            else:
                y = torch.matmul(cols.to(dtype), w).float().add_(bias)
            sums[i] += y.clamp_(min=0).sum(0)
    return sums.div_(n_out)


#: Front-end class → its GEMM formulation ``(fe, x, dtype) → maps``.
GEMM_PATHS = {
    "SampleLevel": _sample_level,
    "FrameLevel": _frame_level,
    "FrameLevelMany": _frame_level,
    "VGG": _vgg,
    "Vertical": _vertical,
    "CnnMusic": _cnn_music,
}
