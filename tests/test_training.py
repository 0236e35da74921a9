"""Tests of fewshot.training: tiny models, tiny log-mels, few epochs."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from fewshot.exceptions import ParameterError
from fewshot.training import (
    MODELS,
    TrainConfig,
    count_parameters,
    create_model,
    fit_predict,
    fit_predict_many,
    list_models,
    predict_clips,
    train_model,
)
from fewshot.training.batched import choose_strategy, train_many_vmap
from fewshot.training.patches import (
    clip_windows,
    pad_clips,
    random_patches,
    repeat_pad,
    sliding_patches,
    window_starts,
)

N_MELS = 40
# per model: tiny architecture options and patch length
TINY = {
    "vgg": ({"filters": 4}, 32),
    "timbre": ({"filter_shape": (3, 8)}, 32),
    "sbcnn": ({"filters": (2, 4, 4), "dense": 8}, 100),
    "protonet": ({"filters": 4}, 32),
}


def band_problem(n_per_class: int, n_classes: int = 4, *, seed: int, lengths=(24, 40, 56)):
    """Log-mels where class c is loud in its own band of mel bins, plus noise."""
    rng = np.random.default_rng(seed)
    inputs, y = [], []
    width = N_MELS // n_classes
    for c in range(n_classes):
        for i in range(n_per_class):
            n_frames = lengths[i % len(lengths)]
            x = rng.normal(0.0, 1.0, size=(n_frames, N_MELS)).astype(np.float32) - 5.0
            x[:, c * width:(c + 1) * width] += 3.0
            inputs.append(x)
            y.append(c)
    return inputs, np.array(y)


def tiny_config(name: str, **kw) -> TrainConfig:
    base = {"epochs": 2, "max_epochs": 2, "patience": None, "patch_frames": TINY[name][1], "hop": 16,
            "batch_size": 8}
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- registry


def test_registry_lists_the_four_models_with_their_input():
    assert list_models() == ["protonet", "sbcnn", "timbre", "vgg"]
    for entry in MODELS:
        assert entry.meta == {"input": "logmel", "spectrogram": "fewdata"}


@pytest.mark.parametrize(("name", "expected"),
                         [("vgg", 42_764), ("timbre", 7_572), ("sbcnn", 241_436), ("protonet", 613_642)])
def test_full_size_parameter_counts_match_the_reference(name, expected):
    assert count_parameters(create_model(name, n_classes=10)) == expected


def test_create_model_errors_name_the_problem():
    with pytest.raises(ParameterError, match="unknown model 'nope'; available: protonet"):
        create_model("nope", n_classes=3)
    with pytest.raises(ParameterError, match="bad option for model 'vgg'"):
        create_model("vgg", n_classes=3, colour="red")
    with pytest.raises(ParameterError, match="n_frames must be >= 32"):
        create_model("vgg", n_classes=3, n_frames=16)
    with pytest.raises(ParameterError, match="n_classes must be an int >= 2; got 1"):
        create_model("vgg", n_classes=1)
    with pytest.raises(ParameterError, match="distance must be one of euclidean, cosine; got 'l1'"):
        create_model("protonet", n_classes=3, distance="l1")


def test_create_model_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a = create_model("vgg", n_classes=3, generator=torch.Generator().manual_seed(1))
    b = create_model("vgg", n_classes=3, generator=torch.Generator().manual_seed(1))
    c = create_model("vgg", n_classes=3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.dense.weight, b.dense.weight)
    assert not torch.equal(a.dense.weight, c.dense.weight)


# ----------------------------------------------------------------------------- patches


def test_repeat_pad_tiles_short_clips_and_keeps_long_ones():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    padded = repeat_pad(x, 7)
    assert padded.shape == (7, 2)
    np.testing.assert_array_equal(padded[3:6], x)
    np.testing.assert_array_equal(padded[6], x[0])
    long = np.zeros((9, 2), np.float32)
    assert repeat_pad(long, 7).shape == (9, 2)
    with pytest.raises(ParameterError, match="logmel must be a log-mel"):
        repeat_pad(np.zeros(5), 7)
    with pytest.raises(ParameterError, match="same n_mels"):
        pad_clips([np.zeros((3, 2)), np.zeros((3, 4))], 4)


def test_window_starts_cover_the_whole_clip():
    assert window_starts(431, 128, 43).tolist()[-1] == 431 - 128
    assert window_starts(128, 128, 43).tolist() == [0]
    assert window_starts(200, 128, 36).tolist() == [0, 36, 72]
    with pytest.raises(ParameterError, match="hop must be a positive"):
        window_starts(200, 128, 0)


def test_sliding_and_random_patches_shapes():
    x = np.random.default_rng(0).normal(size=(173, 8)).astype(np.float32)
    assert sliding_patches(x, patch_frames=128, hop=43).shape == (3, 128, 8)
    assert sliding_patches(x[:50], patch_frames=128, hop=43).shape == (1, 128, 8)
    patches, index = clip_windows([x, x[:50], x[:140]], patch_frames=128, hop=43)
    assert patches.shape == (3 + 1 + 2, 128, 8)
    assert index.tolist() == [0, 0, 0, 1, 2, 2]
    padded = pad_clips([x, x[:50]], 128)
    rng = np.random.default_rng(0)
    out = random_patches(padded, np.array([0, 1, 0]), 128, rng)
    assert out.shape == (3, 128, 8)
    # every random patch is a contiguous window of its clip
    starts = [s for s in range(173 - 127) if np.array_equal(x[s:s + 128], out[0])]
    assert len(starts) == 1


# ----------------------------------------------------------------------------- config


def test_train_config_validates_and_has_a_quick_preset():
    cfg = TrainConfig()
    assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.clip_norm, cfg.weight_decay, cfg.patience) == (
        200, 0.1, 256, 5.0, 1e-3, 200)
    quick = TrainConfig.quick_preset()
    assert quick.quick and quick.epochs == 20 and quick.patience is None
    with pytest.raises(ParameterError, match="TrainConfig.epochs must be a positive int; got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ParameterError, match="patience_mode must be 'cumulative' or 'consecutive'"):
        TrainConfig(patience_mode="sometimes")
    with pytest.raises(ParameterError, match="TrainConfig.lr must be > 0"):
        TrainConfig(lr=0.0)


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_and_predicts_with_the_right_shapes(name):
    inputs, y = band_problem(2, 3, seed=0, lengths=(20, 110))
    params, _ = TINY[name]
    y_pred, proba = fit_predict(name, inputs, y, inputs[:4], n_classes=3, config=tiny_config(name), seed=0,
                                params=params)
    assert y_pred.shape == (4,) and proba.shape == (4, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(y_pred, proba.argmax(axis=1))


def test_training_is_deterministic_under_a_seed_and_seeds_differ():
    inputs, y = band_problem(2, 3, seed=1)
    kw = {"n_classes": 3, "config": tiny_config("vgg"), "params": TINY["vgg"][0]}
    state = torch.random.get_rng_state()
    _, a = fit_predict("vgg", inputs, y, inputs, seed=5, **kw)
    _, b = fit_predict("vgg", inputs, y, inputs, seed=5, **kw)
    _, c = fit_predict("vgg", inputs, y, inputs, seed=6, **kw)
    assert torch.equal(torch.random.get_rng_state(), state)  # no global RNG used
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_train_model_checks_labels():
    inputs, y = band_problem(1, 3, seed=0)
    with pytest.raises(ParameterError, match="one label per training clip"):
        train_model("vgg", inputs, y[:-1], n_classes=3, config=tiny_config("vgg"))
    with pytest.raises(ParameterError, match=r"labels in \[0, 1\]"):
        train_model("vgg", inputs, y, n_classes=2, config=tiny_config("vgg"))


def test_protonet_clearly_beats_chance_at_n5():
    train, y_train = band_problem(5, 4, seed=2)
    test, y_test = band_problem(10, 4, seed=3)
    cfg = TrainConfig(epochs=8, patience=None, patch_frames=32, hop=16)
    y_pred, _ = fit_predict("protonet", train, y_train, test, n_classes=4, config=cfg, seed=0,
                            params={"filters": 8})
    assert (y_pred == y_test).mean() >= 0.6  # chance is 0.25


def test_protonet_cosine_distance_trains():
    train, y_train = band_problem(2, 3, seed=2)
    _, proba = fit_predict("protonet", train, y_train, train[:2], n_classes=3, config=tiny_config("protonet"),
                           params={"filters": 4, "distance": "cosine"})
    assert proba.shape == (2, 3)


def test_training_never_sees_test_data():
    # the training entry points take no test inputs or labels at all
    for fn in (train_model, train_many_vmap):
        names = set(inspect.signature(fn).parameters)
        assert not {n for n in names if "test" in n or "valid" in n}


@pytest.mark.parametrize("mode", ["cumulative", "consecutive"])
def test_protonet_stops_on_training_accuracy(mode):
    train, y_train = band_problem(3, 3, seed=4)
    cfg = TrainConfig(patience=1, patience_mode=mode, max_epochs=30, patch_frames=32, hop=16)
    model = train_model("protonet", train, y_train, n_classes=3, config=cfg, seed=0, params={"filters": 4})
    hist = model.history
    accs = hist["train_accuracy"]
    assert hist["epochs"] == len(accs) < 30 and hist["stopped"] == "patience"
    # replay the rule on the recorded training accuracies: it stops exactly there
    best, bad = -1.0, 0
    for e, acc in enumerate(accs, start=1):
        if acc <= best:
            bad += 1
        else:
            best = acc
            bad = 0 if mode == "consecutive" else bad
        if bad > 1:
            assert e == len(accs)
            break
    else:
        pytest.fail("the recorded accuracies do not trigger the stopping rule")
    # the recorded accuracy is the model's accuracy on its own training clips
    proba = predict_clips(model, train)
    assert accs[-1] == pytest.approx((proba.argmax(1) == y_train).mean())


def test_protonet_skips_the_accuracy_pass_when_patience_cannot_fire():
    from fewshot.training.protonet import patience_can_stop

    assert [patience_can_stop(p, lim) for p, lim in [(None, 5), (3, 4), (3, 5), (3, 6), (200, 50), (1, None)]] == [
        False, False, True, True, False, True]
    train, y_train = band_problem(1, 3, seed=4)
    models = [train_model("protonet", train, y_train, n_classes=3, params={"filters": 4},
                          config=TrainConfig(patience=p, max_epochs=3, patch_frames=32, hop=16)) for p in (None, 200)]
    assert models[1].history == {"epochs": 3, "train_accuracy": [], "stopped": "max_epochs"}
    np.testing.assert_array_equal(predict_clips(models[0], train), predict_clips(models[1], train))


def test_protonet_without_patience_runs_max_epochs():
    train, y_train = band_problem(1, 3, seed=4)
    cfg = TrainConfig(patience=None, max_epochs=3, patch_frames=32, hop=16)
    model = train_model("protonet", train, y_train, n_classes=3, config=cfg, params={"filters": 4})
    assert model.history["epochs"] == 3 and model.history["stopped"] == "max_epochs"


# ----------------------------------------------------------------------------- batched


def _runs(n_runs: int):
    return [(*band_problem(3, 3, seed=10 + r), 100 + r) for r in range(n_runs)]


@pytest.mark.parametrize(("name", "bn_momentum"), [("vgg", 0.01), ("vgg", None), ("sbcnn", 0.01)])
def test_vmap_and_sequential_training_agree(name, bn_momentum):
    runs = _runs(3)
    test, _ = band_problem(1, 3, seed=99, lengths=(120,))
    # 9 clips, batch 8: a full and a partial batch per epoch
    cfg = tiny_config(name, epochs=2, bn_momentum=bn_momentum)
    params = TINY[name][0]
    seq = fit_predict_many(name, runs, test, n_classes=3, config=cfg, params=params, strategy="sequential")
    vec = fit_predict_many(name, runs, test, n_classes=3, config=cfg, params=params, strategy="vmap")
    for (ys, ps), (yv, pv) in zip(seq, vec, strict=True):
        np.testing.assert_allclose(pv, ps, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(yv, ys)
    models = train_many_vmap(name, runs, n_classes=3, config=cfg, params=params)
    for (x, y, seed), mv in zip(runs, models, strict=True):
        ms = train_model(name, x, y, n_classes=3, config=cfg, seed=seed, params=params)
        for (k, a), b in zip(ms.state_dict().items(), mv.state_dict().values(), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)


def test_strategy_choice():
    runs = _runs(2)
    assert choose_strategy("vgg", runs, device="cpu") == "sequential"
    assert choose_strategy("vgg", runs, device="cuda") == "vmap"
    assert choose_strategy("protonet", runs, device="cuda") == "sequential"
    with pytest.raises(ParameterError, match="strategy='vmap' supports vgg, timbre and sbcnn; got 'protonet'"):
        choose_strategy("protonet", runs, device="cpu", strategy="vmap")
    uneven = [runs[0], (runs[1][0][:-1], runs[1][1][:-1], 1)]
    with pytest.raises(ParameterError, match="equal training sizes"):
        choose_strategy("vgg", uneven, device="cpu", strategy="vmap")
    with pytest.raises(ParameterError, match="strategy must be one of auto, vmap, sequential"):
        choose_strategy("vgg", runs, device="cpu", strategy="fast")
