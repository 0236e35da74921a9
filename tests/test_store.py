"""Run folder: schema, atomic appends, resume, torn lines, config mismatch."""

from __future__ import annotations

import numpy as np
import pytest

from fewshot.exceptions import ConfigMismatchError
from fewshot.results.store import METRICS, RESULT_COLUMNS, RunStore, Unit, default_run_dir, read_results


def _rows(unit: Unit, value: float = 0.5):
    base = dict(protocol="run", dataset="d", method=unit.method, n=unit.n, fold=unit.fold, run=unit.run, seed=0,
                n_train=10, n_test=5, capped=False, seconds=0.1)
    return [{**base, "metric": m, "value": value} for m in METRICS]


def _pred():
    return {"test_index": np.arange(5), "y_true": np.zeros(5, int), "y_pred": np.zeros(5, int)}


def test_store_writes_schema_and_predictions(tmp_path):
    with RunStore(tmp_path / "r", identity={"a": 1}, extent={"methods": ["x"]}, classes=["c0", "c1"]) as store:
        unit = Unit("x", 5, "1", 0)
        store.append_unit(unit, _rows(unit), predictions=_pred())
        assert store.done_units() == {"x|5|1|0"}
    rows = read_results(tmp_path / "r" / "results.csv")
    assert list(rows[0]) == list(RESULT_COLUMNS)
    assert {r["metric"] for r in rows} == set(METRICS)
    assert (tmp_path / "r" / "predictions" / unit.filename).exists()
    for name in ("config.json", "environment.json", "classes.json"):
        assert (tmp_path / "r" / name).exists()


def test_store_cuts_torn_last_line_and_resumes(tmp_path):
    path = tmp_path / "r"
    with RunStore(path, identity={"a": 1}, extent={}, classes=["c"]) as store:
        u0, u1 = Unit("x", 1, "1", 0), Unit("x", 1, "1", 1)
        store.append_unit(u0, _rows(u0), predictions=_pred())
        store.append_unit(u1, _rows(u1), predictions=_pred())
    # Simulate a crash in the middle of writing a third unit: half a line, no newline.
    with open(path / "results.csv", "a") as f:
        f.write("run,d,x,1,1,2,0,accuracy,0.")
    with RunStore(path, identity={"a": 1}, extent={}, classes=["c"]) as store:
        assert store.done_units() == {"x|1|1|0", "x|1|1|1"}
        assert len(store.rows()) == 2 * len(METRICS)
    assert (path / "results.csv").read_text().endswith("\n")


def test_store_unit_with_missing_metric_is_not_done(tmp_path):
    with RunStore(tmp_path / "r", identity={}, extent={}, classes=["c"]) as store:
        u = Unit("x", 1, "1", 0)
        store.append_unit(u, _rows(u)[:1], predictions=_pred())
        assert store.done_units() == set()


def test_store_refuses_other_identity_and_extends_extent(tmp_path):
    path = tmp_path / "r"
    RunStore(path, identity={"seed": 0}, extent={"methods": ["a"]}, classes=["c"]).close()
    with pytest.raises(ConfigMismatchError, match=r"seed: 0 there, 1 now"):
        RunStore(path, identity={"seed": 1}, extent={"methods": ["a"]}, classes=["c"])
    with RunStore(path, identity={"seed": 0}, extent={"methods": ["b"]}, classes=["c"]) as store:
        assert store.config["extent"]["methods"] == ["a", "b"]


def test_store_lock_refuses_second_writer(tmp_path):
    with RunStore(tmp_path / "r", identity={}, extent={}, classes=["c"]):
        with pytest.raises(ConfigMismatchError, match="in use by another fewshot process"):
            RunStore(tmp_path / "r", identity={}, extent={}, classes=["c"])


def test_default_run_dir_hashes_identity_only():
    a = default_run_dir("run", "synth-x", {"seed": 0})
    assert a == default_run_dir("run", "synth-x", {"seed": 0})
    assert a != default_run_dir("run", "synth-x", {"seed": 1})
    assert a.name.startswith("run-synth-x-")
