"""Running an experiment: plan units, skip finished ones, evaluate, append rows, report.

Both protocols (``randomcnn`` and ``run``) go through :func:`run_experiment`; they
differ only in their defaults and method lists. Every unit writes its rows as
soon as it ends, so an interrupted run loses at most the unit in flight and the
same command resumes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from ..data.cache import ArrayCache
from ..data.datasets import Dataset, load_dataset
from ..exceptions import DataError, ParameterError
from ..methods import parse_methods
from ..results.store import METRICS, RunStore, Unit, default_run_dir
from .config import ExperimentConfig
from .evaluate import Context, check_method
from .executors import LocalExecutor, check_subsets
from .status import record_resolved
from .units import plan_units

__all__ = ["Experiment", "prepare", "run_experiment", "resolve_device", "unit_rows"]


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"--device {device}: no CUDA device is visible here; use --device cpu or auto")
    return device


@dataclass
class Experiment:
    """A resolved experiment: dataset, folds, units and the run folder."""

    config: ExperimentConfig
    dataset: Dataset
    folds: list[str]
    units: list[Unit]
    run_dir: Path
    device: str


def prepare(cfg: ExperimentConfig) -> Experiment:
    """Load the dataset, check methods and folds, plan the units and pick the run folder."""
    device = resolve_device(cfg.device)
    dataset = load_dataset(cfg.dataset, seed=cfg.seed, n_folds=cfg.n_folds)
    specs = parse_methods(cfg.methods)
    for spec in specs:
        check_method(spec)
    if cfg.folds:
        bad = [f for f in cfg.folds if f not in dataset.test_folds]
        if bad:
            raise ParameterError(
                f"--folds: fold {bad[0]!r} is not in dataset {dataset.id!r}; "
                f"its test folds are {', '.join(dataset.test_folds)}"
            )
        folds = list(cfg.folds)
    else:
        folds = list(dataset.test_folds)
    if cfg.quick:
        folds = folds[:1]
    units = plan_units(specs, list(cfg.n), folds, cfg.runs)
    check_subsets(dataset, units, seed=cfg.seed, cap=cfg.cap)
    identity = cfg.identity(dataset.id)
    run_dir = Path(cfg.out) if cfg.out else default_run_dir(cfg.protocol, dataset.id, identity)
    return Experiment(cfg, dataset, folds, units, run_dir, device)


def unit_rows(cfg: ExperimentConfig, dataset: Dataset, unit: Unit, *, y_true, y_pred, n_train, capped, seconds):
    """The result rows (one per metric) of a finished unit."""
    labels = np.arange(len(dataset.classes))
    values = {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
    }
    base = {
        "protocol": cfg.protocol, "dataset": dataset.id, "method": unit.method, "n": unit.n,
        "fold": unit.fold, "run": unit.run, "seed": cfg.seed, "n_train": n_train, "n_test": len(y_true),
        "capped": bool(capped), "seconds": f"{seconds:.3f}",
    }
    return [{**base, "metric": m, "value": f"{values[m]:.6f}"} for m in METRICS]


def _execution_order(units: list[Unit]) -> list[Unit]:
    """Units of one front-end and run together, so each random network is drawn and extracted once."""

    def key(u: Unit):
        head, _, clf = u.method.partition("+")
        return (head, u.run if clf else 0, clf, str(u.n), u.fold, u.run)

    return sorted(units, key=key)


def check_audio(ctx: Context, indices: np.ndarray, sr: int, *, on_error: str, progress=None) -> list[tuple[str, str]]:
    """Decode every clip once (filling the cache); return the (path, reason) of clips to skip.

    With ``on_error="fail"`` the first bad clip raises :class:`DataError` naming the file.
    """
    skipped = []
    for i in indices:
        try:
            ctx.waveform(int(i), sr)
        except DataError as err:
            if on_error == "fail":
                hint = "" if "--on-error skip" in str(err) else " (pass --on-error skip to drop such clips)"
                raise DataError(f"{err}{hint}") from None
            skipped.append((ctx.dataset.clips[int(i)].path, str(err)))
        if progress is not None:
            progress()
    return skipped


def run_experiment(cfg: ExperimentConfig, *, console=None, show_progress: bool = True, executor=None) -> Path:
    """Run (or resume) an experiment and return its run folder.

    Parameters
    ----------
    cfg : ExperimentConfig
    console : rich.console.Console, optional
        Where progress and messages go.
    show_progress : bool, default=True
    executor : LocalExecutor or DaskExecutor, optional
        Where units are evaluated (:mod:`fewshot.protocols.executors`); default: in this process.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = console or Console(stderr=True)
    exp = prepare(cfg)
    ds = exp.dataset
    cache = ArrayCache(cfg.cache_dir)
    ctx = Context(ds, cfg, cache, exp.device)
    specs = {s.text: s for s in parse_methods(cfg.methods)}
    store = RunStore(exp.run_dir, identity=cfg.identity(ds.id), extent=cfg.extent(), classes=ds.classes,
                     device=exp.device)
    record_resolved(store.path, cfg, cache.root)
    executor = executor or LocalExecutor()
    try:
        done = store.done_units()
        todo = _execution_order([u for u in exp.units if u.key not in done])
        console.print(
            f"[bold]{cfg.protocol}[/bold] on {ds.id}: {len(ds)} clips, {len(ds.classes)} classes, "
            f"folds {', '.join(exp.folds)}; {len(exp.units)} units ({len(exp.units) - len(todo)} already done) "
            f"on {exp.device}, {executor.describe()} → {exp.run_dir}"
        )
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn())
        with Progress(*columns, console=console, disable=not show_progress, transient=False) as progress:
            if todo:
                sr = _first_sr(specs, todo)
                check = progress.add_task("checking audio", total=len(ds))
                skipped = check_audio(ctx, np.arange(len(ds)), sr, on_error=cfg.on_error,
                                      progress=lambda: progress.advance(check))
                if skipped:
                    store.write_skipped(skipped)
                    ctx.dataset = ds = _without(ds, {p for p, _ in skipped})
                    console.print(f"[yellow]skipped {len(skipped)} unreadable clips (see skipped.csv)[/yellow]")
            task = progress.add_task("units", total=len(todo))
            # The executor evaluates units (here or on a Dask cluster); only this process writes rows.
            dropped = {c.path for c in exp.dataset.clips} - {c.path for c in ds.clips}
            for result in executor.map(ctx, todo, dropped=dropped):
                unit = result.unit
                store.append_unit(unit, result.rows, predictions=result.predictions)
                progress.update(task, advance=1,
                                description=f"{unit.method} n={unit.n} fold={unit.fold} run={unit.run}")
    finally:
        store.close()
    return exp.run_dir


def _first_sr(specs, units: list[Unit]) -> int:
    """Sample rate of the first method to run (audio is checked and cached at it)."""
    spec = specs[units[0].method]
    if spec.kind == "pipeline":
        from ..frontends import create_frontend

        try:
            return int(create_frontend(spec.frontend, width="small", seed=0).sr)
        except Exception:  # noqa: BLE001 - a user front-end may need more; fall back to 16 kHz
            return 16000
    from ..data.spectrogram import SPECTROGRAMS

    return SPECTROGRAMS["fewdata"].sr


def _without(ds: Dataset, paths: set[str]) -> Dataset:
    """A copy of ``ds`` without the clips at ``paths`` (dropped for every method, so results still pair)."""
    from dataclasses import replace

    return replace(ds, clips=[c for c in ds.clips if c.path not in paths])
