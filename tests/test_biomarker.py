"""Blood biomarker models: no leakage from the test folds, seeded, the fast path equals scikit-learn,
permutation p-values, and clear errors when a saved model scores new cells."""

import numpy as np
import pandas as pd
import pytest

from sscsig.stats import _biomarker as B


def _noise(seed, n_case=8, n_control=12, n_features=2000):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_case + n_control, n_features)), np.array([1] * n_case + [0] * n_control)


def test_selection_inside_the_folds_keeps_noise_at_chance_and_outside_would_not():
    """1,000 pure-noise features, 20 donors: the nested procedure (selection inside the training
    folds) stays near AUC 0.5 (slightly below on average: with ~20 donors cross-validated AUCs under
    the null are biased a little downwards, the permutation p-value accounts for it; leakage would
    push it up); selecting the top features once on all donors, then cross-validating, finds
    'signal' that is not there."""
    from sklearn.feature_selection import f_classif

    inside, outside = [], []
    for seed in range(10):
        x, y = _noise(seed, n_features=1000)
        inside.append(B.auc(y, B.nested_cv(x, y, seed=seed)["probability"]))
        f, _ = f_classif(x, y)
        top = np.argsort(f)[-10:]  # leaky: chosen with the test donors' labels
        outside.append(B.auc(y, B.nested_cv(x[:, top], y, n_features=(10,), seed=seed)["probability"]))
    assert 0.35 < np.mean(inside) < 0.6, inside
    assert np.mean(outside) > 0.85 and np.mean(outside) - np.mean(inside) > 0.3, (inside, outside)


def test_a_real_signal_is_found_and_its_permutation_p_is_small():
    rng = np.random.default_rng(1)
    x, y = _noise(1, n_features=30)
    x[:, 0] += 2.0 * y + rng.normal(0, 0.3, len(y))
    res = B.nested_cv(x, y, seed=0)
    a = B.auc(y, res["probability"])
    p, null = B.permutation_pvalue(x, y, a, n_permutations=200, seed=0)
    assert a > 0.9 and p <= 2 / 201 and abs(np.mean(null) - 0.5) < 0.1
    assert res["selected"][:, 0].all()  # the informative feature is kept in every fold


def test_seeded_same_seed_same_result_other_seed_differs():
    x, y = _noise(3, n_features=40)
    a = B.nested_cv(x, y, seed=5)
    b = B.nested_cv(x, y, seed=5)
    c = B.nested_cv(x, y, seed=6)
    assert np.array_equal(a["probability"], b["probability"]) and np.array_equal(a["fold"], b["fold"])
    assert not np.array_equal(a["probability"], c["probability"])
    p1, _ = B.permutation_pvalue(x, y, 0.6, n_permutations=50, seed=2)
    p2, _ = B.permutation_pvalue(x, y, 0.6, n_permutations=50, seed=2, n_jobs=2)
    assert p1 == p2  # the same permutations whether run in one process or two


def test_fast_path_equals_the_scikit_learn_pipeline_it_saves():
    from sklearn.linear_model import LogisticRegression

    x, y = _noise(4, n_features=25)
    x[:, 3] += y
    x[2, 5] = np.nan  # imputed with the training median in both
    train, test = np.r_[0:6, 9:20], np.r_[6:9]
    p, support, _ = B._fold_predict(x, y, train, test, n_features=(1, 3, 10), Cs=(0.1, 1.0, 10.0), inner_folds=3,
                                    seed=0)
    model = B.make_model(x[train], y[train], seed=0)
    assert np.array_equal(model.named_steps["select"].get_support(), support)
    assert np.allclose(model.predict_proba(x[test])[:, 1], p, atol=1e-5)
    z = np.random.default_rng(0).normal(size=(16, 4))
    yz = np.array([1] * 5 + [0] * 11)
    for c in (0.1, 1.0, 10.0):
        w, b = B.logistic_l2(z, yz, c)
        ref = LogisticRegression(C=c, solver="liblinear", tol=1e-10, max_iter=10000).fit(z, yz)
        assert np.allclose(w, ref.coef_[0], atol=1e-4) and np.isclose(b, ref.intercept_[0], atol=1e-4)


