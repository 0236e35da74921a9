"""``fewshot status`` and ``fewshot resume``: a run folder's progress, and continuing it.

Every run records, next to ``identity`` and ``extent`` in ``config.json``, a
``resolved`` section: the full :class:`ExperimentConfig` of the last command
that ran in the folder, with the dataset path, the cache folder and the run
folder made absolute (and ``cwd``). From it:

- :func:`run_status` plans the units again (methods, n values, runs and folds
  merged over every command that ran in the folder) and counts those whose every
  metric row is in ``results.csv``, per method; it reads and never writes, and
  tells whether a process holds the folder's lock (running) or not (finished or
  interrupted);
- :func:`saved_config` rebuilds the configuration, so ``fewshot resume RUN_DIR``
  continues the run without retyping the command.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import fields
from pathlib import Path

from ..exceptions import DataError
from ..results.store import METRICS, read_results
from .config import ExperimentConfig

__all__ = ["record_resolved", "saved_config", "run_status", "format_status", "lock_held"]


def _absolute_dataset(spec: str) -> str:
    """``spec`` with its path made absolute (``synth`` specs and unknown forms are kept as they are)."""
    from ..data.datasets import DATASETS

    spec = str(spec).strip()
    name, sep, rest = spec.partition(":")
    if name == "synth":
        return spec
    if sep and name in DATASETS and rest and Path(rest).expanduser().exists():
        return f"{name}:{Path(rest).expanduser().resolve()}"
    if Path(spec).expanduser().exists():
        return str(Path(spec).expanduser().resolve())
    return spec


def record_resolved(run_dir: str | Path, cfg: ExperimentConfig, cache_root: str | Path) -> None:
    """Add the ``resolved`` section (the full config, paths made absolute) to ``run_dir/config.json``.

    Called by the engine right after it opens the run folder (holding its lock).
    """
    path = Path(run_dir) / "config.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    resolved = json.loads(json.dumps(cfg.to_dict(), default=str))
    resolved["dataset"] = _absolute_dataset(cfg.dataset)
    resolved["cache_dir"] = str(Path(cache_root).expanduser().resolve())
    resolved["out"] = str(Path(run_dir).resolve())
    data["resolved"] = resolved
    data["cwd"] = os.getcwd()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _config_json(run_dir: Path) -> dict:
    path = run_dir / "config.json"
    if not path.is_file():
        raise DataError(f"{run_dir}: no config.json; expected a run folder written by fewshot run or randomcnn")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def saved_config(run_dir: str | Path) -> ExperimentConfig:
    """The configuration to continue ``run_dir`` with: the last command's, over every command's extent.

    Raises
    ------
    DataError
        No run folder there, or one written before configurations were saved.
    """
    run_dir = Path(run_dir)
    data = _config_json(run_dir)
    resolved = data.get("resolved")
    if not resolved:
        raise DataError(f"{run_dir}/config.json has no saved command (written by an older fewshot); "
                        "run the original command again to resume it")
    known = {f.name for f in fields(ExperimentConfig)}
    values = {k: v for k, v in resolved.items() if k in known}
    extent = data.get("extent", {})
    for key in ("methods", "n"):
        merged = list(values.get(key) or [])
        merged += [v for v in extent.get(key) or [] if v not in merged]
        values[key] = merged
    if values.get("folds") is not None and extent.get("folds") is not None:
        values["folds"] = list(values["folds"]) + [f for f in extent["folds"] if f not in values["folds"]]
    else:
        values["folds"] = None
    values["out"] = str(run_dir.resolve())
    return ExperimentConfig(**values).validate()


def lock_held(run_dir: str | Path) -> bool:
    """True when a fewshot process holds ``run_dir``'s lock (the run is going on)."""
    path = Path(run_dir) / ".lock"
    if not path.exists():
        return False
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def run_status(run_dir: str | Path) -> dict:
    """Progress of a run folder, in progress or interrupted.

    Returns
    -------
    dict
        ``run_dir``, ``running`` (lock held), ``planned`` (int or None when the dataset
        cannot be loaded here), ``done``, ``methods`` (``{method: {"done", "planned"}}``),
        ``last_row`` (time of the last write to ``results.csv``, or None), ``seconds_per_unit``
        (mean of the finished units), ``skipped`` (clips dropped by ``--on-error skip``),
        ``note`` (why ``planned`` is unknown) and ``config`` (the saved ExperimentConfig or None).
    """
    run_dir = Path(run_dir)
    _config_json(run_dir)
    results = run_dir / "results.csv"
    rows = read_results(results) if results.exists() else []
    metrics: dict[str, set] = {}
    seconds: dict[str, float] = {}
    for row in rows:
        key = f"{row['method']}|{row['n']}|{row['fold']}|{row['run']}"
        metrics.setdefault(key, set()).add(row["metric"])
        with contextlib.suppress(ValueError, KeyError):
            seconds[key] = float(row["seconds"])
    done_keys = {k for k, m in metrics.items() if set(METRICS) <= m}
    planned_keys, note, cfg = None, "", None
    try:
        cfg = saved_config(run_dir)
        planned_keys = _planned(cfg)
    except Exception as err:  # noqa: BLE001 - status reports what it can; the reason goes in the note
        note = f"units planned unknown: {' '.join(str(err).split())}"
    per_method: dict[str, dict] = {}
    for key in done_keys | (planned_keys or set()):
        method = key.split("|", 1)[0]
        slot = per_method.setdefault(method, {"done": 0, "planned": 0 if planned_keys is not None else None})
        slot["done"] += key in done_keys
        if planned_keys is not None:
            slot["planned"] += key in planned_keys
    done_in_plan = len(done_keys & planned_keys) if planned_keys is not None else len(done_keys)
    skipped_path = run_dir / "skipped.csv"
    skipped = max(0, len(skipped_path.read_text().splitlines()) - 1) if skipped_path.exists() else 0
    finished = [seconds[k] for k in done_keys if k in seconds]
    return {
        "run_dir": str(run_dir),
        "running": lock_held(run_dir),
        "planned": len(planned_keys) if planned_keys is not None else None,
        "done": done_in_plan,
        "methods": dict(sorted(per_method.items())),
        "last_row": results.stat().st_mtime if rows else None,
        "seconds_per_unit": sum(finished) / len(finished) if finished else None,
        "skipped": skipped,
        "note": note,
        "config": cfg,
    }


