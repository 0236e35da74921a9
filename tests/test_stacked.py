"""Several seeds' networks in one pass: stacked features equal separate ones; the protocol's rows do not change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fewshot.exceptions import ParameterError
from fewshot.frontends import FRONTENDS, create_frontend
from fewshot.frontends import extract_many as many_module
from fewshot.frontends import stacked as stacked_module
from fewshot.frontends.extract import extract_features
from fewshot.frontends.extract_many import extract_features_many
from fewshot.frontends.stacked import MAX_SEEDS, stack_frontends, stack_size

CNNS = [n for n in FRONTENDS.names() if FRONTENDS.get(n).meta["widths"] is not None]
TOL = {"rtol": 1e-4, "atol": 1e-4}  # formulations differ by float rounding (~1e-6 of maps up to ~100)


def _batch(fe, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if fe.input == "logmel":
        return -40.0 + 10.0 * torch.randn(batch, 1, length, 96, generator=g)
    return 0.1 * torch.randn(batch, length, generator=g)


def _length(fe) -> int:
    if fe.input == "logmel":
        return 1283 if fe.name == "vgg" else 37  # odd frame counts
    return 5001  # not a multiple of 3 or 32


def _clips(fe, lengths: list[int]) -> list[np.ndarray]:
    return [(_batch(fe, 1, n, seed=i)[0, 0] if fe.input == "logmel" else _batch(fe, 1, n, seed=i)[0]).numpy()
            for i, n in enumerate(lengths)]


def _networks(name: str, k: int, filters: int = 5) -> list:
    return [create_frontend(name, filters=filters, seed=s) for s in range(11, 11 + k)]


@pytest.fixture
def always_stack(monkeypatch):
    """Stack wherever the front-ends allow it (the measured rule would run some of them one at a time)."""
    calls = []
    original = many_module._extract_stacked
    monkeypatch.setattr(many_module, "stack_size", lambda fe, device="cpu", precision="float32": MAX_SEEDS)

    def spy(stacked, *args):
        calls.append(stacked.n_seeds)
        return original(stacked, *args)

    monkeypatch.setattr(many_module, "_extract_stacked", spy)
    monkeypatch.setattr(many_module, "_stacked_if_faster", lambda group, *a: stack_frontends(group))
    return calls


# ----------------------------------------------------------------- the stacked network
@pytest.mark.parametrize("name", CNNS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_stacked_maps_and_features_equal_separate(name, k):
    fes = _networks(name, k)
    st = stack_frontends(fes)
    x = _batch(fes[0], 2, _length(fes[0]))
    with torch.inference_mode():
        feats = st.features(x)
        maps = st.forward(x)
        assert feats.shape == (k, 2, fes[0].n_features)
        for fe, f, m in zip(fes, feats, maps, strict=True):
            torch.testing.assert_close(f, fe.features(x), **TOL)
            for got, want in zip(m, fe.forward(x), strict=True):
                if got.dim() == 2 or want.dim() == 2:  # a formulation may return a map as its channel means
                    got, want = (t if t.dim() == 2 else t.flatten(2).mean(-1) for t in (got, want))
                assert got.shape == want.shape
                torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("name", CNNS)
def test_stacked_conv_path_equals_plain(name):
    """The stacked network through its own optimized convolutions (``gemm=False``: the only path of the networks
    with per-seed layers) gives each network's plain features. The test above compares it with the separate
    networks' optimized paths, which may share its code."""
    fes = _networks(name, 3)
    st = stack_frontends(fes)
    st.net.gemm = False
    x = _batch(fes[0], 2, _length(fes[0]))
    with torch.inference_mode():
        for fe, f in zip(fes, st.features(x), strict=True):
            torch.testing.assert_close(f, fe.features(x, plain=True), **TOL)


@pytest.mark.parametrize("name", ["timbral_temporal", "frame_level_many", "vgg"])
def test_stacked_layers_subset(name):
    fes = _networks(name, 2)
    st = stack_frontends(fes)
    layers = list(fes[0].feature_layers[1::2])
    x = _batch(fes[0], 1, _length(fes[0]))
    with torch.inference_mode():
        for fe, f in zip(fes, st.features(x, layers=layers), strict=True):
            torch.testing.assert_close(f, fe.features(x, layers=layers), **TOL)


