"""Report figures: accuracy against n with 95% CI bands, CI bar charts, confusion heatmaps.

Every figure is written as PNG and SVG through matplotlib's Agg canvas (``Figure`` objects, no
pyplot state, so the caller's backend is left alone) and without timestamps, so regenerating a
report from the same ``results.csv`` gives the same files.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

__all__ = ["plot_metric", "plot_confusions", "MAX_CONFUSION_PANELS"]

MAX_CONFUSION_PANELS = 6
_RC = {"svg.hashsalt": "fewshot", "svg.fonttype": "path", "font.size": 9}


def _figure(figsize: tuple[float, float], layout: str | None = None) -> Figure:
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, base: Path) -> list[Path]:
    base.parent.mkdir(parents=True, exist_ok=True)
    png, svg = base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")
    fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    return [png, svg]


def _colors(methods: list[str]) -> dict[str, tuple]:
    cmap = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(methods)}


def plot_metric(records: list[dict], base: str | Path, *, title: str = "", metric: str = "accuracy") -> list[Path]:
    """Plot one dataset's summary records of one metric and write ``base.png`` and ``base.svg``.

    With two or more numeric n values: mean against n (log x axis) with a shaded 95% CI band
    per method, ``n = "all"`` placed to the right of the largest n and labelled. Otherwise: a
    grouped bar chart with 95% CI error bars.

    Parameters
    ----------
    records : list of dict
        Summary records (``method``, ``n``, ``mean``, ``ci_lo``, ``ci_hi``, ``half_width``).
    base : str or Path
        Output path without suffix.
    title, metric : str
        Figure title and y-axis label.

    Returns
    -------
    list of Path
        The PNG and SVG paths.
    """
    methods = sorted({r["method"] for r in records})
    numeric = sorted({r["n"] for r in records if r["n"] != "all"})
    with matplotlib.rc_context(_RC):
        if len(numeric) >= 2:
            fig = _curve(records, methods, numeric)
        else:
            fig = _bars(records, methods)
        ax = fig.axes[0]
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _save(fig, Path(base))


def _curve(records, methods, numeric):
    fig = _figure((6.4, 4.2))
    ax = fig.subplots()
    colors = _colors(methods)
    lo_log, hi_log = math.log10(numeric[0]), math.log10(numeric[-1])
    x_all = 10 ** (hi_log + max(0.3, 0.25 * (hi_log - lo_log)))
    has_all = any(r["n"] == "all" for r in records)
    for m in methods:
        rows = {r["n"]: r for r in records if r["method"] == m}
        # Every n on the axis, NaN where the method has no result, so lines break at missing n.
        xs = list(numeric) if any(n in rows for n in numeric) else []
        y = np.array([rows[n]["mean"] if n in rows else np.nan for n in xs], dtype=float)
        lo = np.array([rows[n]["ci_lo"] if n in rows else np.nan for n in xs], dtype=float)
        hi = np.array([rows[n]["ci_hi"] if n in rows else np.nan for n in xs], dtype=float)
        c = colors[m]
        if xs:
            ax.plot(xs, y, "-o", color=c, label=m, markersize=4)
            # Metrics live in [0, 1]; a t interval from few units can reach past it.
            ax.fill_between(xs, np.clip(lo, 0, 1), np.clip(hi, 0, 1), color=c, alpha=0.18, linewidth=0)
        if "all" in rows:
            r = rows["all"]
            err = 0.0 if math.isnan(r["half_width"]) else r["half_width"]
            ax.errorbar([x_all], [r["mean"]], yerr=[err], fmt="s", color=c, capsize=3, markersize=5,
                        label=None if xs else m)
            if xs:
                ax.plot([xs[-1], x_all], [y[-1], r["mean"]], ":", color=c, linewidth=1)
    ax.set_xscale("log")
    ticks = list(numeric) + ([x_all] if has_all else [])
    ax.set_xticks(ticks, [str(n) for n in numeric] + (["all"] if has_all else []))
    ax.xaxis.set_minor_locator(NullLocator())
    if has_all:
        ax.axvline(math.sqrt(numeric[-1] * x_all), color="0.6", linestyle="--", linewidth=0.8)
    ax.set_xlabel("n (training clips per class)")
    ax.set_ylim(0, 1.05)
    return fig


def _bars(records, methods):
    ns = sorted({r["n"] for r in records}, key=lambda n: (n == "all", 0 if n == "all" else n))
    fig = _figure((max(4.0, 1.0 + 0.5 * len(methods) * len(ns)), 4.2))
    ax = fig.subplots()
    colors = _colors(methods)
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        rows = {r["n"]: r for r in records if r["method"] == m}
        xs = [j + (i - (len(methods) - 1) / 2) * width for j, n in enumerate(ns) if n in rows]
        ys = [rows[n]["mean"] for n in ns if n in rows]
        err = [0.0 if math.isnan(rows[n]["half_width"]) else rows[n]["half_width"] for n in ns if n in rows]
        ax.bar(xs, ys, width=width * 0.95, yerr=err, capsize=3, color=colors[m], label=m)
    ax.set_xticks(range(len(ns)), [f"n = {n}" for n in ns])
    ax.set_ylim(0, 1.05)
    return fig


def plot_confusions(panels: list[tuple[str, list[str], np.ndarray]], base: str | Path, *,
                   title: str = "") -> list[Path]:
    """Row-normalised confusion heatmaps, one panel per method (at most :data:`MAX_CONFUSION_PANELS`).

    Parameters
    ----------
    panels : list of (method, class names, matrix [shape=(n_classes, n_classes)])
    base : str or Path
        Output path without suffix.
    title : str
        Figure title.

    Returns
    -------
    list of Path
        The PNG and SVG paths.
    """
    panels = panels[:MAX_CONFUSION_PANELS]
    n_cols = min(3, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    k = max(len(p[1]) for p in panels)
    size = min(2.4 + 0.15 * k, 7.0)
    with matplotlib.rc_context(_RC):
        fig = _figure((size * n_cols + 0.8, size * n_rows + 0.4), layout="constrained")
        axes = fig.subplots(n_rows, n_cols, squeeze=False)
        for ax in axes.ravel()[len(panels):]:
            ax.set_axis_off()
        for ax, (method, names, mat) in zip(axes.ravel(), panels, strict=False):
            mat = np.asarray(mat, dtype=float)
            support = mat.sum(axis=1, keepdims=True)
            norm = np.divide(mat, support, out=np.zeros_like(mat), where=support > 0)
            im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            ax.set_title(method, fontsize=9)
            if len(names) <= 30:
                ticks = range(len(names))
                ax.set_xticks(ticks, names, rotation=90, fontsize=6)
                ax.set_yticks(ticks, names, fontsize=6)
            ax.set_xlabel("predicted")
        for ax in axes[:, 0]:
            ax.set_ylabel("true")
        fig.colorbar(im, ax=axes, shrink=0.8)
        if title:
            fig.suptitle(title)
        return _save(fig, Path(base))