def _planned(cfg: ExperimentConfig) -> set[str]:
    from dataclasses import replace

    from .engine import prepare

    exp = prepare(replace(cfg, device="cpu"))  # no GPU needed to plan
    return {u.key for u in exp.units}


def format_status(status: dict) -> list[str]:
    """Lines for the terminal (the per-method table is printed by the CLI)."""
    planned, done = status["planned"], status["done"]
    state = "running (lock held by a fewshot process)" if status["running"] else (
        "complete" if planned is not None and done >= planned else "not running (interrupted or stopped)")
    lines = [f"run folder: {status['run_dir']}", f"state: {state}"]
    if planned is not None:
        pct = 100.0 * done / planned if planned else 100.0
        lines.append(f"units: {done} / {planned} done ({pct:.1f}%), {planned - done} to go")
    else:
        lines.append(f"units: {done} done; {status['note']}")
    if status["last_row"] is not None:
        ago = time.time() - status["last_row"]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status["last_row"]))
        lines.append(f"last row written: {stamp} ({_ago(ago)} ago)")
    else:
        lines.append("last row written: none yet")
    if status["seconds_per_unit"] is not None and planned is not None and planned > done:
        eta = status["seconds_per_unit"] * (planned - done)
        lines.append(f"mean {status['seconds_per_unit']:.2f} s per unit; about {_ago(eta)} of unit time to go "
                     "(one process; excludes start-up and feature extraction already cached)")
    if status["skipped"]:
        lines.append(f"skipped clips: {status['skipped']} (see skipped.csv)")
    if not status["running"] and planned is not None and done < planned:
        lines.append(f"continue with: fewshot resume {status['run_dir']}")
    return lines


def _ago(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
