"""Transfer learning: checkpoints (pretrain → --pretrained), the learning-rate split, the VGGish
loader and input pipeline, probe front-ends and the finetune/protonet methods on tiny data.

Everything runs on tiny inputs; the musicnn-based checks skip without the musicnn package.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from fewshot.cli import app
from fewshot.exceptions import DataError, ParameterError
from fewshot.methods import parse_method
from fewshot.protocols.evaluate import check_method
from fewshot.training import TrainConfig, create_model, predict_clips, train_model
from fewshot.training.checkpoints import (
    clear_pretrained,
    load_checkpoint,
    parse_pretrained_option,
    read_checkpoint,
    register_pretrained,
    save_checkpoint,
    user_pretrained,
)
from fewshot.training.transfer import (
    BODY_LR,
    HEAD_LR,
    Source,
    TransferClassifier,
    embed_inputs,
    known_pretrained,
    load_source,
    param_groups,
    train_finetune,
    train_transfer_protonet,
)

SYNTH = "synth:classes=3,clips=6,seconds=1"
HAS_MUSICNN = importlib.util.find_spec("musicnn") is not None


@pytest.fixture(autouse=True)
def _no_registrations():
    clear_pretrained()
    yield
    clear_pretrained()


def band_clips(n_per_class: int, n_classes: int = 3, *, n_mels: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    inputs, y = [], []
    width = n_mels // n_classes
    for c in range(n_classes):
        for i in range(n_per_class):
            x = rng.normal(0.0, 1.0, size=(40 + 8 * (i % 3), n_mels)).astype(np.float32)
            x[:, c * width:(c + 1) * width] += 3.0
            inputs.append(x)
            y.append(c)
    return inputs, np.array(y)


class _TinyBody(nn.Module):
    """A small stand-in pretrained body: patches [B, T, F] → [B, 8]."""

    def __init__(self, n_mels: int = 32) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Linear(n_mels, 8)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(8, n_mels, generator=g) * 0.3)
            self.proj.bias.zero_()

    def forward(self, x):
        return torch.tanh(self.proj(x)).mean(1)


def tiny_source(n_mels: int = 32) -> Source:
    body = _TinyBody(n_mels).eval().requires_grad_(False)  # as load_source leaves a pretrained body
    return Source("tiny", "checkpoint", body, 8, 16, 16, spectrogram="fewdata", identity="tiny")


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_gives_the_same_predictions(tmp_path):
    inputs, y = band_clips(3)
    cfg = TrainConfig(epochs=1, patch_frames=32, hop=16, batch_size=8)
    model = train_model("vgg", inputs, y, n_classes=3, config=cfg, seed=1, params={"filters": 4})
    path = save_checkpoint(tmp_path / "m.pt", model, model_name="vgg", n_classes=3, classes=["a", "b", "c"],
                           spectrogram="fewdata", patch_frames=32, n_mels=32, params={"filters": 4},
                           train_config=cfg)
    loaded, config = load_checkpoint(path)
    assert config["model"] == "vgg" and config["classes"] == ["a", "b", "c"] and config["params"] == {"filters": 4}
    assert config["train_config"]["epochs"] == 1
    np.testing.assert_allclose(predict_clips(loaded, inputs), predict_clips(model, inputs), atol=1e-6)
    # the file is tensors + strings only: weights_only loading works and no pickled class is in it
    blob = torch.load(path, weights_only=True)
    assert set(blob) == {"format", "version", "config", "state_dict"} and isinstance(blob["config"], str)


def test_read_checkpoint_rejects_other_files(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(DataError, match="not a fewshot checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(DataError, match="no such file"):
        read_checkpoint(tmp_path / "missing.pt")


def test_parse_pretrained_option():
    assert parse_pretrained_option("mine=/x/ck.pt") == ("mine", parse_pretrained_option("mine=/x/ck.pt")[1])
    assert parse_pretrained_option("/x/ck.pt")[0] == "ck"
    with pytest.raises(ParameterError, match="NAME=PATH"):
        parse_pretrained_option("bad name=/x")


def test_cli_pretrain_then_pretrained_round_trip(tmp_path):
    ckpt = tmp_path / "vgg.pt"
    cache = str(tmp_path / "cache")
    result = CliRunner().invoke(app, ["pretrain", "-d", SYNTH, "--model", "vgg", "--epochs", "1", "--narrow",
                                      "--device", "cpu", "--cache-dir", cache, "--out", str(ckpt)])
    assert result.exit_code == 0, result.output
    model, config = load_checkpoint(ckpt)
    assert config["model"] == "vgg" and config["n_classes"] == 3 and config["spectrogram"] == "fewdata"
    assert config["params"]["filters"] == 16 and config["n_clips"] == 18
    out = tmp_path / "run"
    args = ["run", "-d", SYNTH, "--n", "1", "--runs", "1", "--folds", "1", "--folds-count", "3", "--epochs", "2",
            "--max-epochs", "2", "--device", "cpu", "--cache-dir", cache, "--out", str(out), "--no-report",
            "--pretrained", f"mine={ckpt}", "--method", "finetune:mine,probe:mine+knn"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    text = (out / "results.csv").read_text()
    for method in ("finetune:mine", "probe:mine+knn"):
        assert f",{method}," in text
    # same command again: nothing left to do, same rows (the checkpoint is re-read identically)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and (out / "results.csv").read_text() == text


def test_register_pretrained_checks_names_and_files(tmp_path):
    with pytest.raises(ParameterError, match="built-in"):
        register_pretrained("msd_musicnn", tmp_path / "x.pt")
    with pytest.raises(DataError, match="no such file"):
        register_pretrained("mine", tmp_path / "x.pt")
    model = create_model("vgg", n_classes=3, n_mels=32, n_frames=32, filters=4)
    save_checkpoint(tmp_path / "x.pt", model, model_name="vgg", n_classes=3, classes=list("abc"),
                    spectrogram="fewdata", patch_frames=32, n_mels=32, params={"filters": 4})
    register_pretrained("mine", tmp_path / "x.pt")
    assert "mine" in user_pretrained() and "mine" in known_pretrained()
    src = load_source("mine")
    assert src.kind == "checkpoint" and src.embedding_dim == 4 and src.patch_frames == 32


# ----------------------------------------------------------------------------- learning-rate split
def test_param_groups_split_head_and_body_learning_rates():
    model = TransferClassifier(_TinyBody(), nn.Linear(8, 3), patch_frames=16, hop=16)
    groups = param_groups(model)
    assert [(g["name"], g["lr"]) for g in groups] == [("head", HEAD_LR), ("body", BODY_LR)]
    assert HEAD_LR == 0.1 and BODY_LR == 1e-5
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.head.parameters()}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.body.parameters()}
    # one SGD step with equal gradients: body weights move 1e4 times less than the head's
    opt = torch.optim.SGD(groups, lr=HEAD_LR)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    head_move = (model.head.weight - before["head.weight"]).abs().max().item()
    body_move = (model.body.proj.weight - before["body.proj.weight"]).abs().max().item()
    # (float32 weights of size ~0.3 resolve a 1e-5 step to about 0.2%)
    assert head_move == pytest.approx(0.1, rel=1e-2) and body_move == pytest.approx(1e-5, rel=1e-2)
    assert head_move / body_move == pytest.approx(1e4, rel=1e-2)


def test_finetune_trains_the_head_fast_and_the_body_slowly():
    src = tiny_source()
    inputs, y = band_clips(4)
    model = train_finetune(src, inputs, y, n_classes=3, epochs=30, seed=0, batch_size=6)
    assert model.optimizer_groups == {"head": 0.1, "body": 1e-5}
    body_change = (model.body.proj.weight - src.body.proj.weight).abs().max().item()
    assert 0 < body_change < 1e-3  # moved, but slowly; the source itself is untouched (a copy was trained)
    assert not any(p.requires_grad for p in src.body.parameters())
    proba = predict_clips(model, inputs)
    assert proba.shape == (12, 3) and (proba.argmax(1) == y).mean() >= 0.9


def test_finetune_is_deterministic_under_a_seed():
    src = tiny_source()
    inputs, y = band_clips(2)
    a = predict_clips(train_finetune(src, inputs, y, n_classes=3, epochs=3, seed=5), inputs)
    b = predict_clips(train_finetune(src, inputs, y, n_classes=3, epochs=3, seed=5), inputs)
    np.testing.assert_array_equal(a, b)


def test_transfer_protonet_has_a_10_unit_embedding_and_the_split():
    src = tiny_source()
    inputs, y = band_clips(3)
    cfg = TrainConfig(epochs=3, max_epochs=3, patience=None)
    model = train_transfer_protonet(src, inputs, y, n_classes=3, config=cfg, seed=0)
    assert model.head.out_features == 10 and model.optimizer_groups == {"head": 0.1, "body": 1e-5}
    assert model.history["epochs"] == 3 and model.aggregate == "log_softmax"
    assert predict_clips(model, inputs).shape == (9, 3)


# ----------------------------------------------------------------------------- VGGish
def _vggish_state() -> dict:
    from fewshot.pretrained.vggish import VGGish

    torch.manual_seed(0)
    net = VGGish()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["pproc._pca_matrix"] = torch.eye(128)
    state["pproc._pca_means"] = torch.zeros(128, 1)
    return state


@pytest.fixture(scope="module")
def vggish_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vggish") / "vggish.pth"
    torch.save(_vggish_state(), path)
    return path


def test_vggish_state_dict_layout_is_torchvggish():
    from fewshot.pretrained.vggish import VGGish, expected_shapes

    shapes = expected_shapes()
    assert shapes["features.0.weight"] == (64, 1, 3, 3) and shapes["features.13.weight"] == (512, 512, 3, 3)
    assert shapes["embeddings.0.weight"] == (4096, 12288) and shapes["embeddings.4.weight"] == (128, 4096)
    assert {k: tuple(v.shape) for k, v in VGGish().state_dict().items()} == shapes


def test_vggish_loads_a_local_file_and_embeds(vggish_file):
    from fewshot.pretrained.vggish import VGGish, load_vggish, vggish_examples

    net = load_vggish(vggish_file)
    ref = VGGish()
    ref.load_state_dict({k: v for k, v in torch.load(vggish_file).items() if not k.startswith("pproc")})
    x = torch.from_numpy(vggish_examples(0.1 * np.sin(np.arange(24000) / 5.0).astype(np.float32)))
    assert x.shape == (1, 96, 64)
    with torch.no_grad():
        emb = net(x)
        torch.testing.assert_close(emb, ref.eval()(x))
        assert emb.shape == (1, 128) and (emb >= 0).all()  # raw embedding after the last ReLU
        assert net.postprocess(emb).shape == (1, 128)


def test_vggish_mismatching_file_names_the_keys(tmp_path, monkeypatch):
    from fewshot.pretrained.vggish import load_vggish

    state = {"features.0.weight": torch.zeros(64, 1, 5, 5), "classifier.weight": torch.zeros(2)}
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(DataError, match=r"missing keys: embeddings\.0\.bias.*unexpected keys: classifier\.weight"
                                        r".*wrong shapes: features\.0\.weight \(64, 1, 5, 5\)"):
        load_vggish(tmp_path / "bad.pth")
    monkeypatch.delenv("FEWSHOT_VGGISH", raising=False)
    with pytest.raises(DataError, match="nothing is downloaded.*FEWSHOT_VGGISH"):
        load_vggish(None)


def test_vggish_log_mel_follows_the_reference_pipeline():
    from fewshot.pretrained.vggish import log_mel, make_examples, mel_matrix

    assert mel_matrix().shape == (257, 64) and (mel_matrix()[0] == 0).all()
    sr = 16000
    t = np.arange(sr * 2) / sr
    lm = log_mel((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert lm.shape == (1 + (2 * sr - 400) // 160, 64)
    centers = 700 * (np.exp(np.linspace(1127 * np.log(1 + 125 / 700), 1127 * np.log(1 + 7500 / 700), 66) / 1127)
                     - 1)[1:-1]
    assert abs(centers[lm.mean(0).argmax()] - 1000) < 100  # the 1 kHz tone peaks in the band around 1 kHz
    assert log_mel(np.ones(100, dtype=np.float32)).shape == (98, 64)  # repeat-padded to 1 s
    assert make_examples(lm).shape == (2, 96, 64)


def test_vggish_probe_and_finetune_through_pretrained_option(vggish_file):
    from fewshot.frontends import create_frontend, frontend_has_width, is_random_frontend
    from fewshot.frontends.extract import extract_features

    with pytest.raises(ParameterError, match="unknown pretrained model 'nothing'"):
        check_method(parse_method("probe:nothing+knn"))
    register_pretrained("vggish", vggish_file)
    check_method(parse_method("probe:vggish+knn"))
    check_method(parse_method("finetune:vggish"))
    assert not is_random_frontend("probe:vggish") and not frontend_has_width("probe:vggish")
    fe = create_frontend("probe:vggish")
    assert fe.n_features == 128 and fe.sr == 16000 and fe.input == "waveform"
    X = extract_features(fe, [np.random.default_rng(0).normal(0, 0.1, 20000).astype(np.float32)])
    assert X.shape == (1, 128)


# ----------------------------------------------------------------------------- method names and probes
def test_check_method_accepts_known_pretrained_names_and_rejects_others():
    check_method(parse_method("finetune:msd_musicnn"))
    check_method(parse_method("protonet:mtt_vgg"))
    check_method(parse_method("protonet"))
    with pytest.raises(ParameterError, match="unknown pretrained model 'nope'; available: .*msd_musicnn"):
        check_method(parse_method("finetune:nope"))
    with pytest.raises(ParameterError, match="pretrained weights go with finetune or protonet"):
        check_method(parse_method("vgg:msd_musicnn"))
    with pytest.raises(ParameterError, match="unknown pretrained model"):
        check_method(parse_method("finetune"))
    with pytest.raises(ParameterError, match="unknown pretrained model 'nope'"):
        check_method(parse_method("probe:nope+svm"))


def test_embed_inputs_averages_over_patches():
    src = tiny_source()
    x = np.random.default_rng(0).normal(size=(40, 32)).astype(np.float32)
    emb = embed_inputs(src, [x])
    with torch.no_grad():
        starts = [0, 16, 24]  # non-overlapping windows of 16 plus one aligned with the end
        ref = torch.stack([src.body(torch.from_numpy(x[s:s + 16])[None])[0] for s in starts]).mean(0)
    np.testing.assert_allclose(emb[0], ref.numpy(), atol=1e-6)


@pytest.mark.skipif(not HAS_MUSICNN, reason="musicnn not installed (pip install --no-deps musicnn==0.1.0)")
def test_musicnn_probe_is_a_fixed_frontend_with_the_penultimate_embedding():
    from fewshot.frontends import create_frontend, is_random_frontend

    fe = create_frontend("probe:msd_musicnn", width="small", seed=3)
    assert not is_random_frontend("probe:msd_musicnn")
    assert fe.n_features == 200 and fe.input == "waveform" and fe.sr == 16000
    assert fe.identity == create_frontend("probe:msd_musicnn", seed=7).identity  # weights do not depend on the run
    wave = np.random.default_rng(0).normal(0, 0.1, 16000 * 4).astype(np.float32)
    feats = fe.features(torch.from_numpy(wave)[None])
    src = load_source("msd_musicnn")
    assert feats.shape == (1, 200)
    np.testing.assert_allclose(feats.numpy(), embed_inputs(src, [src.clip_input(wave)]), atol=1e-5)
