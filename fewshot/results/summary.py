"""Result rows of run folders and their summary per dataset, n and method.

Means ± CI, ranks and pairwise tests: the numbers behind :mod:`fewshot.results.report`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..exceptions import DataError, ParameterError
from .stats import TESTS, compare_methods, run_independent
from .store import METRICS, RESULT_COLUMNS

__all__ = ["COLUMNS", "load_rows", "summarize", "compare"]

COLUMNS = RESULT_COLUMNS
_REQUIRED = COLUMNS[:9]


# ----------------------------------------------------------------------------- reading rows
def _results_path(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise DataError(f"no results.csv at {path}; pass a run folder written by 'fewshot run' or 'randomcnn'")
    return path


def _float(text: str) -> float:
    return float(text) if text not in ("", None) else math.nan


def _parse_row(raw: dict, path: Path, line: int) -> dict:
    try:
        n_text = raw["n"].strip().lower()
        row = {
            "protocol": raw["protocol"], "dataset": raw["dataset"], "method": raw["method"],
            "n": "all" if n_text == "all" else int(n_text), "fold": str(raw["fold"]),
            "run": int(raw["run"]), "seed": int(raw["seed"]), "metric": raw["metric"],
            "value": float(raw["value"]), "n_train": _float(raw.get("n_train", "")),
            "n_test": _float(raw.get("n_test", "")),
            "capped": str(raw.get("capped", "")).strip().lower() in ("1", "true", "yes"),
            "seconds": _float(raw.get("seconds", "")),
        }
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}, line {line}: unreadable row ({exc}); got {raw}") from None
    if not 0.0 <= row["value"] <= 1.0:
        raise DataError(f"{path}, line {line}: value must be in [0, 1]; got {row['value']}")
    return row


def _read_results(run_dir: str | Path) -> list[dict]:
    path = _results_path(run_dir)
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):  # a unit being appended right now: ignore its torn line
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise DataError(f"{path}: results.csv lacks column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    return [_parse_row(raw, path, i) for i, raw in enumerate(reader, start=2)]


def _unit_id(row: dict) -> tuple:
    return (row["dataset"], row["method"], str(row["n"]), row["fold"], row["seed"], row["run"], row["metric"])


def _merge(row_lists: Iterable[list[dict]]) -> list[dict]:
    seen: dict[tuple, dict] = {}
    for rows in row_lists:
        for row in rows:
            key = _unit_id(row)
            old = seen.get(key)
            if old is None:
                seen[key] = row
            elif old["value"] != row["value"]:
                raise DataError(
                    "conflicting results for the unit dataset={}, method={}, n={}, fold={}, seed={}, run={}, "
                    "metric={}: {} and {}; report these run folders separately".format(
                        *key, old["value"], row["value"]))
    return sorted(seen.values(), key=lambda r: (r["dataset"], _n_key(r["n"]), r["method"], r["fold"],
                                                r["seed"], r["run"], r["metric"]))


def load_rows(run_dirs: str | Path | Sequence[str | Path]) -> list[dict]:
    """Read and merge the ``results.csv`` of one or more run folders.

    Parameters
    ----------
    run_dirs : path or sequence of paths
        Run folders (or ``results.csv`` files).

    Returns
    -------
    list of dict
        One dict per row with the :data:`COLUMNS` keys, typed (``n`` int or ``"all"``, ``fold``
        str, ``run``/``seed`` int, floats), sorted by unit. A unit present in several folders
        with the same value is kept once.

    Raises
    ------
    DataError
        A missing results.csv, a missing column, an unreadable row, or one unit with two values.
    """
    if isinstance(run_dirs, str | Path):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise ParameterError("run_dirs must name at least one run folder; got none")
    return _merge(_read_results(d) for d in run_dirs)


# ----------------------------------------------------------------------------- statistics
def _n_key(n) -> tuple:
    return (1, 0) if n == "all" else (0, int(n))


def _analyse(rows: list[dict], *, metric: str, test: str, alpha: float, confidence: float):
    if metric not in METRICS:
        raise ParameterError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")
    if test not in TESTS:
        raise ParameterError(f"test must be one of {', '.join(TESTS)}; got {test!r}")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["n"]), []).append(r)
    records, comparisons = [], []
    for (dataset, n) in sorted(groups, key=lambda g: (g[0], _n_key(g[1]))):
        group = groups[(dataset, n)]
        mrows = [r for r in group if r["metric"] == metric]
        if not mrows:
            continue
        table: dict[str, dict] = {}
        signature: dict[str, dict] = {}
        for r in group:
            unit = (r["fold"], r["seed"], r["run"])
            sig = signature.setdefault(r["method"], {}).setdefault(unit, [])
            sig.append((r["metric"], r["value"], r["n_train"], r["n_test"]))
        for r in mrows:
            table.setdefault(r["method"], {})[(r["fold"], r["seed"], r["run"])] = r["value"]
        collapse = {m: run_independent({u: tuple(sorted(s)) for u, s in signature[m].items()}) for m in table}
        n_train = float(np.nanmean([r["n_train"] for r in mrows])) if any(
            not math.isnan(r["n_train"]) for r in mrows) else None
        n_test = float(np.nanmean([r["n_test"] for r in mrows])) if any(
            not math.isnan(r["n_test"]) for r in mrows) else None
        if test == "nadeau-bengio" and not (n_train and n_test):
            raise DataError(f"the Nadeau-Bengio test needs n_train and n_test; dataset {dataset}, n={n} lacks them")
        res = compare_methods(table, test=test, alpha=alpha, confidence=confidence, n_train=n_train,
                              n_test=n_test, collapse=collapse)
        for m in res["rank"] + sorted(set(table) - set(res["rank"])):
            st = res["methods"][m]
            mr = [r for r in mrows if r["method"] == m]
            records.append({
                "dataset": dataset, "n": n, "method": m, "metric": metric,
                **{k: st[k] for k in ("mean", "std", "half_width", "ci_lo", "ci_hi", "n_units", "n_values",
                                      "collapsed")},
                "rank": res["rank"].index(m) + 1 if m in res["rank"] else None,
                "best": m == res["best"], "not_worse": m in res["not_worse"],
                "n_train": _nanmean(r["n_train"] for r in mr), "n_test": _nanmean(r["n_test"] for r in mr),
                "seconds": _nanmean(r["seconds"] for r in mr),
                "protocol": ",".join(sorted({r["protocol"] for r in mr})),
            })
        comparisons += [{"dataset": dataset, "n": n, "metric": metric, **p} for p in res["pairs"]]
    return records, comparisons


def _nanmean(values) -> float:
    arr = np.array([v for v in values if not math.isnan(v)], dtype=float)
    return float(arr.mean()) if arr.size else math.nan


def summarize(rows: list[dict], *, metric: str = "accuracy", test: str = "paired", alpha: float = 0.05,
              confidence: float = 0.95) -> list[dict]:
    """One summary record per (dataset, n, method) for one metric.

    Parameters
    ----------
    rows : list of dict
        As returned by :func:`load_rows`.
    metric : "accuracy", "balanced_accuracy" or "macro_f1", default="accuracy"
    test : "paired" or "nadeau-bengio", default="paired"
        Primary test on matched units (see :func:`fewshot.results.stats.compare_methods`).
    alpha : float, default=0.05
        Level of "not significantly worse than the best" (Holm-adjusted, within dataset and n).
    confidence : float, default=0.95
        Coverage of the confidence intervals.

    Returns
    -------
    list of dict
        Keys ``dataset, n, method, metric, mean, std, half_width, ci_lo, ci_hi, n_units`` (independent
        units: folds for a run-independent method), ``n_values`` (rows), ``collapsed``, ``rank``,
        ``best``, ``not_worse``, ``n_train``, ``n_test``, ``seconds`` (means) and ``protocol``;
        sorted by dataset, n (``all`` last) and rank.
    """
    return _analyse(rows, metric=metric, test=test, alpha=alpha, confidence=confidence)[0]


def compare(rows: list[dict], *, metric: str = "accuracy", test: str = "paired", alpha: float = 0.05) -> list[dict]:
    """The pairwise comparisons behind :func:`summarize`, one record per (dataset, n, pair)."""
    return _analyse(rows, metric=metric, test=test, alpha=alpha, confidence=0.95)[1]

