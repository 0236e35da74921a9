"""``--dry-run``: the units an experiment would run and an estimate of their time, from a short calibration.

The estimate is built from costs measured on the machine at hand (a few seconds
to a minute), scaled by counts:

- audio: decode + resample of 3 clips → × the clips to check;
- feature pipelines: one extraction of 8 clips per front-end, after an untimed one that
  makes the formulation, batch-size and stacking choices a real run makes (input
  preparation included; for a front-end whose runs' networks are stacked, one stacked
  pass of as many networks as a real run stacks, per network) → × every clip of the dataset
  × distinct random networks (a network is extracted once and reused by every
  fold, n and classifier); one classifier fit
  + predict at each n's training size on random features of the right width → ×
  its units;
- log-mels of trained models: 3 clips per spectrogram → × every clip;
- trained models: one unit (first fold, run 0) trained for 1 epoch and for k
  epochs, k ≥ 3 chosen so the k-epoch run spans a few seconds more than the
  1-epoch one (a slope from 1 and 3 short epochs came out 10–20 % low against
  20-epoch runs) → intercept + slope · epochs, × its units;
- ``random``: free;
- fixed costs: the command's start-up (imports, measured in this process when
  the caller passes its start time) and the report, written for the planned
  units with random predictions into a temporary folder.

Units already in the run folder are skipped, as the real run would. Nothing is
written (the run folder is only read), and no cache is used, so the estimate is
for a cold cache; a warm feature cache makes pipelines cheaper.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..methods import parse_methods
from ..results.store import METRICS, read_results
from .config import ExperimentConfig

__all__ = ["PlanRow", "Plan", "plan_experiment", "format_plan", "format_seconds"]

_CAL_CLIPS = 3
#: Seconds the k-epoch calibration run should add over the 1-epoch run (bounds the slope's timer noise).
_SLOPE_SPAN = 4.0


@dataclass
class PlanRow:
    """Units of one (method, n): how many, how many done, estimated seconds for the rest."""

    method: str
    n: int | str
    units: int
    done: int
    seconds: float
    note: str = ""


@dataclass
class Plan:
    protocol: str
    dataset: str
    n_clips: int
    folds: list[str]
    run_dir: Path
    device: str
    rows: list[PlanRow] = field(default_factory=list)
    audio_seconds: float = 0.0
    extraction_seconds: float = 0.0
    fixed_seconds: float = 0.0
    calibration_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        return self.audio_seconds + self.extraction_seconds + self.fixed_seconds + sum(r.seconds for r in self.rows)

    @property
    def n_units(self) -> int:
        return sum(r.units for r in self.rows)

    @property
    def n_done(self) -> int:
        return sum(r.done for r in self.rows)


def _done_keys(run_dir: Path) -> set[str]:
    path = run_dir / "results.csv"
    if not path.is_file():
        return set()
    seen: dict[str, set[str]] = {}
    for row in read_results(path):
        seen.setdefault(f"{row['method']}|{row['n']}|{row['fold']}|{row['run']}", set()).add(row["metric"])
    return {k for k, m in seen.items() if set(METRICS) <= m}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def plan_experiment(cfg: ExperimentConfig, *, started: float | None = None) -> Plan:
    """Plan ``cfg`` (as :func:`fewshot.protocols.engine.run_experiment` would run it) and estimate its time.

    Parameters
    ----------
    cfg : ExperimentConfig
    started : float, optional
        ``time.perf_counter()`` when the command started: the start-up seen so far
        (imports) is counted once in the estimate, as the real command pays it.
    """
    from ..data.sampler import sample_subset
    from ..frontends.tuning import BATCH_CANDIDATE
    from .engine import _first_sr, prepare
    from .evaluate import Context, predict_unit

    t_start = time.perf_counter()
    startup = t_start - started if started is not None else 0.0
    exp = prepare(cfg)
    ds = exp.dataset
    done = _done_keys(exp.run_dir)
    todo = [u for u in exp.units if u.key not in done]
    ctx = Context(ds, cfg, None, exp.device)  # no cache: cold-cache costs
    specs = {s.text: s for s in parse_methods(cfg.methods)}
    plan = Plan(cfg.protocol, ds.id, len(ds), exp.folds, exp.run_dir, exp.device)
    cal = list(range(min(_CAL_CLIPS, len(ds))))
    if todo:
        sr = _first_sr(specs, todo)
        per_clip = _timed(lambda: [ctx.waveform(i, sr) for i in cal]) / len(cal)
        plan.audio_seconds = per_clip * len(ds)
        plan.audio_seconds += _log_mel_seconds(ctx, specs, todo, cal) * len(ds)
    by_key: dict[tuple[str, str], list] = {}
    for u in exp.units:
        by_key.setdefault((u.method, str(u.n)), []).append(u)
    extract_cost: dict[str, float] = {}
    networks: dict[str, set] = {}
    for (method, _), units in by_key.items():
        spec = specs[method]
        left = [u for u in units if u.key not in done]
        n = units[0].n
        row = PlanRow(method, n, len(units), len(units) - len(left), 0.0)
        plan.rows.append(row)
        if not left:
            continue
        if spec.kind == "model" and spec.model == "random":
            row.note = "chance baseline"
            continue
        subset = sample_subset(ds, left[0].fold, n, left[0].run, seed=cfg.seed, cap=cfg.cap)
        if spec.kind == "pipeline":
            fe = ctx.frontend(spec, left[0].run)
            head = method.partition("+")[0]
            if head not in extract_cost:
                group = [fe, *(ctx._build_frontend(spec, r) for r in range(1, _stacked_runs(ctx, fe)))]

                # enough clips for the batch-size choice a real run makes (run_in_batches measures from 8)
                many = list(range(min(2 * BATCH_CANDIDATE, len(ds))))

                def extract(group=group, many=many):
                    ctx._features.clear()
                    ctx._extract_many(group, ctx._inputs(group[0], many))
                extract()  # warm-up (weights, allocator, the formulation / batch / stacking choices)
                extract_cost[head] = _timed(extract) / len(group) / len(many) * len(ds)
            networks.setdefault(head, set()).update(u.run if fe.random else 0 for u in left)
            row.seconds = len(left) * _fit_seconds(spec, fe.n_features, subset, len(ds.classes), exp.device, cfg)
            row.note = "classifier fits; extraction below"
        else:
            unit = left[0]
            if not ctx._logmels:  # warm-up: log-mels are computed once per clip in a real run, not per unit
                predict_unit(replace_ctx(ctx, cfg, 1), spec, unit, subset)
            def train(epochs, spec=spec, unit=unit, subset=subset):
                predict_unit(replace_ctx(ctx, cfg, epochs), spec, unit, subset)

            epochs = cfg.epochs
            t1, slope = _epoch_cost(train, epochs)
            row.seconds = len(left) * (max(t1 - slope, 0.0) + slope * epochs)
            row.note = f"{epochs} epochs at {slope:.3g} s/epoch"
    plan.extraction_seconds = sum(extract_cost[h] * len(networks.get(h, ())) for h in extract_cost)
    plan.fixed_seconds = startup + (_report_seconds(exp) if todo else 0.0)
    plan.calibration_seconds = time.perf_counter() - t_start
    return plan


def _epoch_cost(train, epochs: int) -> tuple[float, float]:
    """``(t1, slope)``: seconds of a 1-epoch unit and per further epoch, from a 1- and a k-epoch run.

    k starts at 3 and grows (up to ``epochs``) until the k-epoch run is about
    ``_SLOPE_SPAN`` seconds longer than the 1-epoch run, so short epochs are timed
    over many steps.
    """
    t1 = _timed(lambda: train(1))
    k = min(3, max(epochs, 2))
    tk = _timed(lambda: train(k))
    slope = (tk - t1) / (k - 1)
    if k < epochs and tk - t1 < _SLOPE_SPAN:
        k = min(epochs, k + max(1, int(np.ceil((_SLOPE_SPAN - (tk - t1)) / max(slope, tk / (2 * k), 1e-3)))))
        tk = _timed(lambda: train(k))
        slope = (tk - t1) / (k - 1)
    # on a loaded machine tk − t1 can come out ~0: floor the slope at half the k-epoch run's mean epoch
    return t1, max(slope, tk / (2 * k))


def _log_mel_seconds(ctx, specs, units, cal: list[int]) -> float:
    """Seconds per clip of the log-mels the trained models of ``units`` need (their waveforms decoded already)."""
    from ..training import MODELS

    names = {MODELS.get(specs[u.method].model).meta.get("spectrogram", "fewdata")
             for u in units if specs[u.method].kind == "model" and specs[u.method].model in MODELS}
    seconds = 0.0
    for name in sorted(names):
        for i in cal:  # decode outside the timing
            ctx.log_mel(i, name)
        ctx._logmels.clear()
        seconds += _timed(lambda name=name: [ctx.log_mel(i, name) for i in cal]) / len(cal)
    ctx._logmels.clear()
    return seconds


def _report_seconds(exp) -> float:
    """Seconds to write the report of ``exp``'s units: measured on random predictions in a temporary folder."""
    import tempfile

    from ..data.sampler import sample_subset
    from ..results.report import write_report
    from ..results.store import RunStore
    from .engine import unit_rows

    cfg, ds = exp.config, exp.dataset
    rng = np.random.default_rng(0)
    tests: dict[tuple, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="fewshot-plan-") as tmp:
        with RunStore(Path(tmp) / "run", identity=cfg.identity(ds.id), extent=cfg.extent(),
                      classes=ds.classes, device=exp.device) as store:
            for u in exp.units:
                if (u.fold, u.n) not in tests:
                    tests[(u.fold, u.n)] = sample_subset(ds, u.fold, u.n, 0, seed=cfg.seed, cap=cfg.cap).test
                test = tests[(u.fold, u.n)]
                y_pred = rng.integers(0, len(ds.classes), size=len(test))
                rows = unit_rows(cfg, ds, u, y_true=ds.y[test], y_pred=y_pred, n_train=0, capped=False, seconds=0.0)
                store.append_unit(u, rows, predictions={"test_index": test, "train_index": test[:0],
                                                        "y_true": ds.y[test], "y_pred": y_pred})
        return _timed(lambda: write_report([Path(tmp) / "run"], Path(tmp) / "report"))