def test_stacking_leaves_the_networks_alone():
    fes = _networks("vertical_7x96", 2)
    before = [fe.conv.weight.clone() for fe in fes]
    st = stack_frontends(fes)
    assert st.net.conv.out_channels == 2 * fes[0].filters
    assert all(fe.conv.out_channels == fe.filters for fe in fes)
    assert all(torch.equal(fe.conv.weight, w) for fe, w in zip(fes, before, strict=True))


# ----------------------------------------------------------------- extraction
@pytest.mark.parametrize("name", CNNS)
def test_extract_features_many_equals_separate(name, always_stack):
    fes = _networks(name, 3, filters=4)
    n = _length(fes[0])
    clips = _clips(fes[0], [n, n + 2, n, n + 2, n + 5])  # two clips per batch of one length, an odd one out
    got = extract_features_many(fes, clips, batch_size=2)
    assert always_stack == [3]
    want = [extract_features(fe, clips, batch_size=2) for fe in fes]
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape == (5, fes[0].n_features) and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_extract_features_many_layers_progress_and_groups(always_stack, monkeypatch):
    monkeypatch.setattr(many_module, "stack_size", lambda *a, **k: 2)  # 5 networks → stacked groups of 2, 2, 1
    fes = _networks("temporal", 5, filters=4)
    clips = _clips(fes[0], [40, 41, 40])
    seen = []
    got = extract_features_many(fes, clips, layers=["temporal_64"], progress=lambda d, t: seen.append((d, t)))
    assert always_stack == [2, 2]
    assert seen[-1] == (15, 15) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    for fe, g in zip(fes, got, strict=True):
        np.testing.assert_allclose(g, extract_features(fe, clips, layers=["temporal_64"]), rtol=1e-4, atol=1e-5)


def test_extract_features_many_falls_back_one_at_a_time(always_stack):
    mixed = [create_frontend("timbral", filters=4, seed=0), create_frontend("timbral", filters=5, seed=1)]
    mfcc = [create_frontend("mfcc", seed=0)]
    clips = _clips(mixed[0], [30, 31])
    for fes, inputs in ((mixed, clips), (mfcc, [np.random.default_rng(0).standard_normal(3000).astype(np.float32)])):
        got = extract_features_many(fes, inputs)
        for fe, g in zip(fes, got, strict=True):
            np.testing.assert_array_equal(g, extract_features(fe, inputs))
    assert always_stack == []


def test_extract_features_many_checks_its_arguments():
    fe = create_frontend("temporal", filters=4, seed=0)
    with pytest.raises(ParameterError, match="frontends must be a non-empty list of front-ends; got an empty list"):
        extract_features_many([], [])
    with pytest.raises(ParameterError, match="frontends must be a non-empty list of front-ends; got CnnMusic"):
        extract_features_many(fe, [])
    with pytest.raises(ParameterError, match=r"frontends\[1\] must be a Frontend; got str"):
        extract_features_many([fe, "temporal"], [])
    with pytest.raises(ParameterError, match="batch_size must be a positive int"):
        extract_features_many([fe], [], batch_size=0)
    with pytest.raises(ParameterError, match="precision must be"):
        extract_features_many([fe], [], precision="fp8")


# ----------------------------------------------------------------- what does not stack
def test_stack_frontends_rejects_mismatched_frontends(tmp_path):
    t = create_frontend("timbral", filters=4, seed=0)
    cases = [
        ([t, create_frontend("temporal", filters=4, seed=1)], r"frontends\[1\] has name='temporal'"),
        ([t, create_frontend("timbral", filters=5, seed=1)], r"frontends\[1\] has width='f5'"),
        ([t, create_frontend("timbral", filters=4, seed=1, seconds=2.0)], r"frontends\[1\] has seconds=2.0"),
        ([t, create_frontend("vgg", filters=4, seed=1)], r"frontends\[1\] is a VGG, frontends\[0\] a CnnMusic"),
        ([t, create_frontend("timbral", filters=4, seed=0)],
         r"distinct seeds \(one network each\); got seeds \[0, 0\]"),
        ([create_frontend("mfcc", seed=0)], r"frontends\[0\] \('mfcc', MFCC\) is not a registered random CNN"),
        ([], "frontends must be a non-empty list of front-ends; got an empty list"),
        ([t, "timbral"], r"frontends\[1\] must be a Frontend; got str"),
        (_networks("temporal", MAX_SEEDS + 1, filters=2), f"at most {MAX_SEEDS} networks"),
    ]
    for frontends, match in cases:
        with pytest.raises(ParameterError, match="cannot stack front-ends: .*" + match):
            stack_frontends(frontends)
    user = tmp_path / "net.py"
    user.write_text("import torch\n\nclass Net(torch.nn.Module):\n    input = 'waveform'\n\n"
                    "    def forward(self, x):\n        return [x.unsqueeze(1)]\n")
    fes = [create_frontend(f"{user}:Net", seed=s) for s in (0, 1)]
    with pytest.raises(ParameterError, match=r"is not a registered random CNN; only SampleLevel, "):
        stack_frontends(fes)
    got = extract_features_many(fes, [np.ones(100, np.float32)])
    np.testing.assert_array_equal(got[1], extract_features(fes[1], [np.ones(100, np.float32)]))