def test_stratified_folds_are_scikit_learns():
    """The fast split gives StratifiedKFold's folds (shuffled, seeded) for binary labels of every
    size, class balance and first label the biomarker loops meet."""
    import warnings

    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(4, 40))
        y = rng.permutation(np.r_[np.ones(int(rng.integers(1, n)), int), np.zeros(n, int)][:n])
        k, seed = int(rng.integers(2, 6)), int(rng.integers(0, 1000))
        if k > max(y.sum(), n - y.sum()) or k > n:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a class smaller than k
            ref = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y))
        ours = B.stratified_folds(y, n_splits=k, seed=seed)
        assert len(ours) == len(ref)
        for (tr, te), (rtr, rte) in zip(ours, ref):
            assert np.array_equal(tr, rtr) and np.array_equal(te, rte)
        checked += 1
    assert checked > 200


def test_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    y = np.array([1, 0, 1, 0, 0, 1, 0])
    s = np.array([0.3, 0.3, 0.9, 0.1, 0.5, 0.5, 0.2])
    assert np.isclose(B._auc_fast(y, s), roc_auc_score(y, s))
    assert B.auc(y, s) == B._auc_fast(y, s)
    # scores a rounding error apart are tied: a coefficient of ~1e-17 on a feature without signal
    assert B._auc_fast(np.array([1, 0]), np.array([0.4, 0.4 + 1e-16])) == 0.5
    assert B._auc_fast(np.array([1, 0]), np.array([0.4, 0.4 + 1e-6])) == 0.0
    stack = B._auc_stack(np.array([y, y[::-1]]), np.array([s, s + 2e-16 * y[::-1]]))  # cases nudged up
    assert stack[0] == B._auc_fast(y, s) and stack[1] == B._auc_fast(y[::-1], s)


def test_stacked_permutations_equal_the_nested_cv_loop():
    """The permutation test's null AUCs, computed for many label vectors at once, are exactly the
    AUCs of :func:`nested_cv` run on each: unbalanced classes, missing values, a binary covariate,
    fewer features than the largest ``n_features``, 2-fold inner CVs, and with 2 cases inner
    training folds without a case (skipped)."""
    for seed, (n_case, n_control, p, nan_share) in enumerate([(8, 12, 30, 0.0), (4, 17, 26, 0.05), (10, 7, 2, 0.0),
                                                               (3, 3, 4, 0.0), (2, 9, 5, 0.0)]):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n_case + n_control, p))
        y = rng.permutation(np.array([1] * n_case + [0] * n_control))
        x[:, 0] += y
        x[:, 1] = rng.integers(0, 2, len(y))  # sex-like: constant in some training folds
        x[rng.random(x.shape) < nan_share] = np.nan
        ys = np.array([np.random.default_rng([seed, i]).permutation(y) for i in range(40)])
        loop = np.array([B.auc(v, B.nested_cv(x, v, seed=seed)["probability"]) for v in ys])
        assert np.array_equal(B.nested_cv_auc_stack(x, ys, seed=seed), loop, equal_nan=True), seed
        p1, null = B.permutation_pvalue(x, y, 0.6, n_permutations=40, seed=seed)
        p2, null2 = B.permutation_pvalue(x, y, 0.6, n_permutations=40, seed=seed, chunk=7)
        assert np.array_equal(null, loop) and np.array_equal(null2, loop) and p1 == p2
    with pytest.raises(ValueError, match="same number of cases"):
        B.nested_cv_auc_stack(x, np.array([y, np.ones_like(y)]))


