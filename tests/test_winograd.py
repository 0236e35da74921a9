"""Winograd's minimal filtering (fewshot/frontends/_winograd.py): exact transforms, exact pooled layers, offered
only for wide layers, and the front-ends' Winograd formulation equal to the plain definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fewshot.frontends import _winograd, create_frontend, tuning
from fewshot.frontends._fast import formulations
from fewshot.frontends._winograd import _matrices64, conv1d_pool_tm, conv2d_pool_tm, tile_size


def _assert_close(got: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal within Winograd's float32 rounding: ~1e-5 of the largest output (module docstring)."""
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=3e-5 * float(ref.abs().max()))


@pytest.fixture(autouse=True)
def _fresh_choices():
    tuning.clear_tuned()
    yield
    tuning.set_tuning(True)


@pytest.mark.parametrize(("m", "r"), [(2, 3), (3, 3), (4, 3), (5, 3), (6, 3), (3, 7), (2, 7)])
def test_matrices_compute_the_correlation(m, r):
    a_t, g, b_t = _matrices64(m, r)
    n = m + r - 1
    assert a_t.shape == (m, n) and g.shape == (n, r) and b_t.shape == (n, n)
    rng = np.random.default_rng(m)
    kernel, tile = rng.standard_normal(r), rng.standard_normal(n)
    want = [kernel @ tile[i:i + r] for i in range(m)]
    np.testing.assert_allclose(a_t @ ((g @ kernel) * (b_t @ tile)), want, rtol=1e-12, atol=1e-12)


def test_too_many_points_is_an_error():
    with pytest.raises(ValueError, match=r"F\(12, 3\) needs 13 points"):
        _matrices64(12, 3)


@pytest.mark.parametrize(("taps", "pad", "pool"), [(3, (1, 1), 1), (3, (1, 1), 2), (3, (1, 1), 3), (3, (0, 2), 4),
                                                  (7, (3, 3), 1), (7, (0, 0), 1), (7, (2, 5), 2)])
@pytest.mark.parametrize("length", [8, 17, 300])
def test_conv1d_pool_tm_equals_conv_pool_relu(taps, pad, pool, length):
    g = torch.Generator().manual_seed(length + pool)
    conv = torch.nn.Conv1d(6, 5, taps)
    x = torch.randn(2, 6, length, generator=g)
    with torch.inference_mode():
        ref = F.relu(F.max_pool1d(conv(F.pad(x, pad)), pool))
        got = conv1d_pool_tm(x.transpose(1, 2), conv, pad=pad, pool=pool, act=F.relu).transpose(1, 2)
    assert got.shape == ref.shape
    _assert_close(got, ref)


@pytest.mark.parametrize(("taps", "pad", "pool"), [(3, (1, 1), 3), (3, (0, 2), 4), (7, (3, 3), 1), (7, (0, 0), 1)])
@pytest.mark.parametrize("block", [1, 2, 3])
def test_conv1d_pool_tm_over_many_blocks_equals_conv_pool_relu(taps, pad, pool, block, monkeypatch):
    """Many blocks: the inner ones read the input in place, the edge ones a zero-padded copy."""
    monkeypatch.setattr(_winograd, "_BLOCK_TILES_1D", block)
    g = torch.Generator().manual_seed(block + pool)
    conv = torch.nn.Conv1d(6, 5, taps)
    x = torch.randn(2, 6, 61, generator=g)
    with torch.inference_mode():
        ref = F.relu(F.max_pool1d(conv(F.pad(x, pad)), pool))
        got = conv1d_pool_tm(x.transpose(1, 2), conv, pad=pad, pool=pool, act=F.relu).transpose(1, 2)
    assert got.shape == ref.shape
    _assert_close(got, ref)


@pytest.mark.parametrize("pool", [(4, 2), (4, 3), (5, 2), (4, 4), (1, 1)])
@pytest.mark.parametrize("shape", [(5, 4), (21, 11), (40, 48)])
def test_conv2d_pool_tm_equals_conv_pool_elu(pool, shape):
    g = torch.Generator().manual_seed(shape[0])
    conv = torch.nn.Conv2d(4, 3, 3, padding=1)
    x = torch.randn(2, 4, *shape, generator=g)
    with torch.inference_mode():
        ref = F.elu(F.max_pool2d(conv(x), pool))
        got = conv2d_pool_tm(x.permute(0, 2, 3, 1), conv, pool=pool, act=F.elu).permute(0, 3, 1, 2)
    assert got.shape == ref.shape
    _assert_close(got, ref)


@pytest.mark.parametrize("pool", range(1, 9))
def test_tiles_hold_whole_pools(pool):
    m = tile_size(pool)
    assert m % pool == 0 and m >= 4
    assert _matrices64(m, 3)[0].shape == (m, m + 2)  # enough interpolation points