@pytest.fixture
def untuned():
    """Tuning off: the static rules (and bit-for-bit repeatable formulation choices)."""
    from fewshot.frontends import tuning

    tuning.set_tuning(False)
    yield
    tuning.set_tuning(True)


def test_stack_size_offers_every_narrow_network_when_tuned(monkeypatch):
    monkeypatch.setattr("fewshot.frontends._base.he_normal_", lambda w, g: w)
    assert stack_size(create_frontend("timbral", width="small", seed=0)) == MAX_SEEDS  # F 12: measured per machine
    assert stack_size(create_frontend("vertical_7x96", width="small", seed=0)) == 8  # its own limit: 1280 // 160
    # one-channel spectrogram filters: offered at any width, up to 12,000 filters per pass
    assert stack_size(create_frontend("timbral_temporal", width="large", seed=0)) == MAX_SEEDS  # F 128
    assert stack_size(create_frontend("vertical_7x86", width="large", seed=0)) == 3  # 12,000 // 3,585
    assert stack_size(create_frontend("vgg", width="large", seed=0)) == 1  # deep layers: F 717 never paid
    assert stack_size(create_frontend("sample_level", width="large", seed=0)) == 1
    assert stack_size(create_frontend("temporal", width="large", seed=0)) == 1  # F 256: measured ≤ 1.03×
    assert stack_size(create_frontend("mfcc", seed=0)) == 1


def test_stacking_is_measured_and_remembered(monkeypatch):
    from fewshot.frontends import tuning

    tuning.clear_tuned()
    fes = _networks("temporal", 3, filters=4)
    clips = _clips(fes[0], [40, 40])
    got = extract_features_many(fes, clips)
    keys = [k for k in tuning.tuned_choices() if k[0] == "stack"]
    assert len(keys) == 1 and keys[0][2] == 3 and isinstance(tuning.tuned_choices()[keys[0]], bool)
    for fe, g in zip(fes, got, strict=True):
        np.testing.assert_allclose(g, extract_features(fe, clips), **TOL)


def test_stack_size_rule(monkeypatch, untuned):
    monkeypatch.setattr("fewshot.frontends._base.he_normal_", lambda w, g: w)  # the rule only: skip drawing weights
    small = create_frontend("temporal", width="small", seed=0)
    assert stack_size(small) == MAX_SEEDS  # measured 2.2-3.1x per network-clip
    assert stack_size(create_frontend("temporal", filters=48, seed=0)) == 3  # K·F ≤ 144: 1.4x; at K 5: 0.5x
    assert stack_size(create_frontend("frame_level", width="small", seed=0)) == MAX_SEEDS  # F 40: 1.1-1.2x
    assert stack_size(small, device="cuda") == 1  # not measured there
    assert stack_size(small, precision="bfloat16") == 1
    assert stack_size(create_frontend("mfcc", seed=0)) == 1
    for name in ("sample_level", "timbral", "vertical_7x86", "vgg"):  # measured no faster stacked
        assert stack_size(create_frontend(name, width="small", seed=0)) == 1
    for name in CNNS:  # wide networks are convolution-bound: one at a time
        assert stack_size(create_frontend(name, width="large", seed=0)) == 1


# ----------------------------------------------------------------- the protocol
SYNTH = "synth:classes=2,clips=6,seconds=1"


