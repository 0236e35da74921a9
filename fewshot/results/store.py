"""The run folder: resolved config, environment, ``results.csv`` and predictions.

A run folder holds everything needed to reproduce and report a run::

    runs/<protocol>-<dataset id>-<hash>/
        config.json        the resolved configuration (identity + extent)
        environment.json   package versions, git SHA, device, threads
        classes.json       class names, in the order of the integer labels
        results.csv        one row per unit and metric (schema: RESULT_COLUMNS)
        predictions/       one compressed .npz per unit: test indices, y_true, y_pred
        skipped.csv        clips dropped with --on-error skip (when any)

The folder name hashes only the configuration's *identity* (dataset, seed,
training settings ...), not its *extent* (methods, n values, runs, folds), so
the same command resumes into the same folder and a command asking for more
methods, n values or runs extends it. A different identity in the same folder is
refused.

Rows of a unit are appended with one ``write`` on a file opened in append mode and
flushed to disk, after the unit's predictions; a torn last line (a crash mid-write)
is cut off when the folder is opened again, so re-running completes the unit.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import ConfigMismatchError, DataError

__all__ = ["RESULT_COLUMNS", "METRICS", "Unit", "RunStore", "config_hash", "default_run_dir"]

#: Column order of ``results.csv``.
RESULT_COLUMNS = (
    "protocol", "dataset", "method", "n", "fold", "run", "seed",
    "metric", "value", "n_train", "n_test", "capped", "seconds",
)
#: Metrics written for every unit.
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


@dataclass(frozen=True, order=True)
class Unit:
    """One independent piece of work: a method on one (n, fold, run) subset."""

    method: str
    n: int | str
    fold: str
    run: int

    @property
    def key(self) -> str:
        """``method|n|fold|run``: unique within a run folder."""
        return f"{self.method}|{self.n}|{self.fold}|{self.run}"

    @property
    def filename(self) -> str:
        """A file-system-safe name for the unit's predictions."""
        safe = re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{self.method}__n{self.n}__f{self.fold}__r{self.run}")
        digest = hashlib.sha1(self.key.encode()).hexdigest()[:8]
        return f"{safe}__{digest}.npz"


