"""End-to-end CLI behaviour on tiny generated audio: rows, resume, report, clear errors."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fewshot.cli import main
from fewshot.data.datasets._fixtures import write_csv_dataset, write_tone_folder, write_wav

CHEAP = "mfcc+knn,random,timbral-f4+knn"


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run ``fewshot ARGS`` in-process; return (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["fewshot", *map(str, args)]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def tones(tmp_path) -> Path:
    return write_tone_folder(tmp_path / "tones", classes=3, clips=10, seconds=0.5, sr=16000)


def _rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def _key(r: dict) -> tuple:
    return tuple(r[k] for k in ("method", "n", "fold", "run", "seed", "metric", "value", "n_train", "n_test"))


def test_run_writes_requested_rows(tones, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(["run", "-d", tones, "--n", "1,2", "--runs", "2", "--folds", "1,2",
                                    "--method", CHEAP, "--seed", "7", "--out", out,
                                    "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 0, stderr
    rows = _rows(out)
    acc = [r for r in rows if r["metric"] == "accuracy"]
    assert len(acc) == 3 * 2 * 2 * 2  # methods × n × folds × runs
    assert {r["n"] for r in acc} == {"1", "2"}
    assert {r["fold"] for r in acc} == {"1", "2"}
    assert {r["run"] for r in acc} == {"0", "1"}
    assert {r["seed"] for r in acc} == {"7"}
    assert {r["protocol"] for r in acc} == {"run"}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    assert {int(r["n_train"]) for r in acc if r["n"] == "2"} == {6}  # 2 clips × 3 classes
    # The table printed at the end is the report's.
    assert "mfcc+knn" in stdout and (out / "report" / "report.md").exists()
    assert list((out / "predictions").glob("*.npz"))


def test_same_command_same_rows_and_resume(tones, tmp_path, capsys):
    args = ["run", "-d", tones, "--n", "2", "--runs", "2", "--folds", "1", "--method", CHEAP,
            "--cache-dir", tmp_path / "cache", "--no-report"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli([*args, "--out", a], capsys)[0] == 0
    full = sorted(map(_key, _rows(a)))
    # Interrupt "b": keep only its first unit and a torn half line, then run the same command again.
    assert run_cli([*args, "--out", b], capsys)[0] == 0
    lines = (b / "results.csv").read_text().splitlines(keepends=True)
    (b / "results.csv").write_text("".join(lines[:4]) + lines[4][:10])
    code, _, stderr = run_cli([*args, "--out", b], capsys)
    assert code == 0, stderr
    assert sorted(map(_key, _rows(b))) == full  # no duplicate, no missing row, same values


def test_report_reproduces_printed_numbers(tones, tmp_path, capsys):
    out = tmp_path / "run"
    code, printed, _ = run_cli(["run", "-d", tones, "--n", "2", "--runs", "3", "--folds", "1", "--method", CHEAP,
                                "--out", out, "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 0
    code, again, _ = run_cli(["report", out, "--out", tmp_path / "rep"], capsys)
    assert code == 0
    assert printed == again
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary
    acc = [float(r["value"]) for r in _rows(out) if r["metric"] == "accuracy" and r["method"] == "random"]
    assert f"{np.mean(acc):.4f}" in again


def test_randomcnn_protocol_file(tones, tmp_path, capsys):
    toml = tmp_path / "p.toml"
    toml.write_text(f'protocol = "randomcnn"\ndataset = "{tones}"\nfrontends = ["timbral", "mfcc"]\n'
                    'width = "small"\nclassifiers = ["knn"]\nruns = 2\nfolds = ["1"]\n')
    out = tmp_path / "rc"
    code, _, stderr = run_cli(["randomcnn", "--protocol", toml, "--out", out, "--cache-dir", tmp_path / "c",
                               "--no-report"], capsys)
    assert code == 0, stderr
    acc = [r for r in _rows(out) if r["metric"] == "accuracy"]
    assert {r["method"] for r in acc} == {"timbral-small+knn", "mfcc+knn"}
    # mfcc+knn on the whole pool cannot depend on the run: evaluated once per fold.
    assert sum(r["method"] == "mfcc+knn" for r in acc) == 1
    assert sum(r["method"] == "timbral-small+knn" for r in acc) == 2


def test_other_config_in_same_folder_is_refused(tones, tmp_path, capsys):
    base = ["run", "-d", tones, "--n", "1", "--runs", "1", "--folds", "1", "--method", "random",
            "--out", tmp_path / "r", "--no-report", "--cache-dir", tmp_path / "c"]
    assert run_cli(base, capsys)[0] == 0
    code, _, err = run_cli([*base, "--seed", "3"], capsys)
    assert code == 2 and "another configuration" in err and "Traceback" not in err
    # More methods extend the same folder.
    assert run_cli([*base[:-7], "--method", "random,mfcc+knn", *base[-5:]], capsys)[0] == 0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: ["-d", p / "missing"], "no such file or folder"),
        (lambda p: ["-d", "nosuchloader:" + str(p)], "unknown dataset 'nosuchloader'; available:"),
        (lambda p: ["-d", _csv_without_label(p)], "has no 'label' column"),
        (lambda p: ["-d", _empty_class(p)], "holds no audio files"),
        (lambda p: ["-d", _with_bad_file(p, b"not audio at all")], "bad.wav"),
        (lambda p: ["-d", _with_bad_file(p, None)], "zero-length"),
        (lambda p: ["-d", write_tone_folder(p / "t"), "--n", "99"], "fewer than n=99"),
        (lambda p: ["-d", write_tone_folder(p / "t"), "--method", "vgg-small+nope"], "unknown classifier 'nope'"),
        (lambda p: ["-d", write_tone_folder(p / "t"), "--method", "nope"], "unknown model 'nope'"),
        (lambda p: ["-d", write_tone_folder(p / "t"), "--folds", "9"], "fold '9' is not in dataset"),
        (lambda p: ["-d", write_tone_folder(p / "t"), "--n", "0"], "n must be a positive int"),
    ],
)
def test_bad_inputs_give_one_clear_line(tmp_path, capsys, make, match):
    args = ["run", *make(tmp_path), "--runs", "1", "--out", tmp_path / "out", "--cache-dir", tmp_path / "c",
            "--no-report"]
    if "--method" not in args:
        args += ["--method", "mfcc+knn"]
    if "--n" not in args:
        args += ["--n", "1"]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    assert match in err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and match in errors[0]  # one line carries the whole message


def _csv_without_label(p: Path) -> Path:
    path = write_csv_dataset(p / "c")
    text = path.read_text().replace("path,label", "path,class")
    path.write_text(text)
    return path


def _empty_class(p: Path) -> Path:
    root = write_tone_folder(p / "e")
    (root / "empty_class").mkdir()
    return root


def _with_bad_file(p: Path, content: bytes | None) -> Path:
    root = write_tone_folder(p / "b", clips=6)
    if content is None:
        write_wav(root / "tone0" / "bad.wav", np.zeros(0, dtype=np.float32), 16000)
    else:
        (root / "tone0" / "bad.wav").write_bytes(content)
    return root


def test_listings(capsys):
    for cmd, word in [("datasets", "urbansound8k"), ("frontends", "sample_level"), ("classifiers", "elm"),
                      ("models", "protonet")]:
        code, out, _ = run_cli([cmd], capsys)
        assert code == 0 and word in out


def test_full_disk_anywhere_is_one_line(tones, tmp_path, capsys, monkeypatch):
    import errno

    import fewshot.results.store as store

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "config.json"))

    monkeypatch.setattr(store, "_atomic_write_text", full)
    code, _, err = run_cli(["run", "-d", tones, "--n", "1", "--runs", "1", "--method", "random",
                            "--out", tmp_path / "out", "--cache-dir", tmp_path / "c"], capsys)
    assert code == 2 and "the disk is full" in err and "config.json" in err and "Traceback" not in err


def test_embed_writes_taggram_and_embedding(tmp_path, capsys):
    pytest.importorskip("musicnn")
    wav = write_wav(tmp_path / "clip.wav", 0.3 * np.sin(np.arange(16000 * 4) / 16000 * 2 * np.pi * 440), 16000)
    code, _, err = run_cli(["embed", wav, "--model", "mtt_musicnn", "--out", tmp_path / "emb"], capsys)
    assert code == 0, err
    taggram = np.load(tmp_path / "emb" / "clip.taggram.npy")
    embedding = np.load(tmp_path / "emb" / "clip.embedding.npy")
    assert taggram.shape == (1, 50) and embedding.shape == (1, 200)
    assert np.all((taggram >= 0) & (taggram <= 1))