@pytest.mark.parametrize("name", CNNS)
def test_protocol_rows_do_not_depend_on_stacking(name, tmp_path, always_stack):
    from fewshot.data.cache import ArrayCache
    from fewshot.data.datasets import load_dataset
    from fewshot.methods import parse_method
    from fewshot.protocols.config import ExperimentConfig
    from fewshot.protocols.evaluate import Context

    ds = load_dataset(SYNTH)
    spec = parse_method(f"{name}-f3+knn")
    cfg = ExperimentConfig(protocol="run", dataset=SYNTH, methods=[spec.text], runs=3).validate()
    cache = ArrayCache(tmp_path / "stacked")
    stacked = Context(ds, cfg, cache, "cpu")
    first, rest = np.arange(0, len(ds), 2), np.arange(len(ds))
    rows = {run: [stacked.features(spec, run, first), stacked.features(spec, run, rest)] for run in range(3)}
    assert always_stack == [3, 3]  # run 0 extracted runs 1 and 2 too, for the clips it lacked; runs 1, 2 none
    separate = Context(ds, cfg, ArrayCache(tmp_path / "separate"), "cpu", stack_runs=False)
    for run in range(3):
        fe = stacked._build_frontend(spec, run)
        direct = extract_features(fe, stacked._inputs(fe, list(rest)))
        for got, index in zip(rows[run], (first, rest), strict=True):
            np.testing.assert_allclose(got, separate.features(spec, run, index), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got, direct[index], rtol=1e-5, atol=1e-6)
        # each network's rows are cached under its own identity: a fresh context reads them without extracting
        fresh = Context(ds, cfg, cache, "cpu")
        fresh._extract_many = lambda *a: pytest.fail("extracted although every row was cached")
        np.testing.assert_array_equal(fresh.features(spec, run, rest), rows[run][1])
    assert always_stack == [3, 3]  # stack_runs=False never stacks


def test_protocol_without_cache_keeps_later_runs_rows(always_stack):
    from fewshot.data.datasets import load_dataset
    from fewshot.methods import parse_method
    from fewshot.protocols.config import ExperimentConfig
    from fewshot.protocols.evaluate import Context

    ds = load_dataset(SYNTH)
    spec = parse_method("temporal-f3+knn")
    cfg = ExperimentConfig(protocol="run", dataset=SYNTH, methods=[spec.text], runs=2).validate()
    ctx = Context(ds, cfg, None, "cpu")
    X0 = ctx.features(spec, 0, np.arange(len(ds)))
    ctx._extract_many = lambda *a: pytest.fail("run 1 was extracted again")
    X1 = ctx.features(spec, 1, np.arange(len(ds)))
    assert always_stack == [2] and not np.allclose(X0, X1)
    fe1 = ctx._build_frontend(spec, 1)
    np.testing.assert_allclose(X1, extract_features(fe1, ctx._inputs(fe1, list(range(len(ds))))), rtol=1e-5,
                               atol=1e-6)


def test_experiment_results_do_not_depend_on_stacking(tmp_path, monkeypatch, always_stack, untuned):
    from pathlib import Path

    from fewshot.protocols.config import ExperimentConfig
    from fewshot.protocols.engine import run_experiment
    from fewshot.results.store import RESULT_COLUMNS, read_results

    def rows(out: str, size: int) -> list[tuple]:
        for module in (stacked_module, many_module):  # the run's grouping and the extraction's
            monkeypatch.setattr(module, "stack_size", lambda *a, **k: size)
        cfg = ExperimentConfig(protocol="run", dataset="synth:classes=3,clips=8,seconds=1",
                               methods=["temporal-small+knn", "frame_level-f4+knn", "mfcc+knn"], n=[1, "all"],
                               runs=3, folds=["1", "2"], cache_dir=str(tmp_path / out / "cache"),
                               out=str(tmp_path / out / "run"), device="cpu").validate()
        run_dir = run_experiment(cfg, show_progress=False)
        return sorted(tuple(r[c] for c in RESULT_COLUMNS if c != "seconds")
                      for r in read_results(Path(run_dir) / "results.csv"))

    stacked = rows("stacked", 3)
    assert always_stack and set(always_stack) <= {2, 3}  # run 0's networks stacked with runs 1 and 2 (or run 2's)
    n_stacked = len(always_stack)
    separate = rows("separate", 1)
    assert len(always_stack) == n_stacked
    assert len(stacked) > 0 and stacked == separate