def _stacked_runs(ctx, frontend) -> int:
    """Networks a real run extracts per stacked pass with ``frontend`` (1: one at a time)."""
    from ..data.sampler import default_runs
    from ..frontends.stacked import stack_size

    if not frontend.random:
        return 1
    n_runs = max((ctx.config.runs or default_runs(n) for n in ctx.config.n), default=1)
    return max(1, min(n_runs, stack_size(frontend, ctx.device)))


def replace_ctx(ctx, cfg: ExperimentConfig, epochs: int):
    """A context whose config trains for ``epochs`` epochs (calibration)."""
    from .evaluate import Context

    short = replace(cfg, epochs=epochs, max_epochs=epochs, patience=min(cfg.patience, epochs))
    return Context(ctx.dataset, short, None, ctx.device, _logmels=ctx._logmels)  # log-mels computed once


def _fit_seconds(spec, n_features: int, subset, n_classes: int, device: str, cfg: ExperimentConfig) -> float:
    """One classifier fit + predict on random features of the unit's size (median of 2 after a warm-up)."""
    from ..classifiers import create_classifier

    rng = np.random.default_rng(0)
    n_train, n_test = len(subset.train), len(subset.test)
    y = np.arange(n_train) % n_classes
    X = rng.standard_normal((n_train, n_features)).astype(np.float32) + y[:, None] * 0.1
    Xt = rng.standard_normal((n_test, n_features)).astype(np.float32)
    def fit():
        clf = create_classifier(spec.classifier, random_state=0, device=device)
        clf.fit(X, y)
        clf.predict(Xt)

    times = [_timed(fit) for _ in range(2)]
    return float(min(times))


