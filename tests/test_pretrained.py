"""Tests of fewshot.pretrained: the TF bundle reader, the input pipeline and the PyTorch port
of the four musicnn models against reference outputs of musicnn's own TensorFlow code.

The references in tests/fixtures/musicnn/ were made by scripts/make_musicnn_fixtures.py
(see the README there); tests that need the checkpoints skip when musicnn is not installed
(``pip install --no-deps musicnn==0.1.0``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot.exceptions import DataError, FewShotError, ParameterError
from fewshot.pretrained import PRETRAINED, create_pretrained, list_pretrained, tfbundle
from fewshot.pretrained.inputs import log_compress, log_mel, make_patches, mel_filterbank

FIXTURES = Path(__file__).parent / "fixtures" / "musicnn"
PADDINGS = ("reflect", "constant")
MODELS = ("mtt_musicnn", "msd_musicnn", "mtt_vgg", "msd_vgg")
TAGGRAM_ATOL = 1e-4
EMBEDDING_ATOL = 1e-3


def _has_musicnn() -> bool:
    try:
        return importlib.util.find_spec("musicnn") is not None
    except (ImportError, ValueError):
        return False


needs_musicnn = pytest.mark.skipif(
    not _has_musicnn(), reason="musicnn not installed (pip install --no-deps musicnn==0.1.0)"
)


def make_signal(recipe: dict) -> np.ndarray:
    """Same recipe as scripts/make_musicnn_fixtures.py (checked by sha256 below)."""
    n = int(round(recipe["seconds"] * 16000))
    t = np.arange(n, dtype=np.float64) / 16000
    if recipe["kind"] == "sine":
        y = recipe["amplitude"] * np.sin(2 * np.pi * recipe["freq"] * t)
    elif recipe["kind"] == "noise":
        y = recipe["scale"] * np.random.RandomState(recipe["seed"]).standard_normal(n)
    else:
        rate = (recipe["f1"] - recipe["f0"]) / recipe["seconds"]
        y = recipe["amplitude"] * np.sin(2 * np.pi * (recipe["f0"] * t + 0.5 * rate * t * t))
    return y.astype(np.float32)


def _meta(padding: str) -> dict:
    return json.loads((FIXTURES / padding / "meta.json").read_text())


_SIGNALS = {name: make_signal(r) for name, r in _meta("reflect")["signals"].items()}


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name: str, padding: str):
        if (name, padding) not in cache:
            cache[name, padding] = create_pretrained(name, padding=padding)
        return cache[name, padding]

    return get


# --------------------------------------------------------------------------- fixtures themselves


@pytest.mark.parametrize("padding", PADDINGS)
def test_fixture_signals_regenerate_bit_identically(padding):
    meta = _meta(padding)
    assert meta["padding"] == padding
    for name, recipe in meta["signals"].items():
        assert hashlib.sha256(make_signal(recipe).tobytes()).hexdigest() == recipe["sha256"], name


# --------------------------------------------------------------------------- tensor-bundle reader

_MUSICNN_MODEL_VARS = (
    ["batch_normalization"]
    + [f"batch_normalization_{i}" for i in range(1, 11)]
    + ["conv2d"] + [f"conv2d_{i}" for i in range(1, 8)]
    + ["dense", "dense_1"]
)
_VGG_MODEL_VARS = ["batch_normalization"] + [f"batch_normalization_{i}" for i in range(1, 6)] + [
    f"{i}CNN" for i in range(1, 6)
] + ["dense"]


def _expected_names(scopes: list[str]) -> set[str]:
    names = set()
    for scope in scopes:
        if scope.startswith("batch_normalization"):
            names |= {f"{scope}/{v}" for v in ("beta", "gamma", "moving_mean", "moving_variance")}
        else:
            names |= {f"{scope}/kernel", f"{scope}/bias"}
    return names


@needs_musicnn
@pytest.mark.parametrize(
    ("checkpoint", "n_all", "n_model", "n_numbers"),
    [("MTT_musicnn", 150, 64, 792_079), ("MSD_musicnn", 150, 64, 792_079),
     ("MTT_vgg", 86, 36, 607_030), ("MSD_vgg", 86, 36, 607_030)],
)
def test_reader_lists_every_variable(checkpoint, n_all, n_model, n_numbers):
    everything = tfbundle.list_variables(checkpoint)
    model_vars = tfbundle.list_variables(checkpoint, include_optimizer=False)
    assert len(everything) == n_all and len(model_vars) == n_model
    scopes = _MUSICNN_MODEL_VARS if "musicnn" in checkpoint else _VGG_MODEL_VARS
    assert set(model_vars) == _expected_names(scopes)
    # Adam slots mirror every trainable variable; plus the two beta powers
    trainable = [n for n in model_vars if "moving_" not in n]
    assert set(everything) == set(model_vars) | {f"{n}/Adam" for n in trainable} | {
        f"{n}/Adam_1" for n in trainable} | {"beta1_power", "beta2_power"}
    assert all(info.dtype == "float32" for info in everything.values())
    for name in trainable:
        assert everything[f"{name}/Adam"].shape == everything[name].shape
    weights = tfbundle.load_variables(checkpoint)
    assert set(weights) == set(model_vars)
    assert sum(w.size for w in weights.values()) == n_numbers
    for name, w in weights.items():
        assert w.dtype == np.float32 and w.shape == model_vars[name].shape and np.all(np.isfinite(w))


@needs_musicnn
def test_reader_specific_shapes_and_values():
    mus = tfbundle.list_variables("MSD_musicnn")
    assert mus["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert mus["conv2d_1/kernel"].shape == (7, 67, 1, 204)
    assert mus["conv2d_2/kernel"].shape == (128, 1, 1, 51)
    assert mus["conv2d_5/kernel"].shape == (7, 561, 1, 64)
    assert mus["batch_normalization_9/gamma"].shape == (1506,)
    assert mus["dense/kernel"].shape == (1506, 200)
    assert mus["dense_1/kernel"].shape == (200, 50)
    assert mus["beta1_power"].shape == ()
    vgg = tfbundle.list_variables("MTT_vgg")
    assert vgg["1CNN/kernel"].shape == (3, 3, 1, 128)
    assert vgg["5CNN/kernel"].shape == (3, 3, 128, 128)
    assert vgg["dense/kernel"].shape == (256, 50)
    # MTT and MSD checkpoints of one architecture share names and shapes, not values
    assert tfbundle.list_variables("MTT_musicnn") == mus
    assert tfbundle.list_variables("MSD_vgg") == vgg
    w = tfbundle.load_variables("MTT_musicnn")
    assert w["batch_normalization/moving_variance"][0] == pytest.approx(1.75, abs=0.01)
    assert not np.array_equal(w["dense/kernel"], tfbundle.load_variables("MSD_musicnn")["dense/kernel"])


@needs_musicnn
def test_reader_crc_and_single_reads_match_bulk_read():
    bundle = tfbundle.TensorBundle(str(tfbundle.checkpoint_prefix("MTT_vgg")) + "/")
    bulk = bundle.read_all()
    for name in ("batch_normalization/gamma", "1CNN/kernel", "dense/bias", "dense/kernel"):
        np.testing.assert_array_equal(bundle.read(name, verify=True), bulk[name])
    with pytest.raises(ParameterError, match="variable 'nope' is not in checkpoint"):
        bundle.read("nope")


def test_reader_errors(tmp_path, monkeypatch):
    with pytest.raises(ParameterError, match="unknown musicnn checkpoint 'MTT_big'; available: MTT_musicnn"):
        tfbundle.checkpoint_prefix("MTT_big")
    with pytest.raises(DataError, match=r"TF checkpoint file .*\.index' does not exist"):
        tfbundle.TensorBundle(tmp_path / "ckpt")
    (tmp_path / "ckpt.index").write_bytes(b"\0" * 64)
    (tmp_path / "ckpt.data-00000-of-00001").write_bytes(b"")
    with pytest.raises(DataError, match="cannot read TF checkpoint index .*bad magic number"):
        tfbundle.TensorBundle(tmp_path / "ckpt")
    monkeypatch.setitem(sys.modules, "musicnn", None)  # as if it were not installed
    with pytest.raises(FewShotError, match=r"install it with: pip install --no-deps musicnn==0\.1\.0"):
        tfbundle.list_variables("MTT_musicnn")
    with pytest.raises(FewShotError, match=r"pip install --no-deps musicnn==0\.1\.0"):
        create_pretrained("mtt_vgg")


# --------------------------------------------------------------------------- input pipeline


@pytest.mark.parametrize("padding", PADDINGS)
def test_log_mel_matches_librosa_reference(padding):
    ref = np.load(FIXTURES / padding / "logmel.npz")
    for name, y in _SIGNALS.items():
        logmel = log_mel(y, padding=padding)
        assert logmel.dtype == np.float32 and logmel.shape == (int(ref[f"{name}.n_frames"]), 96)
        np.testing.assert_allclose(logmel[:4], ref[f"{name}.head"], rtol=0, atol=1e-3)
        np.testing.assert_allclose(logmel[-4:], ref[f"{name}.tail"], rtol=0, atol=1e-3)
        np.testing.assert_allclose(logmel.mean(axis=0), ref[f"{name}.mean"], rtol=0, atol=1e-4)


def test_log_mel_padding_changes_only_the_edge_frames():
    y = _SIGNALS["noise"]
    a, b = log_mel(y, padding="reflect"), log_mel(y, padding="constant")
    assert not np.allclose(a[0], b[0]) and not np.allclose(a[-1], b[-1])
    np.testing.assert_array_equal(a[1:-1], b[1:-1])


def test_log_compress_is_float16_rounded_and_safe_under_numpy2():
    mel = np.array([[0.0, 1e-3, 6.6, 123.0, 1e4]], dtype=np.float32)
    out = log_compress(mel)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    expected = np.log10(10000 * mel.astype(np.float16).astype(np.float64) + 1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    # the float16 step is kept: 1e-3 is stored as 0.0010004...
    assert out[0, 1] != np.float32(np.log10(10000 * np.float32(1e-3) + 1))


def test_mel_filterbank_is_slaney():
    fb = mel_filterbank()
    assert fb.shape == (96, 257) and fb.dtype == np.float32
    hz = np.linspace(0, 8000, 257)
    assert np.all(fb[:, hz > 8000] == 0) and np.all(fb.sum(axis=0)[1:-1] > 0)
    # Slaney area normalisation: each triangle integrates (in Hz) to about 1
    np.testing.assert_allclose((fb * (hz[1] - hz[0])).sum(axis=1)[10:], 1.0, rtol=0.1)


def test_make_patches_and_errors():
    logmel = np.arange(626 * 96, dtype=np.float32).reshape(626, 96)
    patches = make_patches(logmel)
    assert patches.shape == (3, 187, 96)
    np.testing.assert_array_equal(patches[2], logmel[374:561])
    assert make_patches(logmel, hop=61).shape == (8, 187, 96)
    short = make_patches(logmel[:100])
    assert short.shape == (1, 187, 96)
    np.testing.assert_array_equal(short[0, 100:187], logmel[:87])
    with pytest.raises(ParameterError, match="audio gives 100 frames, fewer than one patch of 187"):
        make_patches(logmel[:100], short="error")
    with pytest.raises(ParameterError, match="short must be one of repeat, error; got 'pad'"):
        make_patches(logmel, short="pad")
    with pytest.raises(ParameterError, match="padding must be one of reflect, constant; got 'zeros'"):
        log_mel(_SIGNALS["sine"], padding="zeros")
    with pytest.raises(ParameterError, match=r"waveform must be 1-D \(mono\); got shape \(2, 1000\)"):
        log_mel(np.zeros((2, 1000), np.float32))
    with pytest.raises(ParameterError, match="waveform must be finite everywhere"):
        log_mel(np.full(1000, np.nan, np.float32))


# --------------------------------------------------------------------------- registry


def test_registry():
    assert list_pretrained() == sorted(MODELS)
    meta = PRETRAINED.get("msd_vgg").meta
    assert meta["training_data"] == "Million Song Dataset" and meta["embedding_dim"] == 256
    assert meta["sr"] == 16000 and len(meta["tags"]) == 50 and meta["tags"][0] == "rock"
    assert PRETRAINED.get("mtt_musicnn").meta["tags"][:3] == ("guitar", "classical", "slow")
    with pytest.raises(ParameterError, match="unknown pretrained model 'vggish'; available: msd_musicnn"):
        create_pretrained("vggish")


@needs_musicnn
def test_create_pretrained(models):
    model = models("mtt_musicnn", "reflect")
    assert not model.training and model.embedding_dim == 200 and len(model.tags) == 50
    assert model.tags[-1] == "choral" and model.sr == 16000
    assert models("msd_vgg", "reflect").embedding_dim == 256
    with pytest.raises(ParameterError, match="padding must be one of reflect, constant; got 'zero'"):
        create_pretrained("mtt_vgg", padding="zero")


# --------------------------------------------------------------------------- the port vs TensorFlow


@needs_musicnn
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("name", MODELS)
def test_port_matches_tensorflow_musicnn(models, name, padding):
    """From raw 16 kHz audio: taggram within 1e-4, penultimate embedding within 1e-3 (max abs)."""
    import torch

    model = models(name, padding)
    ref = np.load(FIXTURES / padding / f"{model.checkpoint}.npz")
    patches = {n: make_patches(log_mel(y, padding=padding)) for n, y in _SIGNALS.items()}
    with torch.no_grad():
        logits, emb = model(torch.from_numpy(np.concatenate(list(patches.values()))))
    taggram, emb = torch.sigmoid(logits).numpy(), emb.numpy()
    start = 0
    for n, p in patches.items():
        rows = slice(start, start + len(p))
        start += len(p)
        assert ref[f"{n}.taggram"].shape == (len(p), 50)
        assert ref[f"{n}.embedding"].shape == (len(p), model.embedding_dim)
        d_tag = np.abs(taggram[rows] - ref[f"{n}.taggram"]).max()
        d_emb = np.abs(emb[rows] - ref[f"{n}.embedding"]).max()
        assert d_tag <= TAGGRAM_ATOL, f"{name} {padding} {n}: taggram max abs diff {d_tag:.2e}"
        assert d_emb <= EMBEDDING_ATOL, f"{name} {padding} {n}: embedding max abs diff {d_emb:.2e}"


@needs_musicnn
def test_wrong_padding_is_detected(models):
    """The reflect/zero references differ by far more than the tolerance: the fixtures pin the mode."""
    from fewshot.pretrained.embed import embed_waveform

    ref = np.load(FIXTURES / "constant" / "MTT_musicnn.npz")
    taggram, _ = embed_waveform(models("mtt_musicnn", "reflect"), _SIGNALS["chirp"])
    assert np.abs(taggram - ref["chirp.taggram"]).max() > 10 * TAGGRAM_ATOL


# --------------------------------------------------------------------------- files


@needs_musicnn
def test_embed_files_writes_taggram_and_embedding(tmp_path):
    import soundfile as sf
    import soxr

    from fewshot.pretrained.embed import embed_files

    y = _SIGNALS["sine"]
    sf.write(tmp_path / "tone.wav", y, 16000, subtype="FLOAT")
    sf.write(tmp_path / "tone44.flac", soxr.resample(y, 16000, 44100), 44100)
    out = tmp_path / "out"
    written = embed_files("mtt_vgg", [tmp_path / "tone.wav", tmp_path / "tone44.flac"], out)
    assert [p.name for p in written] == [
        "tone.taggram.npy", "tone.embedding.npy", "tone44.taggram.npy", "tone44.embedding.npy"]
    ref = np.load(FIXTURES / "reflect" / "MTT_vgg.npz")
    taggram, emb = np.load(out / "tone.taggram.npy"), np.load(out / "tone.embedding.npy")
    assert taggram.shape == (3, 50) and emb.shape == (3, 256) and emb.dtype == np.float32
    assert np.abs(taggram - ref["sine.taggram"]).max() <= TAGGRAM_ATOL
    assert np.load(out / "tone44.taggram.npy").shape == (3, 50)  # resampled to 16 kHz
    assert np.abs(np.load(out / "tone44.taggram.npy") - ref["sine.taggram"]).max() < 1e-3
    with pytest.raises(ParameterError, match="two input files have the same stem 'tone'"):
        embed_files("mtt_vgg", [tmp_path / "tone.wav", tmp_path / "x" / "tone.flac"], out)
    with pytest.raises(DataError, match="audio file not found"):
        embed_files("mtt_vgg", [tmp_path / "missing.wav"], out)


@pytest.mark.parametrize("training", [False, True])
def test_musicnn_front_end_formulation_equals_the_plain_one(training):
    """Folded input batch norm + conv1d temporal filters + max(): same maps, gradients and running stats
    as the plain formulation (musicnn's own order of operations), and the same embeddings end to end."""
    import copy

    from fewshot.pretrained.musicnn import MusiCNN, _fmax

    torch.manual_seed(0)
    net = MusiCNN(n_mels=24).double()
    with torch.no_grad():  # non-trivial batch norms, some with negative scale
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(-1.5, 1.5)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    ref = copy.deepcopy(net)
    net.train(training)
    ref.train(training)
    x = torch.randn(3, 40, 24, dtype=torch.float64) * 2 + 0.5
    ours = torch.cat([_fmax(bn(torch.relu(y)), d) for y, bn, d in net._front_convs(x)], dim=1)
    plain = torch.cat(ref._plain_front(x), dim=1)
    torch.testing.assert_close(ours, plain, rtol=1e-10, atol=1e-10)
    weights = torch.randn_like(plain)
    (ours * weights).sum().backward()
    (plain * weights).sum().backward()
    for (name, p), q in zip(net.named_parameters(), ref.parameters(), strict=True):
        if q.grad is not None and "midend" not in name and "dense" not in name:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-8, atol=1e-10, msg=name)
    for (name, b), c in zip(net.named_buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(b, c, rtol=1e-12, atol=1e-12, msg=name)
    assert net.input_bn.weight.grad.abs() > 0 and net.input_bn.bias.grad.abs() > 0
    net.eval()
    ref.eval()
    torch.testing.assert_close(net(x)[1], ref(x, plain=True)[1], rtol=1e-10, atol=1e-10)
