"""Tests of fewshot.frontends: sizes, seeds, batching, padding, fast == plain, init, extraction, user front-ends."""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot.exceptions import FewShotError, ParameterError
from fewshot.frontends import (
    FRONTENDS,
    check_frontend_name,
    create_frontend,
    frontend_has_width,
    is_random_frontend,
    list_frontends,
    repeat_pad,
)
from fewshot.frontends.extract import extract_features

ROOT = Path(__file__).resolve().parents[1]
CNNS = [n for n in FRONTENDS.names() if n != "mfcc"]

# name: (small, large) feature sizes (facts table A5; cnn_music small widths are ours)
SIZES = {
    "sample_level": (161, 3584), "frame_level": (160, 3584), "frame_level_many": (160, 3584),
    "vertical_7x96": (160, 3585), "vertical_7x86": (160, 3585), "timbral": (168, 3584), "temporal": (168, 3584),
    "timbral_temporal": (170, 3584), "timbral_time": (170, 3584), "vgg": (160, 3585),
}


def _input(fe, batch=1, seconds=1.5, seed=0, frames=None) -> torch.Tensor:
    """A short random batch in the front-end's layout (waveform ~0.1 rms; log-mel ~ -40 ± 10 dB)."""
    g = torch.Generator().manual_seed(seed)
    if fe.input == "logmel":
        return -40.0 + 10.0 * torch.randn(batch, 1, frames or 150, 96, generator=g)
    return 0.1 * torch.randn(batch, int(seconds * fe.sr), generator=g)


@pytest.fixture(scope="module")
def small():
    return {n: create_frontend(n, width="small", seed=3) for n in CNNS}


def test_registry_lists_every_frontend():
    assert set(FRONTENDS.names()) == set(SIZES) | {"mfcc"}
    rows = {r["name"]: r for r in list_frontends()}
    for name, (s, lg) in SIZES.items():
        assert rows[name]["n_features"] == {"small": s, "large": lg}
    assert rows["mfcc"]["n_features"] == {"-": 120} and rows["mfcc"]["input"] == "mfcc"


@pytest.mark.parametrize("name", CNNS)
def test_small_feature_size(small, name):
    fe = small[name]
    assert fe.n_features == SIZES[name][0] == sum(fe.layer_sizes.values())
    with torch.inference_mode():
        assert fe.features(_input(fe)).shape == (1, fe.n_features)


@pytest.mark.parametrize("name", CNNS)
def test_large_feature_size(name, monkeypatch):
    monkeypatch.setattr("fewshot.frontends._base.he_normal_", lambda w, g: w)  # sizes only: skip drawing weights
    fe = create_frontend(name, width="large", seed=0)
    assert fe.n_features == SIZES[name][1]
    fe.to("meta")  # shapes only, no arithmetic
    x = torch.empty(1, 1, 1300, 96, device="meta") if fe.input == "logmel" else torch.empty(1, 3000, device="meta")
    assert fe.features(x, plain=True).shape == (1, SIZES[name][1])


@pytest.mark.parametrize("name", CNNS)
def test_filters_override(name):
    fe = create_frontend(name, filters=8, seed=0)
    assert fe.filters == 8 and fe.width == "f8"
    assert create_frontend(name, width="f8", seed=0).identity == fe.identity
    with torch.inference_mode():
        assert fe.features(_input(fe)).shape == (1, fe.n_features)
    assert fe.n_features == FRONTENDS.get(name).meta["count"](8)


