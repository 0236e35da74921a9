"""Grid time, fast vs plain, for the self-tuning SVM and ELM (issue 3 item 5).

For each size ``n_train × n_features`` (10 classes by default) it times a whole
``fit`` of :class:`~fewshot.classifiers.SVMClassifier` (precomputed kernels) against
:class:`~fewshot.classifiers.PlainSVMGrid` (``GridSearchCV`` over ``StandardScaler + SVC``),
and :class:`~fewshot.classifiers.ELMClassifier` (nested projection, shared Gram) against
:class:`~fewshot.classifiers.PlainELMGrid` (loop over sizes). Selection uses a validation
split of ``n_val`` clips (the perf-baselines §3/§4 setting: 32 SVM fits on n_train, scored
on the validation clips); ``--mode cv`` uses the inner cross-validation instead. Timings are
medians of ``repeats`` runs (the plain grid runs ``plain_repeats`` times, once by default:
61.5 s for the SVM at 1,000 × 3,500 in perf-baselines). Every row also says whether both
grids chose the same hyper-parameters and their test accuracies, and the in-run sgemm rate
(GFLOP/s), since the shared machines are noisy.

Data are synthetic (perf-baselines §3): ``make_classification`` with 120 features, 2 clusters
per class and 5 % label noise; wider sets are a ReLU random projection of it (correlated,
"random-CNN-like" features).

Run: ``python scripts/bench_grids.py --sizes 1000x3500,200x160,50x160``. Another script can call
:func:`bench_grids` and :func:`to_markdown`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fewshot.classifiers import ELMClassifier, PlainELMGrid, PlainSVMGrid, SVMClassifier  # noqa: E402

__all__ = ["bench_grids", "to_markdown", "make_features", "sgemm_gflops"]

_PAIRS = {"svm": (SVMClassifier, PlainSVMGrid), "elm": (ELMClassifier, PlainELMGrid)}


def make_features(n: int, n_features: int, *, n_classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic features [shape=(n, n_features)] and labels, as perf-baselines §3."""
    base = min(n_features, 120)
    X, y = make_classification(
        n,
        base,
        n_informative=min(base, 40),
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=2,
        flip_y=0.05,
        random_state=seed,
    )
    if n_features > base:
        W = np.random.default_rng(seed).standard_normal((base, n_features)) / np.sqrt(base)
        X = np.maximum(X @ W, 0.0)
    return X, y


