"""Every optimized extraction path gives the plain definition's features (fast: tiny inputs, few filters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from fewshot.exceptions import ParameterError
from fewshot.frontends import FRONTENDS, _fast, _gemmconv, create_frontend
from fewshot.frontends._fast import fast_maps, set_block_elements, use_gemm
from fewshot.frontends.extract import extract_features

CNNS = [n for n in FRONTENDS.names() if FRONTENDS.get(n).meta["widths"] is not None]


def _input(fe, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if fe.input == "logmel":
        return -40.0 + 10.0 * torch.randn(batch, 1, length, 96, generator=g)
    return 0.1 * torch.randn(batch, length, generator=g)


def _lengths(fe) -> list[int]:
    if fe.input == "logmel":
        return [1283, 1301] if fe.name == "vgg" else [33, 50]
    return [5001, 6562]  # odd lengths: none a multiple of 3 or 32


def _as_returned(plain_map: torch.Tensor, fast_map: torch.Tensor) -> torch.Tensor:
    """The plain map as the fast path returned it: whole, or reduced to its channel means."""
    return plain_map.flatten(2).mean(-1) if fast_map.dim() == 2 else plain_map


@pytest.mark.parametrize("name", CNNS)
@pytest.mark.parametrize("gemm", [True, None, False])
def test_every_path_equals_plain(name, gemm):
    fe = create_frontend(name, filters=6, seed=2)
    fe.gemm = gemm
    for length in _lengths(fe):
        x = _input(fe, 2, length)
        with torch.inference_mode():
            fast, plain = fe.forward(x), fe.forward(x, plain=True)
            assert len(fast) == len(plain) == len(fe.feature_layers)
            for f, p in zip(fast, plain, strict=True):
                p = _as_returned(p, f)
                assert f.shape == p.shape
                torch.testing.assert_close(f, p, rtol=1e-4, atol=1e-6 * float(p.abs().max()) + 1e-5)
            torch.testing.assert_close(fe.features(x), fe.features(x, plain=True), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["timbral", "temporal", "vgg", "sample_level", "frame_level_many", "vertical_7x86"])
def test_gemm_blocks_do_not_change_features(name):
    fe = create_frontend(name, filters=5, seed=4)
    x = _input(fe, 1, _lengths(fe)[1])
    default = _gemmconv._BLOCK["elements"]
    with torch.inference_mode():
        ref = fe.features(x, plain=True)
        for elements in (64, 1 << 12, 1 << 22):
            set_block_elements(elements)
            try:
                torch.testing.assert_close(map_feats(fe, x), ref, rtol=1e-4, atol=1e-5)
            finally:
                set_block_elements(default)


def test_mel_channel_conv_equals_conv2d_max():
    from fewshot.frontends._melconv import mel_conv_max

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 40, 96, generator=g)
    xc = x[:, 0].transpose(1, 2).contiguous()
    for kt, kf, s in ((7, 96, 1), (1, 38, 4), (3, 38, 8), (7, 86, 3)):
        conv = torch.nn.Conv2d(1, 5, (kt, kf))
        fe = torch.nn.Module()
        with torch.inference_mode():
            ref = conv(torch.nn.functional.pad(x, (0, 0, (kt - 1) // 2, (kt - 1) // 2))).amax(-1)
            got = mel_conv_max(fe, "k", conv, xc, pad=(kt - 1) // 2, s=s)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def map_feats(fe, x):
    from fewshot.frontends._base import map_means

    return map_means(fast_maps(fe, fe._check_input(x), force=True))


def test_use_gemm_rules():
    # CPU float32: oneDNN direct convolutions (AVX-512) beat MKL GEMMs (AVX2) on this CPU
    assert not use_gemm(create_frontend("timbral", width="large", seed=0))
    assert use_gemm(create_frontend("timbral", width="large", seed=0), "bfloat16")
    assert not use_gemm(create_frontend("timbral", width="small", seed=0), "bfloat16")
    assert not use_gemm(create_frontend("frame_level", width="small", seed=0))
    assert use_gemm(create_frontend("vertical_7x96", width="small", seed=0), "bfloat16")
    assert use_gemm(create_frontend("vgg", width="small", seed=0), device="cuda")
    assert not use_gemm(create_frontend("mfcc", seed=0))


@pytest.mark.parametrize("name", ["vertical_7x96", "timbral", "vgg", "sample_level"])
def test_bfloat16_ranks_clips_the_same(name, monkeypatch):
    """bf16 features: Spearman of pairwise distances ≥ 0.95 and nearest neighbours mostly agree."""
    monkeypatch.setattr(_fast, "bf16_native", lambda device="cpu": True)  # run bf16 even where it is emulated
    fe = create_frontend(name, filters=64, seed=1)
    fe.gemm = True
    g = torch.Generator().manual_seed(5)
    length = _lengths(fe)[0]
    # 12 clips of 4 'classes': a class template plus noise, so distances have structure
    base = _input(fe, 4, length, seed=7)
    clips = [(base[i % 4] + 0.5 * base[i % 4].std() * torch.randn(base[i % 4].shape, generator=g)).numpy()
             for i in range(12)]
    clips = [c[0] if fe.input == "logmel" else c for c in clips]
    x32 = extract_features(fe, clips)
    x16 = extract_features(fe, clips, precision="bfloat16")
    assert fe.precision == "float32"  # restored
    assert np.abs(x16 - x32).max() <= 0.05 * np.abs(x32).max()
    iu = np.triu_indices(12, 1)
    d32 = np.linalg.norm(x32[:, None] - x32[None], axis=-1)
    d16 = np.linalg.norm(x16[:, None] - x16[None], axis=-1)
    assert spearmanr(d32[iu], d16[iu]).statistic >= 0.95
    np.fill_diagonal(d32, np.inf)
    np.fill_diagonal(d16, np.inf)
    assert (d32.argmin(1) == d16.argmin(1)).mean() >= 0.9


def test_bfloat16_falls_back_without_native_support(monkeypatch):
    monkeypatch.setattr(_fast, "bf16_native", lambda device="cpu": False)
    monkeypatch.setattr(_fast, "_WARNED", set())
    fe = create_frontend("vertical_7x96", filters=8, seed=0)
    clips = [np.random.default_rng(0).normal(-40, 10, (30, 96)).astype(np.float32)]
    with pytest.warns(UserWarning, match="no native bfloat16.*float32 is used"):
        x16 = extract_features(fe, clips, precision="bfloat16")
    np.testing.assert_array_equal(x16, extract_features(fe, clips))


def test_precision_is_checked():
    fe = create_frontend("vertical_7x96", filters=4, seed=0)
    with pytest.raises(ParameterError, match="precision must be"):
        extract_features(fe, [np.zeros((20, 96), np.float32)], precision="fp8")


@pytest.mark.parametrize("shape", [(1, 3, 20, 12), (2, 5, 23, 13), (1, 1, 9, 7)])
@pytest.mark.parametrize("pool", [(4, 2), (4, 3), (5, 2), (1, 1)])
def test_max_pool2d_equals_torch(shape, pool):
    """The two-axis max-pool used before VGG's ELU equals ``F.max_pool2d`` (floor), odd sizes included."""
    from fewshot.frontends._spectrogram import max_pool2d

    y = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(max_pool2d(y, pool), torch.nn.functional.max_pool2d(y, pool))


def test_vgg_first_layer_gemm_equals_conv_pool_elu():
    from fewshot.frontends._gemmconv import vgg_first_layer

    fe = create_frontend("vgg", filters=5, seed=1)
    x = _input(fe, 2, 1283)
    ref = torch.nn.functional.elu(torch.nn.functional.max_pool2d(fe.convs[0](x), fe.POOLS[0]))
    got = vgg_first_layer(fe.convs[0], x, fe.POOLS[0])
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
