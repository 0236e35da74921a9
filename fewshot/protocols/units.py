"""Planning: which units (method × n × fold × run) a configuration asks for."""

from __future__ import annotations

from ..data.sampler import default_runs
from ..methods import MethodSpec
from ..results.store import Unit

__all__ = ["plan_units", "run_independent"]


def run_independent(spec: MethodSpec, n: int | str) -> bool:
    """True when a method's result cannot depend on the run index.

    That is a fixed (non-random) front-end with a deterministic classifier on the
    whole training pool: every run would give the same row, so it is evaluated
    once per fold and the report pairs it on folds (identical rows are not
    replicates).
    """
    if n != "all" or spec.kind != "pipeline":
        return False
    from ..classifiers import CLASSIFIERS
    from ..frontends import is_random_frontend

    if is_random_frontend(spec.frontend):
        return False
    entry = CLASSIFIERS.get(spec.classifier)
    return bool(entry.meta.get("deterministic", False))


def plan_units(
    methods: list[MethodSpec], n_values: list[int | str], folds: list[str], runs: int | None
) -> list[Unit]:
    """Every unit, in a stable order (method, n, fold, run).

    Parameters
    ----------
    methods : list of MethodSpec
    n_values : list of int or "all"
    folds : list of str
        Test folds.
    runs : int or None
        Runs per n; None uses :func:`fewshot.data.sampler.default_runs`.
    """
    units = []
    for spec in methods:
        for n in n_values:
            n_runs = 1 if run_independent(spec, n) else (runs or default_runs(n))
            for fold in folds:
                for run in range(n_runs):
                    units.append(Unit(spec.text, n, fold, run))
    return units