def sgemm_gflops(n: int = 2048, repeats: int = 3) -> float:
    """Median float32 matrix-product rate of this machine right now (GFLOP/s)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times[1:]) / 1e9


def _timed_fit(cls, X, y, kw, fit_kw, repeats: int):
    times, model = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        model = cls(**kw).fit(X, y, **fit_kw)
        times.append(time.perf_counter() - t)
    return statistics.median(times), model


def bench_grids(
    sizes=((1000, 3500), (200, 160), (50, 160)),
    *,
    classifiers=("svm", "elm"),
    n_classes: int = 10,
    n_val: int = 300,
    mode: str = "val",
    repeats: int = 3,
    plain_repeats: int = 1,
    plain: bool = True,
    device: str = "cpu",
    seed: int = 0,
) -> list[dict]:
    """Time the fast and plain grids side by side.

    Parameters
    ----------
    sizes : iterable of (n_train, n_features)
    classifiers : iterable of {"svm", "elm"}
    n_classes : int
    n_val : int
        Validation clips (``mode="val"``); the same number of test clips is always drawn.
    mode : {"val", "cv"}
        Selection on a validation split, or inner cross-validation on the training clips.
    repeats, plain_repeats : int
        Runs per timing (median) for the fast and the plain grid.
    plain : bool
        Also time the plain grids (slow: about a minute for the SVM at 1,000 × 3,500).
    device : str
        Torch device of the fast grids.
    seed : int

    Returns
    -------
    list of dict
        One row per (classifier, size): ``classifier, n_train, n_val, n_features, n_classes,
        mode, fast_s, plain_s, speedup, same_params, fast_params, plain_params, fast_test_acc,
        plain_test_acc, sgemm_gflops`` (plain fields None when ``plain=False``).
    """
    if mode not in ("val", "cv"):
        raise ValueError(f"mode must be 'val' or 'cv'; got {mode!r}")
    rows = []
    gflops = sgemm_gflops()
    for n_train, n_features in sizes:
        X, y = make_features(n_train + 2 * n_val, n_features, n_classes=n_classes, seed=seed)
        Xtr, ytr = X[:n_train], y[:n_train]
        Xval, yval = X[n_train : n_train + n_val], y[n_train : n_train + n_val]
        Xte, yte = X[n_train + n_val :], y[n_train + n_val :]
        fit_kw = {"X_val": Xval, "y_val": yval} if mode == "val" else {}
        for name in classifiers:
            fast_cls, plain_cls = _PAIRS[name]
            fast_s, fast = _timed_fit(fast_cls, Xtr, ytr, {"random_state": seed, "device": device}, fit_kw, repeats)
            row = {
                "classifier": name,
                "n_train": n_train,
                "n_val": n_val if mode == "val" else 0,
                "n_features": n_features,
                "n_classes": n_classes,
                "mode": fast.tuning_,
                "fast_s": fast_s,
                "plain_s": None,
                "speedup": None,
                "same_params": None,
                "fast_params": fast.best_params_,
                "plain_params": None,
                "fast_test_acc": float(np.mean(fast.predict(Xte) == yte)),
                "plain_test_acc": None,
                "sgemm_gflops": gflops,
            }
            if plain:
                plain_s, ref = _timed_fit(plain_cls, Xtr, ytr, {"random_state": seed}, fit_kw, plain_repeats)
                row.update(
                    plain_s=plain_s,
                    speedup=plain_s / fast_s,
                    same_params=ref.best_params_ == fast.best_params_,
                    plain_params=ref.best_params_,
                    plain_test_acc=float(np.mean(ref.predict(Xte) == yte)),
                )
            rows.append(row)
    return rows


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _params(p: dict | None) -> str:
    if p is None:
        return "–"
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def to_markdown(rows: list[dict]) -> str:
    """The rows of :func:`bench_grids` as a Markdown table."""
    head = (
        "| grid | n_train × features | selection | fast s | plain s | speed-up | same choice | "
        "chosen | test acc fast / plain |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {r['classifier']} | {r['n_train']} × {r['n_features']} | {r['mode']} | {_fmt(r['fast_s'], '.3f')} | "
        f"{_fmt(r['plain_s'], '.2f')} | {_fmt(r['speedup'], '.1f')}× | {_fmt(r['same_params'], '')} | "
        f"{_params(r['fast_params'])} | {r['fast_test_acc']:.3f} / {_fmt(r['plain_test_acc'], '.3f')} |"
        for r in rows
    ]
    gflops = f"\nIn-run sgemm reference: {rows[0]['sgemm_gflops']:.0f} GFLOP/s.\n" if rows else ""
    return head + "\n".join(lines) + "\n" + gflops


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000x3500,200x160,50x160", help="n_train x n_features, comma-separated")
    parser.add_argument("--classifiers", default="svm,elm")
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--mode", choices=("val", "cv"), default="val")
    parser.add_argument("--n-val", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain-repeats", type=int, default=1)
    parser.add_argument("--no-plain", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    rows = bench_grids(
        sizes,
        classifiers=tuple(args.classifiers.split(",")),
        n_classes=args.n_classes,
        n_val=args.n_val,
        mode=args.mode,
        repeats=args.repeats,
        plain_repeats=args.plain_repeats,
        plain=not args.no_plain,
        device=args.device,
    )
    table = to_markdown(rows)
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