def format_seconds(s: float) -> str:
    """Human scale: ``42 s``, ``3.5 min``, ``2.1 h``, ``4.0 days``."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.1f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def format_plan(plan: Plan) -> str:
    """The plan as Markdown-like text: one line per (method, n), then the totals."""
    lines = [
        f"dry run: {plan.protocol} on {plan.dataset} ({plan.n_clips} clips; folds {', '.join(plan.folds)}) "
        f"on {plan.device} -> {plan.run_dir}",
        "",
        "| method | n | units | done | to run | estimate | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in plan.rows:
        lines.append(f"| {r.method} | {r.n} | {r.units} | {r.done} | {r.units - r.done} "
                     f"| {format_seconds(r.seconds)} | {r.note} |")
    lines += [
        "",
        f"units: {plan.n_units} ({plan.n_done} already done, {plan.n_units - plan.n_done} to run)",
        f"audio decode and log-mels: {format_seconds(plan.audio_seconds)}; feature extraction (cold cache): "
        f"{format_seconds(plan.extraction_seconds)}; start-up and report: {format_seconds(plan.fixed_seconds)}",
        f"estimated total: {format_seconds(plan.total_seconds)} ({plan.total_seconds:.0f} s; calibration took "
        f"{plan.calibration_seconds:.0f} s on this machine)",
    ]
    return "\n".join(lines)
