"""Crash safety, bad input and long-run bookkeeping (issue 8).

Every CLI case goes through :func:`fewshot.cli.main` (in-process, so the exit code and the
one-line message are those a user sees); the crash test SIGKILLs real subprocesses.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fewshot import cli
from fewshot.data.cache import ArrayCache
from fewshot.exceptions import DataError
from fewshot.protocols.config import ExperimentConfig
from fewshot.protocols.engine import run_experiment
from fewshot.protocols.status import run_status, saved_config
from fewshot.results.store import METRICS, RESULT_COLUMNS, RunStore, Unit, read_results

SYNTH = "synth:classes=3,clips=10,seconds=1"


def rows_without_seconds(run_dir) -> list[tuple]:
    """Rows as sorted tuples, every column but ``seconds``."""
    rows = read_results(Path(run_dir) / "results.csv")
    return sorted(tuple(r[c] for c in RESULT_COLUMNS if c != "seconds") for r in rows)


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``fewshot ARGS`` in-process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["fewshot", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), out, err


def config(tmp_path, **kw) -> ExperimentConfig:
    base = dict(protocol="run", dataset=SYNTH, methods=["mfcc+knn", "random"], n=[1], runs=2,
                cache_dir=str(tmp_path / "cache"), out=str(tmp_path / "ref"), device="cpu")
    return ExperimentConfig(**{**base, **kw}).validate()


# ----------------------------------------------------------------- crash safety
_SLOW_RUNNER = """
import sys, time
import fewshot.protocols.evaluate as ev
_predict = ev.predict_unit
def slow(*a, **k):
    time.sleep(0.08)
    return _predict(*a, **k)
ev.predict_unit = slow
from fewshot.cli import main
sys.argv = ["fewshot"] + sys.argv[1:]
main()
"""


def _n_rows(path: Path) -> int:
    try:
        return max(0, path.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def test_sigkill_at_several_moments_then_resume_equals_uninterrupted_run(tmp_path, monkeypatch, capsys):
    out = tmp_path / "killed"
    args = ["run", "-d", SYNTH, "--method", "mfcc+knn,random", "--n", "1", "--runs", "3",
            "--cache-dir", tmp_path / "cache", "--out", out, "--no-report", "--device", "cpu", "--threads", "1"]
    cmd = [sys.executable, "-c", _SLOW_RUNNER, *map(str, args)]
    results = out / "results.csv"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Kill moments: during start-up (before any row), after a few units, after most units.
    for kill_after_rows in (None, 3 * 3, 3 * 20):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        if kill_after_rows is None:
            time.sleep(1.0)
        else:
            while _n_rows(results) < kill_after_rows and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    # A crash in the middle of a write: a torn last line and a unit with only some of its rows.
    done_rows = read_results(results)
    assert 0 < len(done_rows) < 30 * len(METRICS)
    done = {(r["method"], r["fold"], r["run"]) for r in done_rows}
    method, fold, run = next((m, str(f), str(r)) for m in ("random", "mfcc+knn") for f in range(1, 6)
                             for r in range(3) if (m, str(f), str(r)) not in done)
    row = {**done_rows[0], "method": method, "fold": fold, "run": run, "metric": "accuracy"}
    with open(results, "a") as f:
        f.write(",".join(row[c] for c in RESULT_COLUMNS) + "\n")  # a unit with one of its three rows
        f.write(",".join(row[c] for c in RESULT_COLUMNS)[:30])  # a torn line
    code, _, err = run_cli(monkeypatch, capsys, *args)  # the same command, in-process to save a start-up
    assert code == 0, err
    assert "already done" in err
    run_experiment(config(tmp_path, runs=3, out=str(tmp_path / "ref")), show_progress=False)
    got, want = rows_without_seconds(out), rows_without_seconds(tmp_path / "ref")
    assert len(got) == len(set(got)) == 30 * len(METRICS)  # no duplicates, none missing
    assert got == want  # equal to an uninterrupted run apart from seconds (and order)
    assert all(len(r) == len(RESULT_COLUMNS) and r["seconds"] for r in read_results(results))  # no torn rows


def test_store_cuts_a_unit_with_only_some_metric_rows(tmp_path):
    store = RunStore(tmp_path, identity={"a": 1}, extent={}, classes=["x", "y"])
    base = {c: "1" for c in RESULT_COLUMNS} | {"method": "m", "n": 1, "fold": "1", "run": 0}
    store.append_unit(Unit("m", 1, "1", 0), [base | {"metric": m} for m in METRICS],
                      predictions={"y_pred": np.zeros(2)})
    store.close()
    with open(tmp_path / "results.csv", "a") as f:
        f.write(",".join(str((base | {"run": 1, "metric": "accuracy"})[c]) for c in RESULT_COLUMNS) + "\n")
    store = RunStore(tmp_path, identity={"a": 1}, extent={}, classes=["x", "y"])
    assert store.done_units() == {"m|1|1|0"} and len(store.rows()) == len(METRICS)
    store.close()


def test_corrupted_cache_entry_is_recomputed_with_the_same_rows(tmp_path):
    run_experiment(config(tmp_path), show_progress=False)
    entries = sorted((tmp_path / "cache" / "features").rglob("*.fsc"))
    assert entries
    for path in entries[:5]:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    run_experiment(config(tmp_path, out=str(tmp_path / "again")), show_progress=False)
    assert rows_without_seconds(tmp_path / "again") == rows_without_seconds(tmp_path / "ref")
    cache = ArrayCache(tmp_path / "cache")
    for path in entries[:5]:  # recomputed and valid again
        key = f"features/{path.stem}"
        assert cache.get(key) is not None


# ----------------------------------------------------------------- bad clips
def _csv_dataset(root: Path, bad: dict[str, str] | None = None, *, rows_text: str | None = None) -> Path:
    """Two classes × 4 clips in folds 1/2 (+ bad clips of class 'a' in fold 1); returns the CSV."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = ["path,label,fold"]
    for label, freq in (("a", 440.0), ("b", 1200.0)):
        for i in range(4):
            t = np.arange(8000) / 8000
            y = (0.3 * np.sin(2 * np.pi * freq * (1 + 0.05 * i) * t) + 0.01 * rng.standard_normal(8000))
            sf.write(root / f"{label}{i}.wav", y.astype(np.float32), 8000)
            lines.append(f"{label}{i}.wav,{label},{1 + i % 2}")
    for kind, name in (bad or {}).items():
        path = root / name
        if kind == "unreadable":
            path.write_bytes(b"RIFF\x00\x00not really a wave file")
        elif kind == "zero-length":
            sf.write(path, np.zeros(0, dtype=np.float32), 8000)
        elif kind == "silent":
            sf.write(path, np.zeros(8000, dtype=np.float32), 8000)
        elif kind == "nan":
            y = np.full(8000, 0.1, dtype=np.float32)
            y[100] = np.nan
            sf.write(path, y, 8000, subtype="FLOAT")
        lines.append(f"{name},a,1")
    csv_path = root / "index.csv"
    csv_path.write_text(rows_text if rows_text is not None else "\n".join(lines) + "\n")
    return csv_path