def config_hash(identity: dict) -> str:
    """Short stable hash of the identity part of a configuration."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def default_run_dir(protocol: str, dataset_id: str, identity: dict, *, root: str | Path = "runs") -> Path:
    """``runs/<protocol>-<dataset id>-<hash of identity>``."""
    return Path(root) / f"{protocol}-{dataset_id}-{config_hash(identity)}"


def _environment(device: str) -> dict:
    import importlib.metadata as md

    import torch

    versions = {}
    for pkg in ("fewshot", "torch", "torchaudio", "numpy", "scipy", "scikit-learn", "soundfile", "soxr"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {
        "versions": versions,
        "git_sha": sha,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "cuda_device": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


class RunStore:
    """Read and append the results of one run folder.

    Parameters
    ----------
    path : str or Path
        The run folder (created if missing).
    identity : dict
        Settings that define the results (dataset id, seed, training settings...).
        Must equal what the folder already holds, else :class:`ConfigMismatchError`.
    extent : dict
        Settings that only add units (methods, n values, runs, folds); merged
        with what the folder holds.
    classes : sequence of str
    device : str, default="cpu"
    """

    def __init__(
        self, path: str | Path, *, identity: dict, extent: dict, classes: Sequence[str], device: str = "cpu"
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "predictions").mkdir(exist_ok=True)
        self._lock = open(self.path / ".lock", "w")  # noqa: SIM115 - held for the store's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigMismatchError(
                f"run folder {self.path} is in use by another fewshot process; wait for it or use --out"
            ) from None
        self.results_path = self.path / "results.csv"
        self._write_config(identity, extent)
        _atomic_write_text(self.path / "classes.json", json.dumps(list(classes), indent=1))
        _atomic_write_text(self.path / "environment.json", json.dumps(_environment(device), indent=1))
        self._repair()

    # ------------------------------------------------------------------ config
    def _write_config(self, identity: dict, extent: dict) -> None:
        cfg_path = self.path / "config.json"
        identity = json.loads(json.dumps(identity, default=str))
        extent = json.loads(json.dumps(extent, default=str))
        if cfg_path.exists():
            old = json.loads(cfg_path.read_text())
            old_id = old.get("identity", {})
            if old_id != identity:
                diffs = sorted(k for k in set(old_id) | set(identity) if old_id.get(k) != identity.get(k))
                k = diffs[0]
                raise ConfigMismatchError(
                    f"run folder {self.path} holds results of another configuration "
                    f"({k}: {old_id.get(k)!r} there, {identity.get(k)!r} now); use another --out or the same settings"
                )
            merged = dict(old.get("extent", {}))
            for key, value in extent.items():
                before = merged.get(key)
                if isinstance(value, list) and isinstance(before, list):
                    merged[key] = before + [v for v in value if v not in before]
                else:
                    merged[key] = value
            extent = merged
        self.config = {"identity": identity, "extent": extent}
        _atomic_write_text(cfg_path, json.dumps(self.config, indent=1, sort_keys=True))

    # ------------------------------------------------------------------ rows
    def _repair(self) -> None:
        """Create ``results.csv`` with its header, or cut a torn last line."""
        if not self.results_path.exists() or self.results_path.stat().st_size == 0:
            with open(self.results_path, "w", newline="") as f:
                f.write(",".join(RESULT_COLUMNS) + "\n")
                f.flush()
                os.fsync(f.fileno())
            return
        data = self.results_path.read_bytes()
        cut = _whole_units_end(data)
        if cut < len(data):  # a torn last line, or a unit with only some of its metric rows
            with open(self.results_path, "r+b") as f:
                f.truncate(cut)
        header = data.split(b"\n", 1)[0].decode()
        if header.split(",") != list(RESULT_COLUMNS):
            raise DataError(f"{self.results_path}: unexpected header {header!r}; expected {','.join(RESULT_COLUMNS)}")

    def rows(self) -> list[dict]:
        """Every complete row written so far."""
        return read_results(self.results_path)

    def done_units(self) -> set[str]:
        """Keys of the units whose every metric row is present."""
        seen: dict[str, set[str]] = {}
        for row in self.rows():
            key = f"{row['method']}|{row['n']}|{row['fold']}|{row['run']}"
            seen.setdefault(key, set()).add(row["metric"])
        return {k for k, metrics in seen.items() if set(METRICS) <= metrics}

    def append_unit(self, unit: Unit, rows: Iterable[dict], *, predictions: dict[str, np.ndarray]) -> None:
        """Write a unit's predictions, then append its rows in one write.

        Parameters
        ----------
        unit : Unit
        rows : iterable of dict
            Rows with every column of :data:`RESULT_COLUMNS`.
        predictions : dict of str to np.ndarray
            At least ``test_index``, ``y_true`` and ``y_pred``; saved compressed.
        """
        target = self.path / "predictions" / unit.filename
        tmp = target.with_suffix(f".tmp{os.getpid()}.npz")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
        for row in rows:
            writer.writerow({k: row[k] for k in RESULT_COLUMNS})
        size = self.results_path.stat().st_size
        try:
            np.savez_compressed(tmp, **predictions)
            os.replace(tmp, target)
            with open(self.results_path, "a", newline="") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            # A full disk (or any failed write) must not leave half a unit: cut back to the last whole unit.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            with contextlib.suppress(OSError), open(self.results_path, "r+b") as f:
                f.truncate(size)
            what = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
            raise DataError(
                f"cannot write results of {unit.key} in {self.path}: {what} ({exc.filename or self.results_path}); "
                "the results of finished units are kept: free some space and run the same command to resume"
            ) from None

    def write_skipped(self, skipped: list[tuple[str, str]]) -> None:
        """Record clips dropped by ``--on-error skip`` as ``skipped.csv`` (path, reason)."""
        if not skipped:
            return
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "reason"])
        w.writerows(skipped)
        _atomic_write_text(self.path / "skipped.csv", buf.getvalue())

    def close(self) -> None:
        """Release the folder lock."""
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _whole_units_end(data: bytes) -> int:
    """Byte offset after the last whole line whose unit has all its metric rows at the end of the file."""
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    if len(lines) <= 1:
        return end
    last = list(csv.reader([lines[-1].decode("utf-8", "replace")]))[0]
    key = [last[i] for i in (2, 3, 4, 5)] if len(last) == len(RESULT_COLUMNS) else None
    tail = 0
    for line in reversed(lines[1:]):
        fields = list(csv.reader([line.decode("utf-8", "replace")]))[0]
        if key is None or len(fields) != len(RESULT_COLUMNS) or [fields[i] for i in (2, 3, 4, 5)] != key:
            break
        tail += 1
    if key is not None and tail % len(METRICS):
        end -= sum(len(line) + 1 for line in lines[len(lines) - tail % len(METRICS):])
    return end


def read_results(path: str | Path) -> list[dict]:
    """Read ``results.csv``; a torn last line (no newline) is ignored."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found; expected a run folder written by fewshot randomcnn or fewshot run")
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return list(csv.DictReader(io.StringIO(text)))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
