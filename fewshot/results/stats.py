"""Statistics for comparing methods on matched evaluation units.

Pure functions on numpy arrays. A *unit* is one (fold, seed, run) evaluation of a method at one
(dataset, n); two methods evaluated on the same unit saw the same n-shot subset and test fold, so
their scores pair up. :func:`compare_methods` applies the rules of the report:

- matched units → two-sided paired t-test and Wilcoxon signed-rank test;
- no or partial overlap → Welch's t-test;
- a method whose result cannot depend on the run (every run of a fold gives the same row, e.g.
  ``mfcc+knn`` on ``n=all``) is collapsed to one value per fold and paired on folds, with the
  other method averaged over runs per fold. Identical rows are never counted as replicates;
- Holm's correction over the comparisons of one (dataset, n) group;
- the best method (highest mean) and every method not significantly worse than it by the
  Holm-corrected primary test at ``alpha`` are marked.

References
----------
.. [1] S. Holm, "A simple sequentially rejective multiple test procedure", Scandinavian Journal
   of Statistics 6(2), 1979.
.. [2] C. Nadeau and Y. Bengio, "Inference for the generalization error", Machine Learning 52,
   2003.
.. [3] J. Demšar, "Statistical comparisons of classifiers over multiple data sets", JMLR 7, 2006.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Hashable, Mapping

import numpy as np
from scipy import stats as _st

from ..exceptions import ParameterError

__all__ = [
    "mean_ci",
    "paired_tests",
    "welch_test",
    "holm",
    "nadeau_bengio_ttest",
    "run_independent",
    "collapse_to_folds",
    "compare_methods",
    "TESTS",
]

TESTS = ("paired", "nadeau-bengio")
NAN = float("nan")


def _as_1d(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be finite numbers; got {arr.tolist()}")
    return arr


def _t_p(t: float, df: float) -> float:
    """Two-sided p-value of a t statistic (inf → 0, nan → nan)."""
    if math.isnan(t) or math.isnan(df):
        return NAN
    return float(2.0 * _st.t.sf(abs(t), df))


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float, float, float]:
    """Mean with a t-distribution confidence interval.

    Parameters
    ----------
    values : array-like [shape=(n_units,)]
        One score per independent unit.
    confidence : float, default=0.95
        Coverage of the two-sided interval, in (0, 1).

    Returns
    -------
    mean, std, half_width, lo, hi : float
        ``std`` uses ``ddof=1``; ``half_width = t_{(1+c)/2, n-1} * std / sqrt(n)``. With one
        value, std and the interval are NaN; with none, everything is NaN.

    Examples
    --------
    >>> m, s, h, lo, hi = mean_ci([0.5, 0.7])
    >>> round(m, 3), round(lo, 3), round(hi, 3)
    (0.6, -0.671, 1.871)
    """
    if not 0.0 < confidence < 1.0:
        raise ParameterError(f"confidence must be in (0, 1); got {confidence}")
    x = _as_1d(values, "values")
    n = x.size
    if n == 0:
        return NAN, NAN, NAN, NAN, NAN
    mean = float(np.mean(x))
    if n == 1:
        return mean, NAN, NAN, NAN, NAN
    std = float(np.std(x, ddof=1))
    half = float(_st.t.ppf((1.0 + confidence) / 2.0, n - 1) * std / math.sqrt(n))
    return mean, std, half, mean - half, mean + half


def paired_tests(a, b) -> dict:
    """Two-sided paired t-test and Wilcoxon signed-rank test of ``a - b``.

    Parameters
    ----------
    a, b : array-like [shape=(n_units,)]
        Scores of two methods on the same units, in the same order.

    Returns
    -------
    dict
        ``n`` (pairs), ``mean_diff``, ``t``, ``df``, ``p_t``, ``w`` (Wilcoxon statistic),
        ``p_wilcoxon``. All-zero differences give ``t = 0`` and both p-values 1; constant
        non-zero differences give ``t = ±inf`` and ``p_t = 0``; fewer than two pairs give NaN.
        The Wilcoxon test drops zero differences (``zero_method="wilcox"``), as scipy does.
    """
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    if a.size != b.size:
        raise ParameterError(f"paired samples must have equal length; got {a.size} and {b.size}")
    d = a - b
    n = int(d.size)
    out = {"n": n, "mean_diff": float(np.mean(d)) if n else NAN, "t": NAN, "df": float(n - 1),
           "p_t": NAN, "w": NAN, "p_wilcoxon": NAN}
    if n < 2:
        return out
    if np.all(d == 0):
        out.update(t=0.0, p_t=1.0, w=0.0, p_wilcoxon=1.0)
        return out
    sd = float(np.std(d, ddof=1))
    mean = float(np.mean(d))
    t = math.copysign(math.inf, mean) if sd == 0 else mean / (sd / math.sqrt(n))
    out.update(t=t, p_t=_t_p(t, n - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = _st.wilcoxon(d)
    out.update(w=float(res.statistic), p_wilcoxon=float(res.pvalue))
    return out


def welch_test(a, b) -> dict:
    """Welch's unequal-variance two-sided t-test of ``mean(a) - mean(b)``.

    Parameters
    ----------
    a, b : array-like [shape=(n_a,)] and [shape=(n_b,)]
        Independent samples.

    Returns
    -------
    dict
        ``n_a``, ``n_b``, ``mean_diff``, ``t``, ``df`` (Welch–Satterthwaite), ``p_t``. Needs two
        values on each side (else NaN); two constant samples give ``p = 1`` when equal and
        ``p = 0`` otherwise.
    """
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    out = {"n_a": int(a.size), "n_b": int(b.size), "mean_diff": NAN, "t": NAN, "df": NAN, "p_t": NAN}
    if a.size and b.size:
        out["mean_diff"] = float(np.mean(a) - np.mean(b))
    if a.size < 2 or b.size < 2:
        return out
    va, vb = np.var(a, ddof=1) / a.size, np.var(b, ddof=1) / b.size
    diff = out["mean_diff"]
    if va + vb == 0:
        t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        out.update(t=t, df=float(a.size + b.size - 2), p_t=1.0 if diff == 0 else 0.0)
        return out
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    out.update(t=float(t), df=float(df), p_t=_t_p(t, df))
    return out


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values [1]_.

    Parameters
    ----------
    pvalues : array-like [shape=(m,)]
        Raw p-values of one family. NaN entries are left NaN and not counted in ``m``.

    Returns
    -------
    np.ndarray [shape=(m,)]
        ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` in the input order: monotone in the
        raw p-values and capped at 1.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03, 0.005]).round(3).tolist()
    [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def nadeau_bengio_ttest(diffs, n_train: float, n_test: float) -> tuple[float, float]:
    """Corrected resampled t-test of Nadeau and Bengio [2]_.

    Parameters
    ----------
    diffs : array-like [shape=(k,)]
        Score differences of two methods on k resampled train/test splits.
    n_train, n_test : float
        Training and test set sizes (means over the splits).

    Returns
    -------
    t, p : float
        ``t = mean(d) / sqrt((1/k + n_test/n_train) * var(d, ddof=1))`` with ``k - 1`` degrees
        of freedom; two-sided p. The variance is inflated to account for overlapping training
        sets. All-zero differences give ``(0, 1)``; ``k < 2`` gives NaN.
    """
    d = _as_1d(diffs, "diffs")
    if not (n_train > 0 and n_test > 0):
        raise ParameterError(f"n_train and n_test must be positive; got {n_train} and {n_test}")
    k = d.size
    if k < 2:
        return NAN, NAN
    if np.all(d == 0):
        return 0.0, 1.0
    var = float(np.var(d, ddof=1))
    mean = float(np.mean(d))
    if var == 0:
        return math.copysign(math.inf, mean), 0.0
    t = mean / math.sqrt((1.0 / k + n_test / n_train) * var)
    return t, _t_p(t, k - 1)


def run_independent(values: Mapping[tuple, float]) -> bool:
    """Whether every run of every fold gave the same value (and some fold has several runs).

    Parameters
    ----------
    values : mapping of unit key → float
        Unit keys are tuples whose first element is the fold, e.g. ``(fold, seed, run)``.
    """
    by_fold: dict[Hashable, list] = {}
    for key, v in values.items():
        by_fold.setdefault(_fold_of(key), []).append(v)
    return any(len(v) > 1 for v in by_fold.values()) and all(
        all(x == vs[0] for x in vs) for vs in by_fold.values()
    )


def collapse_to_folds(values: Mapping[tuple, float]) -> dict[Hashable, float]:
    """Average the values of each fold: ``{fold: mean over its units}``."""
    by_fold: dict[Hashable, list] = {}
    for key, v in values.items():
        by_fold.setdefault(_fold_of(key), []).append(v)
    return {f: float(np.mean(v)) for f, v in by_fold.items()}


def _fold_of(key) -> Hashable:
    if not isinstance(key, tuple) or not key:
        raise ParameterError(f"unit keys must be tuples (fold, ...); got {key!r}")
    return key[0]


def _sort_key(x) -> tuple:
    return tuple((0, v, "") if isinstance(v, int | float) else (1, 0, str(v)) for v in
                 (x if isinstance(x, tuple) else (x,)))


def compare_methods(
    table: Mapping[str, Mapping[tuple, float]],
    *,
    test: str = "paired",
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_train: float | None = None,
    n_test: float | None = None,
    collapse: Mapping[str, bool] | None = None,
) -> dict:
    """Compare every pair of methods of one (dataset, n) group on one metric.

    Parameters
    ----------
    table : mapping of method → {unit key: value}
        Unit keys are tuples whose first element is the fold, e.g. ``(fold, seed, run)``.
    test : "paired" or "nadeau-bengio", default="paired"
        Primary test on matched units: the paired t-test, or the corrected resampled t-test [2]_
        (needs ``n_train`` and ``n_test``). Unmatched units always use Welch's test.
    alpha : float, default=0.05
        Level for "not significantly worse than the best" (on Holm-adjusted p-values).
    confidence : float, default=0.95
        Coverage of the per-method confidence intervals.
    n_train, n_test : float, optional
        Mean training / test set sizes, for the Nadeau–Bengio test.
    collapse : mapping of method → bool, optional
        Which methods are run-independent (one value per fold). By default detected from the
        values with :func:`run_independent`; callers that see every metric of a row should
        decide from all of them.

    Returns
    -------
    dict
        ``methods``: ``{method: {mean, std, half_width, ci_lo, ci_hi, n_units, n_values,
        collapsed}}`` where ``n_units`` counts independent units (folds for a collapsed method);
        ``pairs``: one record per pair ``(a, b)`` (a before b in sorted order) with ``kind``
        ("paired", "paired-folds" or "welch"), ``test``, ``n_a``, ``n_b``, ``n_pairs`` (0 for
        Welch), ``mean_a``, ``mean_b``,
        ``mean_diff``, ``t``, ``df``, ``p_t``, ``p_t_holm``, ``w``, ``p_wilcoxon``,
        ``p_wilcoxon_holm``; ``best``: the method with the highest mean (ties broken by name);
        ``not_worse``: the best and every method whose comparison with it has
        ``p_t_holm >= alpha`` or NaN (no evidence that it is worse); ``rank``: methods by mean.
    """
    if test not in TESTS:
        raise ParameterError(f"test must be one of {', '.join(TESTS)}; got {test!r}")
    if not 0.0 < alpha < 1.0:
        raise ParameterError(f"alpha must be in (0, 1); got {alpha}")
    if test == "nadeau-bengio" and not (n_train and n_test):
        raise ParameterError("test 'nadeau-bengio' needs n_train and n_test; got "
                             f"n_train={n_train}, n_test={n_test}")
    names = sorted(table)
    def once_per_fold(values) -> bool:
        folds = [_fold_of(k) for k in values]
        return len(folds) == len(set(folds))

    # A method evaluated once per fold (the protocols do so for run-independent methods) beside
    # methods with several runs per fold is paired on folds too, not compared by Welch's test.
    replicated = any(not once_per_fold(table[m]) for m in names)
    collapsed = {m: (bool(collapse[m]) if collapse is not None and m in collapse
                     else run_independent(table[m]) or (replicated and once_per_fold(table[m])))
                 for m in names}
    methods = {}
    for m in names:
        vals = table[m]
        sample = list(collapse_to_folds(vals).values()) if collapsed[m] else [
            vals[k] for k in sorted(vals, key=_sort_key)]
        mean, std, half, lo, hi = mean_ci(sample, confidence)
        methods[m] = {"mean": mean, "std": std, "half_width": half, "ci_lo": lo, "ci_hi": hi,
                      "n_units": len(sample), "n_values": len(vals), "collapsed": collapsed[m]}
    pairs = [_compare_pair(a, b, table[a], table[b], collapsed[a] or collapsed[b], test, n_train, n_test)
             for a, b in itertools.combinations(names, 2)]
    for key in ("p_t", "p_wilcoxon"):
        adj = holm([p[key] for p in pairs])
        for p, v in zip(pairs, adj, strict=True):
            p[key + "_holm"] = float(v)
    rank = sorted((m for m in names if not math.isnan(methods[m]["mean"])),
                  key=lambda m: (-methods[m]["mean"], m))
    best = rank[0] if rank else None
    not_worse = []
    if best is not None:
        for m in rank:
            if m == best:
                not_worse.append(m)
                continue
            pair = next(p for p in pairs if {p["a"], p["b"]} == {m, best})
            if not pair["p_t_holm"] < alpha:
                not_worse.append(m)
    return {"methods": methods, "pairs": pairs, "best": best, "not_worse": not_worse, "rank": rank}


def _compare_pair(a, b, va, vb, by_fold, test, n_train, n_test) -> dict:
    if by_fold:
        xa, xb = collapse_to_folds(va), collapse_to_folds(vb)
    else:
        xa, xb = dict(va), dict(vb)
    rec = {"a": a, "b": b, "mean_a": NAN, "mean_b": NAN, "kind": "", "test": "", "n_pairs": 0,
           "mean_diff": NAN, "t": NAN, "df": NAN, "p_t": NAN, "w": NAN, "p_wilcoxon": NAN}
    ka, kb = sorted(xa, key=_sort_key), sorted(xb, key=_sort_key)
    rec.update(n_a=len(ka), n_b=len(kb))
    if ka and kb:
        rec.update(mean_a=float(np.mean([xa[k] for k in ka])), mean_b=float(np.mean([xb[k] for k in kb])))
    if ka == kb and ka:
        res = paired_tests([xa[k] for k in ka], [xb[k] for k in ka])
        rec.update(kind="paired-folds" if by_fold else "paired", test="paired t", n_pairs=res["n"],
                   mean_diff=res["mean_diff"], t=res["t"], df=res["df"], p_t=res["p_t"],
                   w=res["w"], p_wilcoxon=res["p_wilcoxon"])
        if test == "nadeau-bengio":
            diffs = np.subtract([xa[k] for k in ka], [xb[k] for k in ka])
            t, p = nadeau_bengio_ttest(diffs, n_train, n_test)
            rec.update(test="Nadeau-Bengio", t=t, p_t=p)
    else:
        res = welch_test([xa[k] for k in ka], [xb[k] for k in kb])
        rec.update(kind="welch", test="Welch t", n_pairs=0, mean_diff=res["mean_diff"],
                   t=res["t"], df=res["df"], p_t=res["p_t"])
    return rec
