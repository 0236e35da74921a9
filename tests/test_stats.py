"""Statistics against scipy.stats on the same arrays, Holm and Nadeau–Bengio by hand, and the rules
of compare_methods (pairing, Welch, the identical-rows collapse, best / not-worse marking)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from fewshot.exceptions import ParameterError
from fewshot.results.stats import (
    collapse_to_folds,
    compare_methods,
    holm,
    mean_ci,
    nadeau_bengio_ttest,
    paired_tests,
    run_independent,
    welch_test,
)

RNG = np.random.default_rng(440)
A = RNG.uniform(0.5, 0.9, size=12)
B = A - 0.03 + RNG.normal(0, 0.02, size=12)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_mean_ci_matches_scipy_t_interval(confidence):
    mean, std, half, lo, hi = mean_ci(A, confidence)
    sem = st.sem(A)
    ref_lo, ref_hi = st.t.interval(confidence, len(A) - 1, loc=A.mean(), scale=sem)
    assert mean == pytest.approx(A.mean())
    assert std == pytest.approx(np.std(A, ddof=1))
    assert (lo, hi) == pytest.approx((ref_lo, ref_hi))
    assert half == pytest.approx((ref_hi - ref_lo) / 2)


def test_mean_ci_one_and_zero_values():
    mean, std, half, lo, hi = mean_ci([0.7])
    assert mean == 0.7 and all(math.isnan(x) for x in (std, half, lo, hi))
    assert all(math.isnan(x) for x in mean_ci([]))
    assert mean_ci([0.5, 0.5, 0.5])[2] == 0.0


def test_mean_ci_rejects_bad_input():
    with pytest.raises(ParameterError, match="confidence must be in"):
        mean_ci([0.1, 0.2], 1.5)
    with pytest.raises(ParameterError, match="values must be finite"):
        mean_ci([0.1, float("nan")])


def test_paired_tests_match_scipy():
    res = paired_tests(A, B)
    ref_t = st.ttest_rel(A, B)
    ref_w = st.wilcoxon(A - B)
    assert res["n"] == 12 and res["df"] == 11
    assert res["t"] == pytest.approx(ref_t.statistic)
    assert res["p_t"] == pytest.approx(ref_t.pvalue)
    assert res["w"] == pytest.approx(ref_w.statistic)
    assert res["p_wilcoxon"] == pytest.approx(ref_w.pvalue)
    assert res["mean_diff"] == pytest.approx(np.mean(A - B))


def test_paired_tests_all_zero_differences_give_p_one():
    res = paired_tests(A, A.copy())
    assert res["t"] == 0.0 and res["p_t"] == 1.0 and res["p_wilcoxon"] == 1.0


def test_paired_tests_edge_cases():
    assert math.isnan(paired_tests([0.5], [0.4])["p_t"])
    res = paired_tests([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    assert res["t"] == math.inf and res["p_t"] == 0.0
    with pytest.raises(ParameterError, match="equal length"):
        paired_tests([0.1, 0.2], [0.1])


def test_welch_matches_scipy():
    b = RNG.uniform(0.4, 0.8, size=7)
    res = welch_test(A, b)
    ref = st.ttest_ind(A, b, equal_var=False)
    assert res["t"] == pytest.approx(ref.statistic)
    assert res["p_t"] == pytest.approx(ref.pvalue)
    assert res["df"] == pytest.approx(ref.df)


def test_welch_edge_cases():
    assert welch_test([0.5, 0.5], [0.5, 0.5])["p_t"] == 1.0
    assert welch_test([0.6, 0.6], [0.5, 0.5])["p_t"] == 0.0
    assert math.isnan(welch_test([0.5], [0.5, 0.6])["p_t"])


def test_holm_hand_computed():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> max-accumulate 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_keeps_nan_and_is_monotone():
    p = np.array([0.5, np.nan, 0.2, 0.9, 0.01])
    adj = holm(p)
    assert math.isnan(adj[1])
    ok = ~np.isnan(p)
    assert np.all(adj[ok] <= 1.0) and np.all(adj[ok] >= p[ok])
    order = np.argsort(p[ok])
    assert np.all(np.diff(adj[ok][order]) >= 0)
    assert adj[4] == pytest.approx(0.04)  # m = 4 non-NaN p-values
    assert holm([]).size == 0


def test_nadeau_bengio_known_example():
    d = np.array([0.1, 0.2, 0.3, 0.0, 0.4])
    # mean 0.2, var(ddof=1) 0.025, factor 1/5 + 10/90
    t, p = nadeau_bengio_ttest(d, n_train=90, n_test=10)
    t_ref = 0.2 / math.sqrt((1 / 5 + 10 / 90) * 0.025)
    assert t == pytest.approx(t_ref) and t == pytest.approx(2.267786838)
    assert p == pytest.approx(2 * st.t.sf(t_ref, 4))
    # without the n_test/n_train term it is the one-sample t-test
    naive = st.ttest_1samp(d, 0.0)
    assert abs(t) < abs(naive.statistic)
    assert nadeau_bengio_ttest(np.zeros(4), 10, 10) == (0.0, 1.0)
    with pytest.raises(ParameterError, match="n_train and n_test must be positive"):
        nadeau_bengio_ttest(d, 0, 10)


def _units(values_by_fold_run):
    return {(f, 0, r): v for (f, r), v in values_by_fold_run.items()}


def test_run_independent_and_collapse():
    det = _units({("1", 0): 0.6, ("1", 1): 0.6, ("2", 0): 0.7, ("2", 1): 0.7})
    assert run_independent(det)
    assert collapse_to_folds(det) == {"1": 0.6, "2": 0.7}
    assert not run_independent(_units({("1", 0): 0.6, ("1", 1): 0.61}))
    assert not run_independent(_units({("1", 0): 0.6, ("2", 0): 0.6}))  # one run per fold: nothing to collapse


def test_compare_methods_paired_matches_paired_tests():
    keys = [(str(f), 0, r) for f in range(3) for r in range(4)]
    table = {"a": dict(zip(keys, A, strict=True)), "b": dict(zip(keys, B, strict=True))}
    res = compare_methods(table)
    (pair,) = res["pairs"]
    ref = paired_tests(A, B)
    assert pair["kind"] == "paired" and pair["n_pairs"] == 12
    assert pair["p_t"] == pytest.approx(ref["p_t"]) and pair["p_wilcoxon"] == pytest.approx(ref["p_wilcoxon"])
    assert res["methods"]["a"]["n_units"] == 12 and not res["methods"]["a"]["collapsed"]


def test_compare_methods_partial_overlap_uses_welch():
    table = {"a": {("1", 0, 0): 0.5, ("1", 0, 1): 0.6, ("2", 0, 0): 0.55},
             "b": {("1", 0, 0): 0.4, ("1", 0, 1): 0.45, ("3", 0, 0): 0.5}}
    (pair,) = compare_methods(table)["pairs"]
    ref = st.ttest_ind([0.5, 0.6, 0.55], [0.4, 0.45, 0.5], equal_var=False)
    assert pair["kind"] == "welch" and pair["p_t"] == pytest.approx(ref.pvalue)


def test_identical_rows_are_not_replicates():
    """A run-independent method is one value per fold, paired on folds with the other's fold means.

    With 2 folds x 10 identical runs, counting runs as replicates would give 20 'pairs' and a tiny
    p-value; the honest comparison has 2 pairs."""
    folds, runs = ["1", "2"], range(10)
    knn = {(f, 0, r): {"1": 0.60, "2": 0.70}[f] for f in folds for r in runs}
    rng = np.random.default_rng(0)
    cnn = {(f, 0, r): {"1": 0.64, "2": 0.71}[f] + rng.normal(0, 0.01) for f in folds for r in runs}
    res = compare_methods({"cnn": cnn, "mfcc+knn": knn})
    (pair,) = res["pairs"]
    assert res["methods"]["mfcc+knn"]["collapsed"] and res["methods"]["mfcc+knn"]["n_units"] == 2
    assert res["methods"]["mfcc+knn"]["n_values"] == 20
    assert math.isnan(res["methods"]["mfcc+knn"]["half_width"]) is False
    assert pair["kind"] == "paired-folds" and pair["n_pairs"] == 2
    cnn_folds = collapse_to_folds(cnn)
    ref = st.ttest_rel([cnn_folds["1"], cnn_folds["2"]], [0.60, 0.70])
    assert pair["p_t"] == pytest.approx(ref.pvalue)
    wrong = st.ttest_rel([cnn[k] for k in sorted(cnn)], [knn[k] for k in sorted(cnn)])
    assert wrong.pvalue < 0.001 and pair["p_t"] > 0.05  # replicates would have made it "significant"
    assert res["not_worse"] == ["cnn", "mfcc+knn"]  # so knn is not declared worse
    # a caller that sees every metric can override the detection
    forced = compare_methods({"cnn": cnn, "mfcc+knn": knn}, collapse={"cnn": False, "mfcc+knn": False})
    assert forced["pairs"][0]["kind"] == "paired" and forced["pairs"][0]["n_pairs"] == 20


def test_best_and_not_worse_marking_with_holm():
    keys = [(str(f), 0, r) for f in range(2) for r in range(5)]
    noise = np.random.default_rng(1).normal(0, 0.005, size=len(keys))
    base = 0.6 + noise
    table = {
        "best": dict(zip(keys, base + 0.10, strict=True)),
        "close": dict(zip(keys, base + 0.10 + np.random.default_rng(2).normal(0, 0.02, len(keys)), strict=True)),
        "worse": dict(zip(keys, base, strict=True)),
    }
    res = compare_methods(table)
    assert res["rank"][-1] == "worse"
    assert res["best"] in ("best", "close")
    assert set(res["not_worse"]) == {"best", "close"}
    pvals = [p["p_t"] for p in res["pairs"]]
    assert [p["p_t_holm"] for p in res["pairs"]] == pytest.approx(holm(pvals).tolist())


def test_compare_methods_nadeau_bengio_option():
    keys = [(str(f), 0, 0) for f in range(5)]
    a = dict(zip(keys, [0.8, 0.82, 0.79, 0.85, 0.81], strict=True))
    b = dict(zip(keys, [0.7, 0.80, 0.69, 0.83, 0.80], strict=True))
    (pair,) = compare_methods({"a": a, "b": b}, test="nadeau-bengio", n_train=80, n_test=20)["pairs"]
    t, p = nadeau_bengio_ttest(np.subtract(list(a.values()), list(b.values())), 80, 20)
    assert pair["test"] == "Nadeau-Bengio" and pair["p_t"] == pytest.approx(p)
    with pytest.raises(ParameterError, match="needs n_train and n_test"):
        compare_methods({"a": a, "b": b}, test="nadeau-bengio")
    with pytest.raises(ParameterError, match="test must be one of"):
        compare_methods({"a": a}, test="bogus")
    with pytest.raises(ParameterError, match="unit keys must be tuples"):
        compare_methods({"a": {"1": 0.5}})


def test_method_evaluated_once_per_fold_is_paired_on_folds_not_welch():
    # The protocols evaluate run-independent methods once per fold (run 0 only); beside a method
    # with three runs per fold they must be paired on folds, the other averaged over its runs.
    from fewshot.results.stats import compare_methods

    rng = np.random.default_rng(0)
    once = {(f, 0, 0): 0.5 + 0.05 * i for i, f in enumerate("12345")}
    runs = {(f, 0, r): 0.52 + 0.05 * i + rng.normal(0, 0.01) for i, f in enumerate("12345") for r in range(3)}
    out = compare_methods({"fixed": once, "random": runs})
    pair = out["pairs"][0]
    assert pair["kind"] == "paired-folds" and pair["n_pairs"] == 5
    means = [np.mean([runs[(f, 0, r)] for r in range(3)]) for f in "12345"]
    expected = st.ttest_rel([once[(f, 0, 0)] for f in "12345"], means)
    assert np.isclose(abs(pair["t"]), abs(expected.statistic)) and np.isclose(pair["p_t"], expected.pvalue)
    assert out["methods"]["fixed"]["collapsed"] and not out["methods"]["random"]["collapsed"]
