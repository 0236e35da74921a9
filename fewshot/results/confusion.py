"""Per-class accuracy and confusion matrices from the predictions a run folder keeps.

The run store writes one ``predictions/<unit-key>.npz`` per unit (arrays ``y_true`` and
``y_pred``, int class indices) and a ``classes.json`` listing the class names. This module reads
them back, tolerating a run folder without predictions, and sums confusion matrices over the
units of each (dataset, n, method). A run-independent method (see
:func:`fewshot.results.stats.run_independent`) contributes one unit per fold, so identical
predictions are not counted several times.

A file is matched to its unit by, in order: string arrays ``method``, ``n``, ``fold``, ``run``
(optionally ``dataset``, ``seed``) stored in the ``.npz``; the file name the store gives each
unit of ``results.csv`` (:attr:`fewshot.results.store.Unit.filename`); and the ``parse_key``
argument. Files that match no unit are counted, not fatal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

__all__ = ["load_classes", "load_predictions", "confusion_matrix", "aggregate_confusions",
           "per_class_accuracy"]

_FIELDS = ("dataset", "method", "n", "fold", "seed", "run")


def load_classes(run_dir: str | Path) -> list[str] | None:
    """Class names from ``run_dir/classes.json`` (a list, or ``{"classes": [...]}``); None if absent."""
    path = Path(run_dir) / "classes.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("classes")
    return [str(c) for c in data] if isinstance(data, list) else None


def _norm_n(n) -> int | str:
    text = str(n).strip().lower()
    return "all" if text == "all" else int(text)


def _store_filenames(units: Iterable[tuple]) -> dict[str, dict]:
    try:
        from .store import Unit
    except ImportError:  # the store is the only writer of predictions; without it, no names
        return {}
    out = {}
    for method, n, fold, run in units:
        out[Unit(method, n, str(fold), int(run)).filename] = {"method": method, "n": str(n), "fold": str(fold),
                                                              "run": str(run)}
    return out


def load_predictions(
    run_dir: str | Path,
    *,
    units: Iterable[tuple] = (),
    dataset: str | None = None,
    seed: int | None = None,
    parse_key: Callable[[str], dict | None] | None = None,
) -> tuple[list[dict], int]:
    """Read every unit's predictions in ``run_dir/predictions``.

    Parameters
    ----------
    run_dir : str or Path
        A run folder.
    units : iterable of (method, n, fold, run)
        The units of the folder's ``results.csv``, matched to files by the store's file names.
    dataset, seed : optional
        Values for units whose file does not name them (a run folder holds one dataset and seed).
    parse_key : callable, optional
        ``file stem -> {"method", "n", "fold", "run", ...}`` or None, for other naming schemes.

    Returns
    -------
    units : list of dict
        ``dataset, method, n, fold, seed, run`` and the arrays ``y_true``, ``y_pred``
        [shape=(n_test,)], sorted by unit.
    n_skipped : int
        Files that could not be read or matched to a unit.
    """
    folder = Path(run_dir) / "predictions"
    if not folder.is_dir():
        return [], 0
    by_name = _store_filenames(units)
    found, skipped = [], 0
    for path in sorted(folder.glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = {k: str(z[k]) for k in _FIELDS if k in z.files}
                y_true = np.asarray(z["y_true"], dtype=np.int64).ravel()
                y_pred = np.asarray(z["y_pred"], dtype=np.int64).ravel()
        except (OSError, KeyError, ValueError):
            skipped += 1
            continue
        parsed = by_name.get(path.name)
        if parsed is None and parse_key is not None:
            try:
                parsed = parse_key(path.stem)
            except Exception:  # a foreign parser must not break the report
                parsed = None
        meta = {**{k: str(v) for k, v in (parsed or {}).items() if k in _FIELDS}, **meta}
        meta.setdefault("dataset", dataset)
        meta.setdefault("seed", seed)
        try:
            unit = {"dataset": meta["dataset"], "method": meta["method"], "n": _norm_n(meta["n"]),
                    "fold": str(meta["fold"]), "run": int(meta["run"]),
                    "seed": None if meta["seed"] is None else int(meta["seed"])}
        except (KeyError, ValueError, TypeError):
            skipped += 1
            continue
        if unit["dataset"] is None or y_true.shape != y_pred.shape:
            skipped += 1
            continue
        found.append({**unit, "y_true": y_true, "y_pred": y_pred})
    found.sort(key=lambda u: (u["dataset"], u["method"], str(u["n"]), u["fold"], u["seed"] or 0, u["run"]))
    return found, skipped


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of clips of class i predicted as j.

    Parameters
    ----------
    y_true, y_pred : array-like of int [shape=(n_test,)]
    n_classes : int

    Returns
    -------
    np.ndarray of int64 [shape=(n_classes, n_classes)]
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat[: n_classes * n_classes].reshape(n_classes, n_classes)


def aggregate_confusions(
    units: Iterable[dict],
    *,
    classes: dict[str, list[str]] | None = None,
    collapsed: set[tuple] | None = None,
) -> dict[tuple, dict]:
    """Sum confusion matrices over the units of each (dataset, n, method).

    Parameters
    ----------
    units : iterable of dict
        As returned by :func:`load_predictions`.
    classes : dict, optional
        ``{dataset: class names}``; default names are the class indices.
    collapsed : set of (dataset, n, method), optional
        Run-independent methods: only the first unit of each fold is counted.

    Returns
    -------
    dict
        ``{(dataset, n, method): {"classes": [...], "matrix": int64 array, "n_units": int}}``.
    """
    classes = classes or {}
    collapsed = collapsed or set()
    grouped: dict[tuple, list[dict]] = {}
    for u in units:
        grouped.setdefault((u["dataset"], u["n"], u["method"]), []).append(u)
    out = {}
    for key, group in grouped.items():
        if key in collapsed:
            seen, kept = set(), []
            for u in group:
                if u["fold"] not in seen:
                    seen.add(u["fold"])
                    kept.append(u)
            group = kept
        names = classes.get(key[0])
        k = max(int(max(u["y_true"].max(initial=-1), u["y_pred"].max(initial=-1))) for u in group) + 1
        if names is None or len(names) < k:
            names = [str(i) for i in range(k)] if names is None else names + [str(i) for i in
                                                                              range(len(names), k)]
        mat = sum(confusion_matrix(u["y_true"], u["y_pred"], len(names)) for u in group)
        out[key] = {"classes": list(names), "matrix": np.asarray(mat, dtype=np.int64), "n_units": len(group)}
    return out


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Per-class accuracy (recall) ``C[i, i] / sum_j C[i, j]``; NaN for a class with no clips."""
    matrix = np.asarray(matrix, dtype=float)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / support, np.nan)
