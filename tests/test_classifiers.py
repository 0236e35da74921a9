"""Tests of fewshot.classifiers: estimator API, fast == plain grids, tuning without the test fold."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.utils.estimator_checks import parametrize_with_checks

from fewshot.classifiers import (
    CLASSIFIERS,
    ELMClassifier,
    KNNClassifier,
    LogRegClassifier,
    PlainELMGrid,
    PlainSVMGrid,
    SVMClassifier,
    create_classifier,
    inner_splits,
    list_classifiers,
)
from fewshot.classifiers._backend import Backend
from fewshot.classifiers._tuning import first_best
from fewshot.classifiers.elm import draw_projection, nested_output_weights
from fewshot.classifiers.svm import _gram_and_distances
from fewshot.exceptions import ParameterError


def _problem(n, *, n_features=20, n_classes=3, seed=0, n_test=60):
    X, y = make_classification(
        n + n_test,
        n_features,
        n_informative=8,
        n_redundant=4,
        n_classes=n_classes,
        n_clusters_per_class=1,
        flip_y=0.05,
        random_state=seed,
    )
    X = X * np.linspace(0.5, 20, n_features) + np.linspace(-5, 5, n_features)  # unequal scales
    return X[:n], y[:n], X[n:], y[n:]


# --- registry -------------------------------------------------------------------------------


def test_registry_lists_and_creates_every_classifier():
    assert list_classifiers() == ["elm", "knn", "logreg", "svm"]
    assert isinstance(create_classifier("svm", random_state=3), SVMClassifier)
    elm = create_classifier("elm", random_state=4, device="cpu", n_hidden=50, solver="pinv")
    assert (elm.random_state, elm.n_hidden, elm.solver) == (4, 50, "pinv")
    assert isinstance(create_classifier("knn", random_state=1), KNNClassifier)
    assert create_classifier("logreg", random_state=2).random_state == 2
    assert all(entry.description for entry in CLASSIFIERS)


def test_registry_errors_name_the_choices():
    with pytest.raises(ParameterError, match="unknown classifier 'svn'; available: elm, knn, logreg, svm"):
        create_classifier("svn")
    with pytest.raises(ParameterError, match="ELMClassifier has no parameter 'hidden'; accepted: .*n_hidden"):
        create_classifier("elm", hidden=3)


# --- scikit-learn estimator checks ----------------------------------------------------------


@parametrize_with_checks(
    [
        ELMClassifier(n_hidden=20),
        ELMClassifier(n_hidden=(5, 20, 40)),
        KNNClassifier(),
        SVMClassifier(gammas=("auto", 0.1), Cs=(1.0, 8.0)),
        LogRegClassifier(Cs=(0.1, 1.0)),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_full_default_grids_pass_a_fit_predict_check():
    X, y, X_test, _ = _problem(60)
    for est in (SVMClassifier(), ELMClassifier(), LogRegClassifier()):
        pred = est.fit(X, y).predict(X_test)
        assert pred.shape == (len(X_test),) and set(pred) <= set(y)
        assert len(est.cv_scores_) == len(est.candidates_)
    assert len(SVMClassifier().fit(X, y).candidates_) == 32


# --- fast grids == plain grids --------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "n_classes", "seed", "use_val"),
    [(150, 3, 0, False), (200, 4, 1, False), (90, 3, 2, True), (30, 3, 3, False)],
)
def test_fast_svm_grid_matches_plain_gridsearchcv(n, n_classes, seed, use_val):
    X, y, X_test, y_test = _problem(n, n_classes=n_classes, seed=seed, n_test=80)
    kw = {"X_val": X_test[:40], "y_val": y_test[:40]} if use_val else {}
    fast = SVMClassifier(random_state=seed).fit(X, y, **kw)
    plain = PlainSVMGrid(random_state=seed).fit(X, y, **kw)
    assert fast.tuning_ == plain.tuning_ == ("validation" if use_val else "loo" if n <= 50 else "kfold")
    assert fast.best_params_ == plain.best_params_
    np.testing.assert_allclose(fast.cv_scores_, plain.cv_scores_, atol=1e-12)
    X_eval, y_eval = X_test[40:], y_test[40:]
    assert np.mean(fast.predict(X_eval) == y_eval) == np.mean(plain.predict(X_eval) == y_eval)
    assert np.mean(fast.predict(X_eval) == plain.predict(X_eval)) >= 0.97


@pytest.mark.parametrize("solver", ["ridge", "pinv"])
@pytest.mark.parametrize(("n", "use_val"), [(100, False), (60, True), (40, False)])
def test_fast_elm_grid_matches_plain_loop(solver, n, use_val):
    X, y, X_test, y_test = _problem(n, seed=n, n_test=80)
    kw = {"X_val": X_test[:40], "y_val": y_test[:40]} if use_val else {}
    sizes = (10, 40, 70, 150)  # both sides of n_train: normal equations and dual form
    fast = ELMClassifier(n_hidden=sizes, solver=solver, random_state=7).fit(X, y, **kw)
    plain = PlainELMGrid(n_hidden=sizes, solver=solver, random_state=7).fit(X, y, **kw)
    assert fast.best_params_ == plain.best_params_
    np.testing.assert_allclose(fast.cv_scores_, plain.cv_scores_, atol=1e-12)
    np.testing.assert_array_equal(fast.predict(X_test[40:]), plain.predict(X_test[40:]))


def test_nested_projection_equals_a_fixed_size_elm():
    W_big, b_big = draw_projection(5, 12, 300)
    W, b = draw_projection(5, 12, 70)
    np.testing.assert_array_equal(W_big[:, :70], W)
    np.testing.assert_array_equal(b_big[:70], b)
    X, y, X_test, _ = _problem(80)
    tuned = ELMClassifier(n_hidden=(20, 70, 300), random_state=5).fit(X, y)
    fixed = ELMClassifier(n_hidden=tuned.best_params_["n_hidden"], random_state=5).fit(X, y)
    np.testing.assert_allclose(tuned.decision_function(X_test), fixed.decision_function(X_test), atol=1e-9)


def test_torch_backend_matches_numpy_backend():
    rng = np.random.default_rng(0)
    H, T = np.maximum(rng.standard_normal((30, 80)), 0), np.eye(3)[rng.integers(0, 3, 30)]
    xt = Backend("cpu")
    xt.is_torch = True  # the torch code path, as on cuda, run on the CPU
    for solver in ("ridge", "pinv"):
        ref = nested_output_weights(H, T, [10, 30, 80], alpha=1e-3, solver=solver)
        got = nested_output_weights(xt.asarray(H), xt.asarray(T), [10, 30, 80], alpha=1e-3, solver=solver, xp=xt)
        for h in ref:
            np.testing.assert_allclose(xt.numpy(got[h]), ref[h], rtol=1e-7, atol=1e-9)
    A, B = rng.standard_normal((25, 7)), rng.standard_normal((9, 7))
    for blocks in ((A, None), (A, B)):
        ref = _gram_and_distances(*blocks, Backend("cpu"))
        got = _gram_and_distances(*blocks, xt)
        for r, g in zip(ref, got, strict=True):
            np.testing.assert_allclose(xt.numpy(g), r, atol=1e-10)


def test_whole_fits_on_the_torch_path_match_the_numpy_path(monkeypatch):
    X, y, X_test, y_test = _problem(70, seed=9)
    kw = {"X_val": X_test[:30], "y_val": y_test[:30]}
    ref = [SVMClassifier().fit(X, y), ELMClassifier(n_hidden=(20, 60, 150)).fit(X, y, **kw)]
    original = Backend.__init__

    def torch_on_cpu(self, device="cpu"):
        original(self, device)
        self.is_torch = True  # what a cuda device does, run on the CPU

    monkeypatch.setattr(Backend, "__init__", torch_on_cpu)
    got = [SVMClassifier().fit(X, y), ELMClassifier(n_hidden=(20, 60, 150)).fit(X, y, **kw)]
    for r, g in zip(ref, got, strict=True):
        assert r.best_params_ == g.best_params_
        np.testing.assert_allclose(r.cv_scores_, g.cv_scores_, atol=1e-12)
        np.testing.assert_allclose(r.decision_function(X_test), g.decision_function(X_test), atol=1e-7)


def test_ridge_survives_where_pinv_collapses_at_h_equal_n_train():
    X, y, X_test, y_test = _problem(100, n_features=30, n_classes=4, seed=11, n_test=300)
    ridge = ELMClassifier(n_hidden=100, random_state=0).fit(X, y)
    pinv = ELMClassifier(n_hidden=100, solver="pinv", random_state=0).fit(X, y)
    acc_ridge = np.mean(ridge.predict(X_test) == y_test)
    acc_pinv = np.mean(pinv.predict(X_test) == y_test)
    assert np.mean(pinv.predict(X) == y) == 1.0  # interpolates the training set
    assert acc_ridge > acc_pinv + 0.15, (acc_ridge, acc_pinv)
    assert np.linalg.norm(pinv.output_weights_) > 5 * np.linalg.norm(ridge.output_weights_)


# --- hyper-parameters never see the test fold ------------------------------------------------


@pytest.mark.parametrize("cls", [SVMClassifier, ELMClassifier, LogRegClassifier, KNNClassifier])
def test_fit_offers_no_way_to_pass_test_data(cls):
    params = list(inspect.signature(cls.fit).parameters)
    assert params == ["self", "X", "y", "X_val", "y_val"]


def _fixed(cls, params, **kw):
    """The estimator ``cls`` with its grid reduced to the single setting ``params``."""
    if cls in (SVMClassifier, PlainSVMGrid):
        grid = {"kernels": (params["kernel"],), "Cs": (params["C"],), "gammas": (params.get("gamma", 1.0),)}
    elif cls is ELMClassifier:
        grid = {"n_hidden": params["n_hidden"]}
    else:
        grid = {"Cs": (params["C"],)}
    return cls(**grid, **kw)


@pytest.mark.parametrize("cls", [SVMClassifier, ELMClassifier, LogRegClassifier])
def test_selection_is_a_function_of_the_training_data_alone(cls):
    X, y, X_test, y_test = _problem(120, seed=4)
    a = cls(random_state=1).fit(X, y)
    b = cls(random_state=1).fit(X, y)
    # whatever the test labels are (they are never an argument), choice and predictions agree
    assert a.best_params_ == b.best_params_
    np.testing.assert_array_equal(a.cv_scores_, b.cv_scores_)
    np.testing.assert_array_equal(a.predict(X_test), b.predict(X_test))
    assert a.tuning_ == "kfold"
    if cls is LogRegClassifier:  # warm starts inside the grid: equal only up to lbfgs tolerance
        return
    # the selection scores are reproduced from the training data alone, fold by fold
    splits = inner_splits(y, random_state=1)
    manual = [
        np.mean(
            [np.mean(_fixed(cls, p, random_state=1).fit(X[tr], y[tr]).predict(X[te]) == y[te]) for tr, te in splits]
        )
        for p in a.candidates_
    ]
    np.testing.assert_allclose(a.cv_scores_, manual, atol=1e-12)


def test_test_fold_labels_would_change_the_choice_if_they_were_used():
    """Guard that the test above has power: scoring on the test fold picks differently."""
    X, y, X_test, y_test = _problem(120, seed=4)
    clf = SVMClassifier(random_state=1).fit(X, y)
    on_test = SVMClassifier(random_state=1).fit(X, y, X_val=X_test, y_val=np.roll(y_test, 7))
    assert not np.array_equal(clf.cv_scores_, on_test.cv_scores_)


@pytest.mark.parametrize("cls", [SVMClassifier, ELMClassifier, LogRegClassifier])
def test_validation_split_selects_then_final_model_fits_on_train_only(cls):
    X, y, X_rest, y_rest = _problem(90, seed=5, n_test=120)
    X_val, y_val, X_test = X_rest[:60], y_rest[:60], X_rest[60:]
    tuned = cls(random_state=2).fit(X, y, X_val=X_val, y_val=y_val)
    assert tuned.tuning_ == "validation"
    assert tuned.best_params_ == tuned.candidates_[first_best(tuned.cv_scores_)]
    # the validation labels matter for the selection ...
    relabelled = cls(random_state=2).fit(X, y, X_val=X_val, y_val=np.random.default_rng(1).permutation(y_val))
    assert not np.array_equal(tuned.cv_scores_, relabelled.cv_scores_)
    # ... but the final model is the chosen setting fitted on the training part alone
    np.testing.assert_allclose(tuned.scaler_.mean_, X.mean(0))
    fixed = _fixed(cls, tuned.best_params_, random_state=2).fit(X, y)
    assert fixed.tuning_ == "fixed"
    np.testing.assert_allclose(tuned.decision_function(X_test), fixed.decision_function(X_test), atol=1e-8)


def test_inner_split_rule():
    y_small = np.repeat([0, 1, 2], 5)  # 15 clips → leave-one-out
    splits = inner_splits(y_small)
    assert len(splits) == 15 and all(len(te) == 1 for _, te in splits)
    y_big = np.repeat([0, 1, 2], [30, 30, 3])  # smallest class 3 → 3 stratified folds
    splits = inner_splits(y_big, random_state=0)
    assert len(splits) == 3
    assert all(np.bincount(y_big[te], minlength=3).min() == 1 for _, te in splits)
    again = inner_splits(y_big, random_state=0)
    other = inner_splits(y_big, random_state=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(splits, other, strict=True))
    assert inner_splits(np.array([0, 0, 1])) is None  # a class with one clip: no tuning
    assert len(inner_splits(np.repeat([0, 1], 30), loo_max=100)) == 60


def test_one_shot_uses_documented_defaults():
    X, y, X_test, _ = _problem(60, n_features=16)
    idx = np.array([np.flatnonzero(y == c)[0] for c in range(3)])
    svm = SVMClassifier().fit(X[idx], y[idx])
    assert svm.tuning_ == "default" and svm.cv_scores_ is None
    assert svm.best_params_ == {"kernel": "rbf", "gamma": 1 / 16, "C": 2.0}
    elm = ELMClassifier().fit(X[idx], y[idx])
    assert elm.best_params_ == {"n_hidden": 100} and elm.tuning_ == "default"
    assert LogRegClassifier().fit(X[idx], y[idx]).best_params_ == {"C": 1.0}
    assert set(KNNClassifier().fit(X[idx], y[idx]).predict(X_test)) <= {0, 1, 2}


def test_small_training_sets_use_leave_one_out():
    X, y, _, _ = _problem(30)
    assert ELMClassifier(n_hidden=(10, 30)).fit(X, y).tuning_ == "loo"
    assert ELMClassifier(n_hidden=(10, 30), loo_max=10).fit(X, y).tuning_ == "kfold"


def test_ties_go_to_the_first_candidate_in_grid_order():
    assert first_best([0.5, 0.7, 0.7 - 1e-15, 0.7]) == 1
    assert first_best([0.2, 0.1]) == 0


# --- determinism and standardization --------------------------------------------------------


def test_determinism_given_random_state():
    X, y, X_test, _ = _problem(80)
    a = ELMClassifier(n_hidden=(20, 60), random_state=3).fit(X, y)
    b = ELMClassifier(n_hidden=(20, 60), random_state=3).fit(X, y)
    c = ELMClassifier(n_hidden=(20, 60), random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.decision_function(X_test), b.decision_function(X_test))
    np.testing.assert_array_equal(a.cv_scores_, b.cv_scores_)
    assert not np.array_equal(a.input_weights_[:, :20], c.input_weights_[:, :20])
    s1 = SVMClassifier(random_state=3).fit(X, y)
    s2 = SVMClassifier(random_state=3).fit(X, y)
    assert s1.best_params_ == s2.best_params_
    np.testing.assert_array_equal(s1.cv_scores_, s2.cv_scores_)


@pytest.mark.parametrize(
    "est", [SVMClassifier(), ELMClassifier(n_hidden=(20, 60)), KNNClassifier(), LogRegClassifier()]
)
def test_standardization_uses_training_statistics_only(est):
    X, y, X_test, _ = _problem(80)
    est.fit(X, y)
    np.testing.assert_allclose(est.scaler_.mean_, X.mean(0))
    np.testing.assert_allclose(est.scaler_.scale_, X.std(0))
    batch = est.predict(X_test)
    one_by_one = np.concatenate([est.predict(X_test[i : i + 1]) for i in range(10)])
    np.testing.assert_array_equal(batch[:10], one_by_one)
    shifted = est.predict(np.vstack([X_test[:10], X_test[10:] * 100.0]))  # other test rows change
    np.testing.assert_array_equal(shifted[:10], batch[:10])


def test_knn_is_one_nearest_neighbour_by_cosine():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [10.0, 9.0]])
    y = np.array(["a", "b", "c"])
    knn = KNNClassifier(standardize=False).fit(X, y)
    np.testing.assert_array_equal(knn.predict([[5.0, 0.5], [0.1, 3.0], [1.0, 1.0]]), ["a", "b", "c"])


# --- errors ---------------------------------------------------------------------------------


def test_errors_name_the_input_the_rule_and_the_value():
    X, y, X_test, y_test = _problem(40)
    with pytest.raises(ParameterError, match="X_val and y_val must be given together"):
        SVMClassifier().fit(X, y, X_val=X_test)
    with pytest.raises(ParameterError, match="X_val must have the training's 20 features; got 3"):
        SVMClassifier().fit(X, y, X_val=X_test[:, :3], y_val=y_test)
    with pytest.raises(ParameterError, match="y_val must have one label per X_val row \\(60\\); got 5"):
        ELMClassifier().fit(X, y, X_val=X_test, y_val=y_test[:5])
    with pytest.raises(ParameterError, match="y must hold at least 2 classes .* got 1 class"):
        ELMClassifier().fit(X, np.zeros(len(X)))
    with pytest.raises(ParameterError, match="'solver' parameter of ELMClassifier must be"):
        ELMClassifier(solver="lstsq").fit(X, y)
    with pytest.raises(ParameterError, match="n_hidden must be a positive int or a tuple of them; got \\(10, 0\\)"):
        ELMClassifier(n_hidden=(10, 0)).fit(X, y)
    with pytest.raises(ParameterError, match="kernels must be a non-empty tuple of 'rbf', 'linear'; got \\('poly',\\)"):
        SVMClassifier(kernels=("poly",)).fit(X, y)
    with pytest.raises(ParameterError, match="gammas must hold positive floats or 'auto'; got -1"):
        SVMClassifier(gammas=(-1,)).fit(X, y)
    with pytest.raises(ParameterError, match="Cs must be a non-empty tuple of positive floats; got \\(\\)"):
        LogRegClassifier(Cs=()).fit(X, y)
