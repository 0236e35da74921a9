"""The report on small synthetic run folders: rows, summary numbers, files, determinism."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from rich.console import Console

from fewshot.exceptions import DataError, ParameterError
from fewshot.results.report import COLUMNS, format_table, load_rows, summarize, write_report
from fewshot.results.stats import mean_ci
from fewshot.results.store import Unit

METHODS = {"protonet": 0.80, "vgg": 0.70, "mfcc+knn": 0.60}
CLASSES = ["dog", "rain", "siren"]


def _value(rng, method, n, fold, run):
    if method == "mfcc+knn" and n == "all":  # cannot depend on the run
        return 0.6 + 0.05 * int(fold)
    scale = 1.0 if n == "all" else min(1.0, 0.6 + 0.1 * n)
    return float(np.clip(METHODS[method] * scale + rng.normal(0, 0.03), 0, 1))


def make_run(tmp_path, *, ns=(1, 5, "all"), folds=("1", "2"), runs=3, predictions=True, name="run-a"):
    """Write results.csv (+ classes.json and predictions) the way the run store lays them out."""
    rng = np.random.default_rng(7)
    run_dir = tmp_path / name
    (run_dir / "predictions").mkdir(parents=True)
    (run_dir / "classes.json").write_text(json.dumps(CLASSES))
    rows = []
    for n in ns:
        for fold in folds:
            for run in range(runs):
                y_true = np.repeat(np.arange(3), 10)
                for method in METHODS:
                    acc = _value(rng, method, n, fold, run)
                    for metric, shift in (("accuracy", 0.0), ("balanced_accuracy", -0.01), ("macro_f1", -0.02)):
                        rows.append({"protocol": "run", "dataset": "toy", "method": method, "n": n, "fold": fold,
                                     "run": run, "seed": 0, "metric": metric, "value": round(max(0, acc + shift), 6),
                                     "n_train": 30 if n == "all" else 3 * n, "n_test": 30, "capped": False,
                                     "seconds": 1.5})
                    if predictions:
                        y_pred = y_true.copy()
                        wrong = int(round((1 - acc) * 30))
                        y_pred[:wrong] = (y_pred[:wrong] + 1) % 3
                        np.savez_compressed(run_dir / "predictions" / Unit(method, n, fold, run).filename,
                                            test_index=np.arange(30), y_true=y_true, y_pred=y_pred)
    with open(run_dir / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return run_dir, rows


def test_load_rows_types_and_dedup(tmp_path):
    run_dir, rows = make_run(tmp_path)
    loaded = load_rows(run_dir)
    assert len(loaded) == len(rows)
    assert {r["n"] for r in loaded} == {1, 5, "all"}
    assert all(isinstance(r["fold"], str) and isinstance(r["run"], int) for r in loaded)
    # the same folder twice (or a copy) merges to the same rows
    assert load_rows([run_dir, run_dir / "results.csv"]) == loaded


def test_load_rows_torn_line_and_errors(tmp_path):
    run_dir, rows = make_run(tmp_path, ns=(1,), predictions=False)
    with open(run_dir / "results.csv", "a") as fh:
        fh.write("run,toy,vgg,1,1,9,0,accur")  # a unit being written right now
    assert len(load_rows(run_dir)) == len(rows)
    with pytest.raises(DataError, match="no results.csv at"):
        load_rows(tmp_path / "missing")
    with pytest.raises(ParameterError, match="at least one run folder"):
        load_rows([])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.csv").write_text("protocol,dataset,method\nrun,toy,vgg\n")
    with pytest.raises(DataError, match="lacks column"):
        load_rows(bad)
    other, _ = make_run(tmp_path, ns=(1,), predictions=False, name="other")
    text = (other / "results.csv").read_text().splitlines()
    first = text[1].split(",")
    first[8] = "0.123"
    (other / "results.csv").write_text("\n".join([text[0], ",".join(first), *text[2:]]) + "\n")
    with pytest.raises(DataError, match="conflicting results for the unit"):
        load_rows([run_dir, other])


def test_summarize_numbers_and_collapse(tmp_path):
    run_dir, rows = make_run(tmp_path)
    summary = summarize(load_rows(run_dir))
    by = {(r["n"], r["method"]): r for r in summary}
    for (n, method), rec in by.items():
        vals = [r["value"] for r in rows if r["n"] == n and r["method"] == method and r["metric"] == "accuracy"]
        if method == "mfcc+knn" and n == "all":
            assert rec["collapsed"] and rec["n_units"] == 2 and rec["n_values"] == 6
            vals = [0.65, 0.70]
        else:
            assert not rec["collapsed"] and rec["n_units"] == 6
        mean, std, half, lo, hi = mean_ci(vals)
        assert rec["mean"] == pytest.approx(mean) and rec["ci_lo"] == pytest.approx(lo)
    assert [r["method"] for r in summary if r["n"] == 5][0] == "protonet"
    assert by[(5, "protonet")]["best"] and not by[(5, "mfcc+knn")]["not_worse"]
    # n ordering: numeric ascending, "all" last
    assert [r["n"] for r in summary][::3] == [1, 5, "all"]
    with pytest.raises(ParameterError, match="metric must be one of"):
        summarize(load_rows(run_dir), metric="auc")


def test_write_report_files_numbers_and_determinism(tmp_path):
    run_dir, rows = make_run(tmp_path)
    out = tmp_path / "report"
    paths = write_report([run_dir], out)
    for key in ("report", "summary_csv", "summary_json"):
        assert paths[key].is_file()
    assert {p.suffix for p in paths["plots"]} == {".png", ".svg"}
    assert all(p.stat().st_size > 0 for p in paths["plots"] + paths["confusion"])
    text = paths["report"].read_text()
    for rec in paths["summary"]:
        assert f"{rec['mean']:.4f}" in text
    assert "**best**" in text and "Pairwise tests, accuracy, n = 5" in text
    assert "2 folds (run-independent, 6 rows)" in text
    assert "### balanced accuracy" in text and "### macro f1" in text
    # summary.csv / summary.json carry every metric
    with open(paths["summary_csv"]) as fh:
        srows = list(csv.DictReader(fh))
    assert {r["metric"] for r in srows} == {"accuracy", "balanced_accuracy", "macro_f1"}
    data = json.loads(paths["summary_json"].read_text())
    assert len(data["summary"]) == len(srows) and data["comparisons"]
    # per-class accuracy from the predictions; run-independent methods counted once per fold
    with open(out / "per_class_accuracy.csv") as fh:
        pc = list(csv.DictReader(fh))
    knn_all = [r for r in pc if r["method"] == "mfcc+knn" and r["n"] == "all"]
    assert [r["class"] for r in knn_all] == CLASSES
    assert sum(int(r["support"]) for r in knn_all) == 2 * 30
    vgg5 = [r for r in pc if r["method"] == "vgg" and r["n"] == "5"]
    assert sum(int(r["support"]) for r in vgg5) == 6 * 30
    assert (out / "confusion" / "toy__n5.png").is_file()
    # regenerating gives the same files
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_report([run_dir], out)
    after = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after


def test_write_report_without_predictions_and_bar_chart(tmp_path):
    run_dir, _ = make_run(tmp_path, ns=("all",), predictions=False)
    paths = write_report(run_dir, tmp_path / "out", test="nadeau-bengio")
    assert paths["confusion"] == []
    assert [p.name for p in paths["plots"]] == ["accuracy_toy.png", "accuracy_toy.svg"]
    text = paths["report"].read_text()
    assert "No predictions were found" in text and "Nadeau-Bengio" in text


def test_format_table_has_report_numbers(tmp_path):
    run_dir, _ = make_run(tmp_path, ns=(5,), predictions=False)
    summary = summarize(load_rows(run_dir))
    console = Console(record=True, width=160)
    console.print(format_table(summary))
    out = console.export_text()
    for rec in summary:
        assert f"{rec['mean']:.4f} ± {rec['half_width']:.4f}" in out
    assert "best" in out and not math.isnan(summary[0]["std"])


def test_load_predictions_tolerates_junk_and_reads_metadata(tmp_path):
    from fewshot.results.confusion import aggregate_confusions, load_predictions, per_class_accuracy

    run_dir, rows = make_run(tmp_path, ns=(1,), folds=("1",), runs=1)
    (run_dir / "predictions" / "junk.npz").write_bytes(b"not a zip")
    np.savez(run_dir / "predictions" / "meta.npz", method=np.array("extra"), n=np.array("1"),
             fold=np.array("1"), run=np.array("0"), y_true=np.array([0, 1, 2]), y_pred=np.array([0, 1, 1]))
    np.savez(run_dir / "predictions" / "unknown.npz", y_true=np.array([0]), y_pred=np.array([0]))
    units, skipped = load_predictions(run_dir, units={("vgg", 1, "1", 0)}, dataset="toy", seed=0)
    assert skipped == 4  # junk, unknown, and the two methods not named in `units`
    assert sorted(u["method"] for u in units) == ["extra", "vgg"]
    agg = aggregate_confusions(units, classes={"toy": CLASSES})
    assert agg[("toy", 1, "extra")]["matrix"].tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert per_class_accuracy(agg[("toy", 1, "extra")]["matrix"]).tolist() == [1.0, 1.0, 0.0]
    assert load_predictions(tmp_path / "nowhere") == ([], 0)