BAD_CLIPS = {
    "unreadable": ("broken.wav", "cannot decode audio file"),
    "zero-length": ("empty.wav", "zero-length audio"),
    "silent": ("silent.wav", "silent audio"),
    "nan": ("nan.wav", "non-finite samples"),
}


def _run_args(tmp_path, dataset, *extra):
    return ["run", "-d", dataset, "--method", "mfcc+knn,random", "--n", "1", "--runs", "1", "--device", "cpu",
            "--cache-dir", tmp_path / "cache", "--out", tmp_path / "run", "--no-report", *extra]


@pytest.mark.parametrize("kind", list(BAD_CLIPS))
def test_bad_clip_fails_with_one_line_naming_the_file(tmp_path, monkeypatch, capsys, kind):
    name, reason = BAD_CLIPS[kind]
    dataset = _csv_dataset(tmp_path / "data", {kind: name})
    code, _, err = run_cli(monkeypatch, capsys, *_run_args(tmp_path, dataset))
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error:") and name in last and reason in last and "--on-error skip" in last
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "results.csv").exists() or read_results(tmp_path / "run" / "results.csv") == []


def test_bad_clips_skipped_for_every_method_and_reported(tmp_path, monkeypatch, capsys):
    bad = {kind: name for kind, (name, _) in BAD_CLIPS.items()}
    dataset = _csv_dataset(tmp_path / "data", bad)
    args = _run_args(tmp_path, dataset, "--on-error", "skip")
    args[args.index("--no-report")] = "--report"
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "skipped 4" in err
    with open(tmp_path / "run" / "skipped.csv") as fh:
        skipped = {Path(r["path"]).name: r["reason"] for r in csv.DictReader(fh)}
    assert set(skipped) == set(bad.values())
    rows = read_results(tmp_path / "run" / "results.csv")
    by_method = {}
    for r in rows:
        by_method.setdefault(r["method"], set()).add((r["fold"], r["n_test"]))
    assert by_method["mfcc+knn"] == by_method["random"] == {("1", "4"), ("2", "4")}  # bad clips of fold 1 dropped
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "## Skipped clips" in report and "4 clip(s) skipped" in report and "silent.wav" in report


# ----------------------------------------------------------------- manifests and requests
MANIFESTS = {
    "unknown fold values": ("a0.wav,a,train\na1.wav,a,test\nb0.wav,b,train\nb1.wav,b,tset\n",
                            "unknown fold values: the fold column mixes split names (test, train) with other "
                            "values ('tset')"),
    "labels differing by case": ("a0.wav,dog,1\na1.wav,Dog,2\nb0.wav,cat,1\nb1.wav,cat,2\n",
                                 "labels differ only by case or whitespace: 'Dog' and 'dog'"),
    "labels differing by whitespace": ("a0.wav,dog bark,1\na1.wav,dog  bark,2\nb0.wav,cat,1\nb1.wav,cat,2\n",
                                       "labels differ only by case or whitespace: 'dog"),
    "duplicate paths": ("a0.wav,a,1\n./a0.wav,a,2\nb0.wav,b,1\nb1.wav,b,2\n", "a0.wav is listed more than once"),
}