@pytest.mark.parametrize("name", CNNS)
def test_deterministic_under_seed_and_different_between_seeds(small, name):
    fe = small[name]
    x = _input(fe)
    again = create_frontend(name, width="small", seed=3)
    other = create_frontend(name, width="small", seed=4)
    with torch.inference_mode():
        a, b, c = fe.features(x), again.features(x), other.features(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert fe.identity == again.identity != other.identity


@pytest.mark.parametrize("name", CNNS)
def test_batch_consistent(small, name):
    fe = small[name]
    x = _input(fe, batch=2)
    with torch.inference_mode():
        both = fe.features(x)
        one = torch.cat([fe.features(x[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(both, one, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CNNS)
def test_optimized_equals_plain(small, name):
    fe = small[name]
    x = _input(fe, batch=2)
    with torch.inference_mode():
        fast, plain = fe.forward(x), fe.forward(x, plain=True)
    assert len(fast) == len(plain) == len(fe.feature_layers)
    for f, p in zip(fast, plain, strict=True):
        if f.dim() == 2 and p.dim() > 2:  # a formulation may return a map's channel means (temporal's GEMM)
            p = p.flatten(2).mean(-1)
        assert f.shape == p.shape
        # float tolerance relative to the map's scale: a reordered sum (e.g. mel bands as conv channels) moves
        # near-zero entries of a map whose values reach ~60 by ~1e-6 of that scale
        torch.testing.assert_close(f, p, rtol=1e-4, atol=1e-5 * max(1.0, p.abs().max().item()))


@pytest.mark.parametrize("name", ["timbral", "frame_level_many"])
def test_optimized_equals_plain_chunked_and_odd_lengths(name):
    fe = create_frontend(name, filters=16, seed=1)
    if name == "timbral":
        fe.chunk = 5  # several filter chunks
        x = _input(fe, frames=33)
    else:
        x = 0.1 * torch.randn(1, 5001, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(fe.features(x), fe.features(x, plain=True), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CNNS)
def test_short_input_repeat_padded(small, name):
    fe = create_frontend(name, width="small", seed=3, seconds=1.0)
    target = fe.length
    assert target is not None and target >= 7
    short = _input(fe, seconds=0.3, frames=40)[0]
    clip = short[0].numpy() if fe.input == "logmel" else short.numpy()
    tiled = np.concatenate([clip] * math.ceil(target / len(clip)))[:target]  # to --seconds, then to min_length
    tiled = np.concatenate([tiled] * math.ceil(fe.min_length / target))[:max(target, fe.min_length)]
    got = extract_features(fe, [clip])[0]
    x = torch.from_numpy(tiled)[None]
    with torch.inference_mode():
        want = fe.features(x.unsqueeze(1) if fe.input == "logmel" else x)[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_vgg_pads_to_1280_frames(small):
    fe = small["vgg"]
    assert fe.min_length == 1280
    x = _input(fe, frames=300)
    with torch.inference_mode():
        a = fe.features(x)
        b = fe.features(repeat_pad(x, 1280, axis=2))
    assert torch.equal(a, b)


def test_repeat_pad():
    x = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(repeat_pad(x, 7), [0, 1, 2, 0, 1, 2, 0])
    assert repeat_pad(x, 2) is x
    m = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert repeat_pad(m, 5).shape == (5, 3)
    assert torch.equal(repeat_pad(torch.arange(3), 5), torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ParameterError, match="empty"):
        repeat_pad(np.zeros(0), 3)


@pytest.mark.parametrize("name", ["vgg", "sample_level", "frame_level", "timbral_1x38"])
def test_weight_init_std(name):
    if name == "timbral_1x38":
        conv = create_frontend("timbral", width="large", seed=0).timbral[5]
        weights = [conv.weight]
    else:
        fe = create_frontend(name, width="small", filters=64, seed=0)
        weights = [p for p in fe.parameters() if p.dim() > 1 and p.numel() >= 4000]
    assert weights
    for w in weights:
        fan_in = w[0].numel()
        assert abs(float(w.std()) / math.sqrt(2.0 / fan_in) - 1.0) < 0.05
        assert float(w.abs().max()) <= 2 * math.sqrt(2.6 / fan_in) * (1 + 1e-6)
        assert abs(float(w.mean())) < 0.05 * math.sqrt(2.0 / fan_in) * 10
    biases = [p for p in create_frontend("vgg", seed=0).parameters() if p.dim() == 1]
    assert all(float(b.abs().max()) == 0 for b in biases)


def test_construction_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    create_frontend("vgg", seed=5)
    assert torch.equal(state, torch.random.get_rng_state())


def test_frame_level_backend_gives_per_filter_means(small):
    fe = small["frame_level"]
    with torch.inference_mode():
        f = fe.features(_input(fe))[0]
    backend = f[fe.filters:].reshape(3, fe.filters)
    # the reference kept one scalar per back-end layer and zeros elsewhere (facts C-A1); ours varies per filter
    assert (backend.std(dim=1) > 0).all()


def test_width_and_filter_errors():
    with pytest.raises(ParameterError, match="width must be one of small, large or f<filters>; got 'medium'"):
        create_frontend("vgg", width="medium")
    with pytest.raises(ParameterError, match="filters must be a positive int; got 0"):
        create_frontend("vgg", filters=0)
    with pytest.raises(ParameterError, match="unknown front-end 'vggg'; available: .*path/to/file.py:Name"):
        create_frontend("vggg")
    with pytest.raises(ParameterError, match="front-end 'mfcc' has no filters"):
        create_frontend("mfcc", filters=3)
    with pytest.raises(ParameterError, match="seconds must be positive"):
        create_frontend("vgg", seconds=0)


def test_input_errors(small):
    with pytest.raises(ParameterError, match=r"input must be log-mels \[batch, 1, n_frames, 96\]; got shape"):
        small["vgg"].features(torch.zeros(1, 1, 100, 40))
    with pytest.raises(ParameterError, match=r"input must be waveforms \[batch, n_samples\]"):
        small["sample_level"].features(torch.zeros(1, 1, 100, 40))
    with pytest.raises(ParameterError, match="input 0 must be a non-empty"):
        extract_features(small["sample_level"], [np.zeros((2, 3))])
    with pytest.raises(ParameterError, match="input 1 has 40 mel bands; expected 96"):
        extract_features(small["temporal"], [np.zeros((10, 96)), np.zeros((10, 40))])
    with pytest.raises(ParameterError, match="unknown layer"):
        small["vgg"].features(_input(small["vgg"]), layers=["pool9"])
    with pytest.raises(ParameterError, match="batch_size must be a positive int"):
        extract_features(small["temporal"], [np.zeros((10, 96))], batch_size=0)
    with pytest.raises(ParameterError, match="device must be"):
        extract_features(small["temporal"], [np.zeros((10, 96))], device="tpu")


def test_extract_features_groups_lengths_layers_and_progress(small):
    fe = small["sample_level"]
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (3000, 5000, 3000, 2500)]
    seen = []
    X = extract_features(fe, clips, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    assert X.shape == (4, 161) and X.dtype == np.float32
    assert seen[-1] == (4, 4)
    with torch.inference_mode():
        for clip, row in zip(clips, X, strict=True):
            np.testing.assert_allclose(row, fe.features(torch.from_numpy(clip)[None])[0].numpy(), rtol=1e-4,
                                       atol=1e-5)
    sub = extract_features(fe, clips, layers=["pool1", "conv0"])
    np.testing.assert_allclose(sub, X[:, :46], rtol=1e-5, atol=1e-6)
    plain = extract_features(fe, clips, plain=True)
    np.testing.assert_allclose(plain, X, rtol=1e-4, atol=1e-5)
    assert extract_features(fe, []).shape == (0, 161)


def test_flags_and_names():
    assert frontend_has_width("vgg") and not frontend_has_width("mfcc")
    assert is_random_frontend("timbral") and not is_random_frontend("mfcc")
    check_frontend_name("vgg")
    with pytest.raises(ParameterError, match="unknown front-end"):
        check_frontend_name("nope")
    spec = f"{ROOT / 'docs/examples/my_frontend.py'}:MyFrontend"
    check_frontend_name(spec)
    assert is_random_frontend(spec) and not frontend_has_width(spec)


def test_mfcc_frontend():
    pytest.importorskip("fewshot.data.spectrogram")
    fe = create_frontend("mfcc", width="large", seed=1)
    assert fe.n_features == 120 and fe.input == "mfcc" and fe.sr == 12000
    assert fe.identity == create_frontend("mfcc", seed=2).identity  # no seed in the cache key
    rng = np.random.default_rng(0)
    X = extract_features(fe, [0.1 * rng.standard_normal(n).astype(np.float32) for n in (12000, 1000)])
    assert X.shape == (2, 120) and np.isfinite(X).all()


# ---------------------------------------------------------------------------------- user front-ends
def test_user_frontend_docs_example():
    spec = f"{ROOT / 'docs/examples/my_frontend.py'}:MyFrontend"
    fe = create_frontend(spec, seed=7)
    assert fe.input == "waveform" and fe.sr == 16000 and fe.min_length == 400
    assert fe.n_features == 96 and fe.feature_layers == ("map0", "map1")
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 300)]
    X = extract_features(fe, clips)
    assert X.shape == (2, 96)
    np.testing.assert_array_equal(X, extract_features(create_frontend(spec, seed=7), clips))
    assert not np.allclose(X, extract_features(create_frontend(spec, seed=8), clips))
    assert "source=" in fe.identity and "seed=7" in fe.identity


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_user_frontend_factory_instance_and_logmel(tmp_path):
    f = _write(tmp_path / "fe_kinds.py", """
        import torch
        from torch import nn

        class Mel(nn.Module):
            input = "logmel"
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 5, 3)          # default init: seeded through fork_rng
            def forward(self, x):
                return self.conv(x)                      # one map [batch, 5, t, f]

        def factory(seed):
            torch.manual_seed(seed)
            return lambda x: x.abs().mean(dim=1, keepdim=True).expand(-1, 3)   # [batch, 3]

        class Wrong(nn.Module):
            def forward(self, x):
                return x[:1]

        instance = Wrong()
    """)
    mel = create_frontend(f"{f}:Mel", seed=1)
    assert mel.input == "logmel" and mel.spectrogram == "elmarc" and mel.n_features == 5
    X = extract_features(mel, [np.zeros((20, 96), np.float32) - 40])
    np.testing.assert_array_equal(X, extract_features(create_frontend(f"{f}:Mel", seed=1),
                                                      [np.zeros((20, 96), np.float32) - 40]))
    fac = create_frontend(f"{f}:factory", seed=2)
    assert extract_features(fac, [np.ones(100, np.float32)]).shape == (1, 3)
    inst = create_frontend(f"{f}:instance", seed=2)
    assert not inst.random and "seed=-" in inst.identity
    with pytest.raises(FewShotError, match=r"returned a tensor of shape \(1, 100\) for a batch of 2"):
        extract_features(inst, [np.ones(100, np.float32)] * 2, batch_size=2)


def test_hear_module(tmp_path, monkeypatch):
    _write(tmp_path / "tiny_hear.py", """
        import torch

        class Model(torch.nn.Module):
            sample_rate = 8000
            scene_embedding_size = 4
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.ones(4))

        def load_model(model_file_path=""):
            return Model()

        def get_scene_embeddings(audio, model):
            assert audio.dim() == 2
            return torch.stack([audio.mean(1), audio.std(1), audio.abs().max(1).values, audio[:, 0]], 1) * model.w
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("tiny_hear:", str(tmp_path / "tiny_hear.py")):
        fe = create_frontend(spec, seed=0)
        assert fe.sr == 8000 and fe.n_features == 4 and not fe.random
        X = extract_features(fe, [np.linspace(-1, 1, 800, dtype=np.float32)])
        np.testing.assert_allclose(X[0, :3], [0.0, np.linspace(-1, 1, 800).std(ddof=1), 1.0], atol=1e-5)
    assert not is_random_frontend("tiny_hear:")
    sys.modules.pop("tiny_hear", None)


def _net(body: str) -> str:
    return f"import torch\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        {body}\n"


@pytest.mark.parametrize(
    ("body", "name", "error", "match"),
    [
        (_net("return x.mean(dim=1)"), "Net", FewShotError,
         r"front-end '.*bad_fe.py:Net' returned a tensor of shape \(1,\) for a batch of 1; "
         r"expected a list of feature maps \[batch, channels, \.\.\.\]"),
        (_net("return 'features'"), "Net", FewShotError, r"returned a str; expected a list of feature maps"),
        (_net("return []"), "Net", FewShotError, r"returned an empty list"),
        (_net("return [x[:, :4], 3]"), "Net", FewShotError, r"returned a int \(item 1\)"),
        (_net("return x[:, :4] > 0"), "Net", FewShotError, r"returned a torch.bool tensor"),
        (_net("raise RuntimeError('boom')"), "Net", FewShotError,
         r"failed on a batch of shape \(1, 16000\): RuntimeError: boom"),
        ("import torch\nclass Net(torch.nn.Module):\n    input = 'spectrum'\n", "Net", ParameterError,
         r"attribute input must be 'waveform' or 'logmel'; got 'spectrum'"),
        ("import torch\nclass Net(torch.nn.Module):\n    sr = 0\n", "Net", ParameterError,
         r"attribute sr must be a positive int; got 0"),
        ("x = 1\n", "missing", ParameterError, r"has no attribute 'missing'; it defines: x"),
        ("x = 1\n", "x", ParameterError, r"expected an nn.Module class, instance or factory; got a int"),
        ("raise ImportError('no deps')\n", "x", FewShotError, r"importing .* failed: ImportError: no deps"),
        ("def make(seed):\n    raise ValueError('nope')\n", "make", FewShotError,
         r"building it failed: ValueError: nope"),
    ],
)
def test_bad_user_frontends(tmp_path, body, name, error, match):
    f = _write(tmp_path / "bad_fe.py", body)
    with pytest.raises(error, match=match):
        fe = create_frontend(f"{f}:{name}", seed=0)
        extract_features(fe, [np.zeros(16000, np.float32)])


def test_bad_user_specs(tmp_path):
    with pytest.raises(ParameterError, match="file 'nowhere/x.py' does not exist"):
        create_frontend("nowhere/x.py:Net")
    with pytest.raises(ParameterError, match="no module named 'no_such_module_xyz'"):
        create_frontend("no_such_module_xyz:Net")
    f = _write(tmp_path / "plain_mod.py", "x = 1\n")
    with pytest.raises(ParameterError, match="needs load_model\\(\\) and get_scene_embeddings\\(\\)"):
        create_frontend(str(f))
    with pytest.raises(ParameterError, match="a user front-end takes no filters"):
        create_frontend(f"{f}:x", filters=3)


def test_registered_names_win(tmp_path, monkeypatch):
    _write(tmp_path / "vgg.py", "raise ImportError('should not be imported')\n")
    monkeypatch.chdir(tmp_path)
    assert create_frontend("vgg", seed=0).name == "vgg"
