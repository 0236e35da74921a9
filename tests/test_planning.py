"""``--dry-run`` planning: the unit listing and a positive, finite time estimate."""

from __future__ import annotations

import math

from typer.testing import CliRunner

from fewshot.cli import app
from fewshot.protocols.config import ExperimentConfig
from fewshot.protocols.planning import format_plan, format_seconds, plan_experiment

SYNTH = "synth:classes=3,clips=6,seconds=0.5"


def _cfg(tmp_path, **kw) -> ExperimentConfig:
    base = dict(protocol="randomcnn", dataset=SYNTH, methods=["vgg-small+knn", "mfcc+knn", "random"], n=[1, 2],
                runs=2, folds=["1"], n_folds=3, cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "run"))
    base.update(kw)
    return ExperimentConfig(**base).validate()


def test_plan_lists_units_per_method_and_n(tmp_path):
    plan = plan_experiment(_cfg(tmp_path))
    got = {(r.method, r.n): (r.units, r.done) for r in plan.rows}
    assert got == {
        ("vgg-small+knn", 1): (2, 0), ("vgg-small+knn", 2): (2, 0),
        ("mfcc+knn", 1): (2, 0), ("mfcc+knn", 2): (2, 0),
        ("random", 1): (2, 0), ("random", 2): (2, 0),
    }
    assert plan.n_units == 12 and plan.n_done == 0
    assert 0 < plan.total_seconds < math.inf
    assert plan.extraction_seconds > 0
    assert not (tmp_path / "run").exists()  # a dry run writes nothing
    text = format_plan(plan)
    assert "| vgg-small+knn | 1 | 2 | 0 | 2 |" in text and "estimated total" in text


def test_plan_counts_done_units(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    from fewshot.results.store import METRICS, RESULT_COLUMNS

    lines = [",".join(RESULT_COLUMNS)]
    for m in METRICS:
        row = {c: "" for c in RESULT_COLUMNS}
        row.update(method="random", n="1", fold="1", run="0", metric=m, value="0.5")
        lines.append(",".join(str(row[c]) for c in RESULT_COLUMNS))
    (run_dir / "results.csv").write_text("\n".join(lines) + "\n")
    plan = plan_experiment(_cfg(tmp_path))
    row = next(r for r in plan.rows if r.method == "random" and r.n == 1)
    assert (row.units, row.done) == (2, 1)


def test_plan_trained_model_estimate(tmp_path):
    cfg = _cfg(tmp_path, protocol="run", methods=["vgg"], n=[1], runs=1, quick=True)
    plan = plan_experiment(cfg)
    (row,) = plan.rows
    assert row.units == 1 and 0 < row.seconds < math.inf and "epochs" in row.note


def test_cli_dry_run(tmp_path):
    result = CliRunner().invoke(app, ["randomcnn", "-d", SYNTH, "-f", "mfcc", "-c", "knn", "--folds", "1",
                                      "--folds-count", "3", "--cache-dir", str(tmp_path / "c"),
                                      "--out", str(tmp_path / "r"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "mfcc+knn" in result.output and "estimated total" in result.output
    assert not (tmp_path / "r").exists()


def test_format_seconds():
    assert format_seconds(5) == "5 s"
    assert format_seconds(600) == "10.0 min"
    assert format_seconds(7200) == "2.0 h"
    assert format_seconds(5 * 86400) == "5.0 days"


def test_epoch_cost_times_enough_epochs(monkeypatch):
    """Short epochs: the k-epoch run grows until it spans ``_SLOPE_SPAN`` seconds; the slope is then exact."""
    from fewshot.protocols import planning

    calls = []

    def train(epochs):  # a fake unit: 0.5 s fixed + 0.25 s per epoch
        calls.append(epochs)
        return 0.5 + 0.25 * epochs

    monkeypatch.setattr(planning, "_timed", lambda fn: fn())
    t1, slope = planning._epoch_cost(train, 20)
    assert calls == [1, 3, 17] and t1 == 0.75 and slope == 0.25
    calls.clear()
    assert planning._epoch_cost(train, 3) == (0.75, 0.25) and calls == [1, 3]  # never beyond the real epochs
    calls.clear()
    t1, slope = planning._epoch_cost(lambda e: calls.append(e) or 3.0 * e, 200)  # slow epochs: 1 and 3 suffice
    assert calls == [1, 3] and slope == 3.0


def test_plan_counts_startup_report_and_log_mels(tmp_path):
    import time

    cfg = _cfg(tmp_path, protocol="run", methods=["vgg"], n=[1], runs=1, quick=True)
    plan = plan_experiment(cfg, started=time.perf_counter() - 2.0)
    assert plan.fixed_seconds > 2.0  # the 2 s of "start-up" plus a measured report
    assert plan.audio_seconds > 0
    assert "start-up and report" in format_plan(plan)
    assert plan.total_seconds >= plan.fixed_seconds + plan.audio_seconds + plan.rows[0].seconds


def test_log_mel_cost_counts_trained_models_only(tmp_path):
    from fewshot.methods import parse_methods
    from fewshot.protocols import planning
    from fewshot.protocols.engine import prepare
    from fewshot.protocols.evaluate import Context

    for methods, trained in ((["vgg"], True), (["mfcc+knn"], False)):
        cfg = _cfg(tmp_path, protocol="run", methods=methods, n=[1], runs=1, quick=True)
        exp = prepare(cfg)
        ctx = Context(exp.dataset, cfg, None, exp.device)
        specs = {s.text: s for s in parse_methods(cfg.methods)}
        seconds = planning._log_mel_seconds(ctx, specs, exp.units, [0, 1])
        assert (seconds > 0) == trained, methods
        assert not ctx._logmels  # the calibration leaves no log-mels behind
