"""``fewshot report``: tables, tests and figures rebuilt from run folders alone.

The report reads ``results.csv`` (and, when present, the kept predictions) of one or more run
folders and writes, into one output folder:

- ``report.md``: per dataset and n, each method's mean ± 95% CI (t distribution), std and number
  of independent units, the best method and those not significantly worse than it, and the
  pairwise tests (paired t or Nadeau–Bengio, Wilcoxon, Welch where units do not match) with raw
  and Holm-adjusted p-values, for accuracy; summary tables for balanced accuracy and macro F1;
- ``summary.csv`` and ``summary.json``: the same numbers, every metric;
- ``per_class_accuracy.csv`` and ``confusion/``: per-class accuracy and confusion matrices summed
  over units (CSV and heatmaps), when predictions were kept;
- ``accuracy_<dataset>.png|svg``: accuracy against n with 95% CI bands (log x), or a bar chart
  with CI error bars when there are fewer than two numeric n values.

The statistics follow :func:`fewshot.results.stats.compare_methods`. Everything is sorted and free
of timestamps, so regenerating the report from the same rows gives the same files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import confusion as _conf
from . import plots as _plots
from .skipped import skipped_markdown
from .store import METRICS
from .summary import COLUMNS, _analyse, _n_key, _read_results, compare, load_rows, summarize

__all__ = ["COLUMNS", "METRICS", "load_rows", "summarize", "compare", "format_table", "write_report"]

_SUMMARY_FIELDS = ("dataset", "n", "method", "metric", "mean", "std", "half_width", "ci_lo", "ci_hi",
                   "n_units", "n_values", "collapsed", "rank", "best", "not_worse", "n_train", "n_test",
                   "seconds", "protocol")


# ----------------------------------------------------------------------------- formatting
def _f(x, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(p) -> str:
    if p is None or math.isnan(p):
        return "–"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.4f}"


def _mean_ci(r: dict) -> str:
    if math.isnan(r["half_width"]):
        return f"{_f(r['mean'])} (no CI)"
    return f"{_f(r['mean'])} ± {_f(r['half_width'])}"


def _units(r: dict) -> str:
    return f"{r['n_units']} folds (run-independent, {r['n_values']} rows)" if r["collapsed"] else str(r["n_units"])


def _mark(r: dict) -> str:
    return "best" if r["best"] else ("not sig. worse" if r["not_worse"] else "")


def format_table(summary: list[dict], *, title: str | None = None):
    """A ``rich.table.Table`` of summary records, with the numbers of ``report.md``.

    Parameters
    ----------
    summary : list of dict
        Records from :func:`summarize` (one metric).
    title : str, optional
        Table title; by default the metric name.
    """
    from rich.table import Table

    metric = summary[0]["metric"] if summary else "accuracy"
    table = Table(title=title or f"{metric} (mean ± 95% CI)")
    for name, justify in (("dataset", "left"), ("n", "right"), ("method", "left"), ("mean ± 95% CI", "right"),
                          ("std", "right"), ("units", "right"), ("", "left")):
        table.add_column(name, justify=justify)
    for r in summary:
        style = "bold" if r["best"] else None
        table.add_row(r["dataset"], str(r["n"]), r["method"], _mean_ci(r), _f(r["std"]), _units(r), _mark(r),
                      style=style)
    return table


def _md_table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out + [""]


def _pivot(records: list[dict]) -> list[str]:
    ns = sorted({r["n"] for r in records}, key=_n_key)
    methods = sorted({r["method"] for r in records})
    cell = {(r["method"], r["n"]): r for r in records}
    rows = []
    for m in methods:
        row = [m]
        for n in ns:
            r = cell.get((m, n))
            text = "" if r is None else _mean_ci(r)
            if r is not None and r["best"]:
                text = f"**{text}**"
            elif r is not None and r["not_worse"]:
                text = f"_{text}_"
            row.append(text)
        rows.append(row)
    return _md_table(["method", *[f"n = {n}" for n in ns]], rows, "l" + "r" * len(ns))


def _oriented(p: dict) -> list[str]:
    a, b, d, t = p["a"], p["b"], p["mean_diff"], p["t"]
    if not math.isnan(d) and d < 0:
        a, b, d, t = b, a, -d, -t
    units = str(p["n_pairs"]) if p["kind"] != "welch" else f"{p['n_a']} vs {p['n_b']}"
    return [a, b, _f(d), p["test"] + (" (folds)" if p["kind"] == "paired-folds" else ""), units,
            _f(t, 3), _p(p["p_t"]), _p(p["p_t_holm"]), _p(p["p_wilcoxon"]), _p(p["p_wilcoxon_holm"])]


def _markdown(run_dirs, summaries, comparisons, *, test, alpha, figures, confusion_note) -> str:
    acc = summaries["accuracy"]
    name = "paired t-test" if test == "paired" else "Nadeau–Bengio corrected resampled t-test"
    lines = ["# fewshot report", "", "Run folders: " + ", ".join(f"`{d}`" for d in run_dirs), "",
             f"Mean ± half-width of the 95% confidence interval (t distribution) over independent units "
             f"(fold, seed, run). Primary test: {name} "
             f"on matched units, Welch's t-test where units do not match, Wilcoxon signed-rank alongside; "
             f"Holm correction within each dataset and n. **best**: highest mean; _italics_ / "
             f"\"not sig. worse\": not significantly worse than the best (Holm-adjusted p ≥ {alpha}). "
             f"A method whose every run of a fold gives the same row is counted once per fold and "
             f"paired on folds.", ""]
    for dataset in sorted({r["dataset"] for r in acc}):
        drecs = [r for r in acc if r["dataset"] == dataset]
        lines += [f"## {dataset}", "", "### accuracy overview", ""] + _pivot(drecs)
        for n in sorted({r["n"] for r in drecs}, key=_n_key):
            recs = [r for r in drecs if r["n"] == n]
            lines += [f"### n = {n}", ""]
            lines += _md_table(["rank", "method", "accuracy (mean ± 95% CI)", "std", "units", ""],
                               [[str(r["rank"] or ""), r["method"], _mean_ci(r), _f(r["std"]), _units(r),
                                 "**best**" if r["best"] else _mark(r)]
                                for r in recs], "rllrrl")
            pairs = [p for p in comparisons["accuracy"] if p["dataset"] == dataset and p["n"] == n]
            if pairs:
                lines += [f"Pairwise tests, accuracy, n = {n}:", ""]
                lines += _md_table(["A", "B", "mean A − B", "test", "units", "t", "p", "p (Holm)", "Wilcoxon p",
                                    "Wilcoxon p (Holm)"], [_oriented(p) for p in pairs], "llrlrrrrrr")
        for metric in METRICS[1:]:
            mrecs = [r for r in summaries.get(metric, []) if r["dataset"] == dataset]
            if mrecs:
                lines += [f"### {metric.replace('_', ' ')}", ""] + _pivot(mrecs)
    if figures:
        lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures if p.suffix == ".png"] + [""]
    if confusion_note:
        lines += ["## Per-class accuracy and confusion matrices", "", confusion_note, ""]
    lines += skipped_markdown(run_dirs)
    return "\n".join(lines).rstrip() + "\n"


def _slug(text) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text)).strip("_") or "_"


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in row])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- writing
def _write_confusions(run_dirs, acc_records, out: Path) -> tuple[list[Path], str]:
    units, skipped, classes, seen = [], 0, {}, set()
    for d in run_dirs:
        rows = _read_results(d)
        datasets = sorted({r["dataset"] for r in rows})
        seeds = sorted({r["seed"] for r in rows})
        got, s = _conf.load_predictions(Path(d) if Path(d).is_dir() else Path(d).parent,
                                        units={(r["method"], r["n"], r["fold"], r["run"]) for r in rows},
                                        dataset=datasets[0] if len(datasets) == 1 else None,
                                        seed=seeds[0] if len(seeds) == 1 else None)
        skipped += s
        names = _conf.load_classes(Path(d) if Path(d).is_dir() else Path(d).parent)
        for ds in datasets:
            if names is not None:
                classes.setdefault(ds, names)
        for u in got:
            key = (u["dataset"], u["method"], str(u["n"]), u["fold"], u["seed"], u["run"])
            if key not in seen:
                seen.add(key)
                units.append(u)
    if not units:
        return [], ("No predictions were found in the run folders." if not skipped else
                    f"{skipped} prediction file(s) could not be matched to a unit.")
    collapsed = {(r["dataset"], r["n"], r["method"]) for r in acc_records if r["collapsed"]}
    agg = _conf.aggregate_confusions(units, classes=classes, collapsed=collapsed)
    folder = out / "confusion"
    folder.mkdir(parents=True, exist_ok=True)
    written, per_class = [], []
    rank = {(r["dataset"], r["n"], r["method"]): (r["rank"] or 10**6) for r in acc_records}
    for key in sorted(agg, key=lambda k: (k[0], _n_key(k[1]), k[2])):
        dataset, n, method = key
        names, mat = agg[key]["classes"], agg[key]["matrix"]
        acc = _conf.per_class_accuracy(mat)
        support = mat.sum(axis=1)
        per_class += [[dataset, n, method, c, int(support[i]), int(mat[i, i]), float(acc[i])]
                      for i, c in enumerate(names)]
        written.append(_write_csv(folder / f"{_slug(dataset)}__n{n}__{_slug(method)}.csv",
                                  ["true \\ predicted", *names],
                                  ([c, *map(int, mat[i])] for i, c in enumerate(names))))
    written.insert(0, _write_csv(out / "per_class_accuracy.csv",
                                 ["dataset", "n", "method", "class", "support", "correct", "accuracy"], per_class))
    for dataset, n in sorted({(k[0], k[1]) for k in agg}, key=lambda g: (g[0], _n_key(g[1]))):
        keys = sorted((k for k in agg if k[:2] == (dataset, n)), key=lambda k: (rank.get(k, 10**6), k[2]))
        panels = [(k[2], agg[k]["classes"], agg[k]["matrix"]) for k in keys]
        written += _plots.plot_confusions(panels, folder / f"{_slug(dataset)}__n{n}",
                                          title=f"{dataset}, n = {n} (rows: true class, normalised)")
    note = (f"`per_class_accuracy.csv` and `confusion/` (counts summed over units; run-independent methods "
            f"counted once per fold; heatmaps show up to {_plots.MAX_CONFUSION_PANELS} methods by rank).")
    if skipped:
        note += f" {skipped} prediction file(s) could not be matched to a unit."
    return written, note


def write_report(run_dirs: str | Path | Sequence[str | Path], out_dir: str | Path, *, test: str = "paired",
                 alpha: float = 0.05) -> dict[str, object]:
    """Write ``report.md``, ``summary.csv``, ``summary.json``, confusion matrices and plots.

    Parameters
    ----------
    run_dirs : path or sequence of paths
        Run folders to merge.
    out_dir : str or Path
        Output folder (created).
    test : "paired" or "nadeau-bengio", default="paired"
        Primary test on matched units.
    alpha : float, default=0.05
        Level of "not significantly worse".

    Returns
    -------
    dict
        ``report``, ``summary_csv``, ``summary_json`` (Path), ``plots`` and ``confusion``
        (lists of Path), and ``summary`` (the accuracy records, for printing).
    """
    if isinstance(run_dirs, str | Path):
        run_dirs = [run_dirs]
    rows = load_rows(run_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries, comparisons = {}, {}
    for metric in METRICS:
        summaries[metric], comparisons[metric] = _analyse(rows, metric=metric, test=test, alpha=alpha,
                                                          confidence=0.95)
    all_records = [r for m in METRICS for r in summaries[m]]
    summary_csv = _write_csv(out / "summary.csv", _SUMMARY_FIELDS,
                             ([r[k] for k in _SUMMARY_FIELDS] for r in all_records))
    summary_json = out / "summary.json"
    payload = {"run_dirs": [str(d) for d in run_dirs], "test": test, "alpha": alpha, "confidence": 0.95,
               "summary": all_records, "comparisons": [p for m in METRICS for p in comparisons[m]]}
    summary_json.write_text(json.dumps(_json_safe(payload), indent=2) + "\n", encoding="utf-8")
    plots: list[Path] = []
    acc = summaries["accuracy"]
    for dataset in sorted({r["dataset"] for r in acc}):
        recs = [r for r in acc if r["dataset"] == dataset]
        plots += _plots.plot_metric(recs, out / f"accuracy_{_slug(dataset)}", title=dataset, metric="accuracy")
    conf_paths, note = _write_confusions(run_dirs, acc, out)
    report = out / "report.md"
    report.write_text(_markdown([str(d) for d in run_dirs], summaries, comparisons, test=test, alpha=alpha,
                                figures=plots, confusion_note=note), encoding="utf-8")
    return {"report": report, "summary_csv": summary_csv, "summary_json": summary_json, "plots": plots,
            "confusion": conf_paths, "summary": acc}