def _input(fe, length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    if fe.input == "logmel":
        return -40.0 + 10.0 * torch.randn(1, 1, length, 96, generator=g)
    return 0.1 * torch.randn(1, length, generator=g)


@pytest.mark.parametrize(("name", "length"), [("sample_level", 9000), ("vgg", 1290), ("frame_level", 9000),
                                            ("frame_level_many", 9000)])
def test_winograd_formulation_equals_plain(name, length, monkeypatch):
    monkeypatch.setattr(_winograd, "MIN_CHANNELS", {1: 8, 2: 8})
    fe = create_frontend(name, filters=8, seed=2)
    x = fe._check_input(_input(fe, length))
    with torch.inference_mode():
        cands = formulations(fe, x)
        assert "winograd" in cands
        assert "winograd" not in formulations(fe, x, precision="bfloat16")
        for got, ref in zip(cands["winograd"](), fe.forward(x, plain=True), strict=True):
            assert got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()) + 1e-6)


@pytest.mark.parametrize(("name", "wide", "length"), [("sample_level", 256, 6561), ("vgg", 64, 1280),
                                                     ("frame_level", 256, 9000), ("frame_level_many", 256, 9000)])
def test_winograd_is_offered_for_wide_layers_only(name, wide, length):
    fe = create_frontend(name, filters=wide, seed=0)
    narrow = create_frontend(name, filters=wide // 2 - 1, seed=0)
    with torch.inference_mode():
        assert "winograd" in formulations(fe, fe._check_input(_input(fe, length)))
        assert "winograd" not in formulations(narrow, narrow._check_input(_input(narrow, length)))


@pytest.mark.parametrize(("kt", "kf"), [(7, 96), (7, 86), (3, 86), (1, 86), (7, 38), (3, 38), (1, 38)])
@pytest.mark.parametrize("frames", [7, 40])
def test_mel_winograd_equals_conv2d_max_over_frequency(kt, kf, frames, monkeypatch):
    from fewshot.frontends import _melwinograd

    monkeypatch.setattr(_melwinograd, "_COLUMNS", 2)  # several filter ranges per call
    monkeypatch.setattr(_melwinograd, "_ROWS", 4 * (97 - kf))  # several blocks of 4 tiles
    g = torch.Generator().manual_seed(kt * kf + frames)
    conv = torch.nn.Conv2d(1, 5, (kt, kf))
    x = torch.randn(2, 1, frames, 96, generator=g)
    pad = ((kt - 1) // 2, (kt - 1) // 2) if frames > kt else (0, 0)
    with torch.inference_mode():
        ref = conv(F.pad(x, (0, 0, *pad))).amax(-1).transpose(1, 2)  # [batch, T', F]
        got = _melwinograd.conv_max_freq_tm(conv, x[:, 0], pad=pad)
    assert got.shape == ref.shape
    _assert_close(got, ref)


@pytest.mark.parametrize("name", ["vertical_7x96", "vertical_7x86", "timbral", "timbral_time", "timbral_temporal"])
def test_mel_winograd_formulation_equals_plain(name):
    fe = create_frontend(name, filters=4, seed=1)
    x = fe._check_input(-40.0 + 10.0 * torch.randn(2, 1, 41, 96, generator=torch.Generator().manual_seed(5)))
    with torch.inference_mode():
        cands = formulations(fe, x)
        assert "winograd" in cands
        for got, ref in zip(cands["winograd"](), fe.forward(x, plain=True), strict=True):
            assert got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6 * float(ref.abs().max()) + 1e-6)
    temporal = create_frontend("temporal", filters=4, seed=1)
    assert "winograd" not in formulations(temporal, temporal._check_input(x))


@pytest.mark.parametrize("name", ["timbral", "vertical_7x96"])
def test_stacked_networks_do_not_reuse_the_first_networks_kernels(name):
    from fewshot.frontends.stacked import stack_frontends

    fes = [create_frontend(name, filters=4, seed=s) for s in range(3)]
    x = fes[0]._check_input(-40.0 + 10.0 * torch.randn(1, 1, 30, 96, generator=torch.Generator().manual_seed(1)))
    with torch.inference_mode():
        formulations(fes[0], x)["winograd"]()  # caches the first network's transformed kernels
        stacked = stack_frontends(fes)
        got = formulations(stacked.net, x)["winograd"]()
        want = stacked.net.forward(x, plain=True)
        for g, w in zip(got, want, strict=True):
            _assert_close(g, w)


def test_layers_without_enough_points_are_not_offered():
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    assert _winograd.worth_winograd(conv, (80, 40), (4, 2))
    assert not _winograd.worth_winograd(conv, (90, 40), (9, 2))  # F(9, 3) needs 10 points
    assert not _winograd.worth_winograd(torch.nn.Conv1d(512, 512, 5), (1000,), (1,))  # 5 taps: no tiles