@pytest.mark.parametrize("case", list(MANIFESTS))
def test_inconsistent_manifest_gives_one_clear_line(tmp_path, monkeypatch, capsys, case):
    text, message = MANIFESTS[case]
    dataset = _csv_dataset(tmp_path / "data", rows_text="path,label,fold\n" + text)
    code, _, err = run_cli(monkeypatch, capsys, *_run_args(tmp_path, dataset))
    assert code == 2 and "Traceback" not in err
    assert message in " ".join(err.split()), err


REQUESTS = {
    "n larger than a class": (["--n", "9"], "fewer than n=9; lower n or pass --cap"),
    "fold not in the dataset": (["--folds", "7"], "--folds: fold '7' is not in dataset"),
    "unknown method": (["--method", "nope"], "unknown model 'nope'; available:"),
    "unknown front-end": (["--method", "nope-small+knn"], "nope"),
    "unknown classifier": (["--method", "mfcc+nope"], "unknown classifier 'nope'; available:"),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_impossible_request_gives_one_clear_line_before_any_work(tmp_path, monkeypatch, capsys, case):
    extra, message = REQUESTS[case]
    code, _, err = run_cli(monkeypatch, capsys, *_run_args(tmp_path, SYNTH), *extra)
    assert code == 2 and "Traceback" not in err
    text = " ".join(err.split())
    assert text.startswith("error:") and message in text, err
    assert not (tmp_path / "run").exists()  # refused before a run folder was made


def test_full_disk_says_so_keeps_results_and_resumes(tmp_path, monkeypatch, capsys):
    import fewshot.results.store as store_module

    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync_until_full(fd):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(store_module.os, "fsync", fsync_until_full)
    args = _run_args(tmp_path, SYNTH)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    text = " ".join(err.split())
    assert code == 2 and "Traceback" not in err
    assert "the disk is full" in text and str(tmp_path / "run") in text and "results of finished units are kept" in text
    kept = read_results(tmp_path / "run" / "results.csv")
    assert len(kept) == 2 * len(METRICS)  # the header fsync + 2 units; the 3rd unit's rows were cut back
    monkeypatch.setattr(store_module.os, "fsync", real_fsync)
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    rows = rows_without_seconds(tmp_path / "run")
    assert len(rows) == len(set(rows)) == 2 * 5 * len(METRICS)


# ----------------------------------------------------------------- status and resume
def test_status_and_resume_of_an_interrupted_run(tmp_path, monkeypatch, capsys):
    cfg = config(tmp_path, out=str(tmp_path / "run"), runs=2)
    run_experiment(cfg, show_progress=False)
    results = tmp_path / "run" / "results.csv"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[: 1 + 7 * len(METRICS)]))  # as if killed after 7 of 20 units
    st = run_status(tmp_path / "run")
    assert (st["done"], st["planned"], st["running"]) == (7, 20, False)
    assert st["methods"]["mfcc+knn"] == {"done": 7, "planned": 10} and st["methods"]["random"]["planned"] == 10
    code, out, _ = run_cli(monkeypatch, capsys, "status", tmp_path / "run")
    text = " ".join(out.split())
    assert code == 0 and "units: 7 / 20 done" in text and "not running" in text and "fewshot resume" in text
    with open(tmp_path / "run" / ".lock", "w") as lock:  # a run going on holds the lock
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_status(tmp_path / "run")["running"] is True
    code, _, err = run_cli(monkeypatch, capsys, "resume", tmp_path / "run", "--no-report")
    assert code == 0, err
    assert "(7 already done)" in " ".join(err.split())
    run_experiment(config(tmp_path, runs=2), show_progress=False)
    assert rows_without_seconds(tmp_path / "run") == rows_without_seconds(tmp_path / "ref")
    assert run_status(tmp_path / "run")["done"] == 20
    assert saved_config(tmp_path / "run").methods == ["mfcc+knn", "random"]


def test_resume_of_a_folder_without_saved_config_is_a_clear_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text('{"identity": {}, "extent": {}}')
    code, _, err = run_cli(monkeypatch, capsys, "resume", tmp_path / "old")
    assert code == 2 and "has no saved command" in err
    with pytest.raises(DataError, match="no config.json"):
        saved_config(tmp_path / "missing")


def test_keep_heap_applies_once_and_can_be_turned_off(monkeypatch):
    import sys

    from fewshot import _allocator

    monkeypatch.setattr(_allocator, "_done", False)
    monkeypatch.setenv("FEWSHOT_MALLOC", "default")
    assert _allocator.keep_heap() is False
    monkeypatch.delenv("FEWSHOT_MALLOC")
    applied = _allocator.keep_heap()
    assert applied is sys.platform.startswith("linux")  # glibc here; a no-op elsewhere
    assert _allocator.keep_heap() is applied
