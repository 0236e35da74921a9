"""Method-name grammar and derived seeds."""

from __future__ import annotations

import pytest

from fewshot._registry import Registry
from fewshot.exceptions import ParameterError
from fewshot.methods import parse_method, parse_methods, pipeline_name
from fewshot.seeds import derive_seed, numpy_rng, torch_generator


@pytest.mark.parametrize(
    "text, kind, parts",
    [
        ("vgg-small+svm", "pipeline", ("vgg", "small", "svm")),
        ("frame_level_many-large+elm", "pipeline", ("frame_level_many", "large", "elm")),
        ("vgg-f64+knn", "pipeline", ("vgg", "f64", "knn")),
        ("mfcc+knn", "pipeline", ("mfcc", None, "knn")),
        ("probe:msd_musicnn+svm", "pipeline", ("probe:msd_musicnn", None, "svm")),
        ("my/front.py:Net+svm", "pipeline", ("my/front.py:Net", None, "svm")),
    ],
)
def test_parse_pipeline(text, kind, parts):
    spec = parse_method(text)
    assert spec.kind == kind
    assert (spec.frontend, spec.width, spec.classifier) == parts
    assert pipeline_name(*parts) == text


@pytest.mark.parametrize(
    "text, model, pre", [("vgg", "vgg", None), ("finetune:msd_musicnn", "finetune", "msd_musicnn")]
)
def test_parse_model(text, model, pre):
    spec = parse_method(text)
    assert (spec.kind, spec.model, spec.pretrained) == ("model", model, pre)


def test_trained_and_random_vgg_never_collide():
    assert parse_method("vgg").kind != parse_method("vgg-small+svm").kind


@pytest.mark.parametrize("bad", ["", "a+b+c", "+svm", "vgg+", "vgg:", "vgg small"])
def test_parse_method_errors(bad):
    with pytest.raises(ParameterError, match="method"):
        parse_method(bad)


def test_parse_methods_dedups_in_order():
    assert [m.text for m in parse_methods("vgg, protonet,vgg")] == ["vgg", "protonet"]


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, "subset", "ds", "1", 5, 0) == derive_seed(0, "subset", "ds", "1", 5, 0)
    seeds = {derive_seed(0, "subset", "ds", "1", 5, r) for r in range(100)}
    assert len(seeds) == 100
    assert 0 <= derive_seed(2**40, "x") < 2**63
    # Fixed value: the derivation is part of the reproducibility contract.
    assert derive_seed(0, "frontend", 0) == 6682835733953691770
    assert numpy_rng(0, "a").integers(1 << 30) == numpy_rng(0, "a").integers(1 << 30)
    assert torch_generator(0, "a").initial_seed() == derive_seed(0, "a")


def test_registry_unknown_name_lists_choices():
    reg = Registry("widget")
    reg.register("b")(lambda: 1)
    reg.register("a")(lambda: 2)
    with pytest.raises(ParameterError, match=r"unknown widget 'c'; available: a, b"):
        reg.get("c")
    assert reg.create("a") == 2