def _cohort(seed=0, n=24):
    """Donor x state counts with one state expanded in cases, signature scores, a design."""
    from sscsig.design import Design

    rng = np.random.default_rng(seed)
    donors = [f"D{i:02d}" for i in range(n)]
    case = np.array([i < 8 for i in range(n)])
    counts = pd.DataFrame({"A": rng.poisson(np.where(case, 60, 20)), "B": rng.poisson(200, n),
                           "C": rng.poisson(100, n), "D": rng.poisson(100, n)}, index=donors)
    parents = {"A": "L1", "B": "L1", "C": "L2", "D": "L2"}
    scores = pd.DataFrame({"donor": donors, "signature": "S", "score": rng.normal(0, 1, n) + case})
    sheet = pd.DataFrame({"sample": donors, "donor": donors, "X": case, "age": rng.integers(30, 80, n),
                          "sex": rng.choice(["F", "M"], n)})
    design = Design.from_sheet(sheet, contrasts={"X_vs_no": {"complication": "X", "case": {"X": True},
                                                             "control": {"X": False}}}, complications=["X"])
    return counts, parents, scores, design


def test_biomarker_complication_tables_and_note():
    counts, parents, scores, design = _cohort()
    res = B.biomarker_complication(counts, parents, scores, design, "X", n_permutations=1000, n_bootstrap=500)
    m = res["metrics"].set_index("model")
    assert list(res["metrics"].columns) == B.METRIC_COLUMNS
    assert m.loc["signature", "auc"] > 0.85 and m.loc["signature", "perm_pvalue"] < 0.01
    assert m.loc["signature", "auc_ci_low"] <= m.loc["signature", "auc"] <= m.loc["signature", "auc_ci_high"]
    assert m.loc["baseline", "perm_pvalue"] > 0.01  # age and sex carry no signal here
    assert "exploratory" in m.loc["signature", "note"]  # 8 vs 16 donors
    assert set(res["predictions"]["donor"]) == set(counts.index) and res["predictions"]["fold"].nunique() == 5
    feats = res["features"][res["features"]["model"] == "signature"]
    assert feats.iloc[0]["feature"] in ("share:A", "share:B", "sig:S")  # what moved is what it uses
    assert {"PC1", "PC2", "X"} <= set(res["pca"].columns)
    assert "X_vs_no" in res["models"]


def test_predict_scores_new_cells_and_refuses_what_it_cannot_compute(tmp_path):
    import anndata as ad

    from sscsig.errors import InputError

    counts, parents, scores, design = _cohort()
    res = B.biomarker_complication(counts, parents, None, design, "X", n_permutations=1000, n_bootstrap=100)
    B.save_model(res["models"]["X_vs_no"], tmp_path / "m", features=list(res["feature_table"].columns),
                 states=list(counts.columns), parents=parents, signatures={}, pseudocount=0.5,
                 min_cells_per_donor=5, contrast="X_vs_no", complication="X")
    model, desc = B.load_model(tmp_path / "m")
    rng = np.random.default_rng(9)
    n = 400
    obs = pd.DataFrame({"sample": np.repeat(["s1", "s2"], n // 2),
                        "cell_state": rng.choice(["A", "B", "C", "D"], n, p=[0.3, 0.3, 0.2, 0.2])},
                       index=[f"c{i}" for i in range(n)])
    rna = ad.AnnData(np.zeros((n, 3), np.float32), obs=obs)
    out = B.predict_samples(model, desc, obs, rna)
    assert list(out["sample"]) == ["s1", "s2"] and out["probability"].between(0, 1).all()
    with pytest.raises(InputError, match=r"states the model does not know: \['E'\]"):
        B.predict_samples(model, desc, obs.assign(cell_state=obs["cell_state"].replace("D", "E")), rna)
    desc2 = {**desc, "features": desc["features"] + ["sig:NOPE"]}
    with pytest.raises(InputError, match="cannot be computed.*sig:NOPE"):
        B.predict_samples(model, desc2, obs, rna)
    with pytest.raises(InputError, match="has no model.joblib"):
        B.load_model(tmp_path)


def test_covariate_features_keep_a_numeric_covariate_with_a_missing_value_numeric():
    donors = pd.DataFrame({"age": [50, np.nan, 70], "sex": ["F", "M", "F"]}, index=["a", "b", "c"])
    f = B.covariate_features(donors)
    assert list(f.columns) == ["age", "sex_M"] and np.isnan(f.loc["b", "age"]) and f.loc["c", "age"] == 70
