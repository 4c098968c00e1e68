"""The handling-stress check: per-cell scores, per-sample summary, and composition tests adjusted for
the donors' stress that separate a handling artefact from a real expansion."""

import numpy as np
import pandas as pd

from sscsig.design import Design
from sscsig import stats
from sscsig.stats import parent_stress, sample_stress, stress_adjusted_tests, stress_warnings

CONTRAST = {"S": {"complication": "X", "case": {"X": True}, "control": {"X": False}}}


def _cohort(seed, *, stress_in_cases: bool, true_effect: float):
    """Donors x (state E within lineage M, with sibling N); E's share rises with the donor's stress
    (a handling artefact) and/or with case status (biology). The stress covariate is measured, with
    noise, in the N cells."""
    rng = np.random.default_rng(seed)
    n_case, n_ctrl = 6, 12
    case = np.array([1] * n_case + [0] * n_ctrl)
    stress = rng.normal(0, 1, len(case)) + (2.0 * case if stress_in_cases else 0.0)
    share = 0.08 * np.exp(0.7 * stress) * np.where(case == 1, true_effect, 1.0)
    share = np.clip(share, 0.005, 0.9)
    cells = 500
    e = rng.binomial(cells, share)
    donors = [f"D{i:02d}" for i in range(len(case))]
    counts = pd.DataFrame({"E": e, "N": cells - e}, index=donors)
    covariate = pd.DataFrame({"E": stress + rng.normal(0, 0.2, len(case)), "N": rng.normal(0, 1, len(case))},
                             index=donors)
    sheet = pd.DataFrame({"sample": donors, "donor": donors, "X": case.astype(bool)})
    return counts, covariate, Design.from_sheet(sheet, contrasts=CONTRAST, complications=["X"])


def _p(counts, covariate, design):
    parents = {"E": "M", "N": "M"}
    raw = stats.test_contrast(counts, parents, design.donors, design.contrasts["S"])
    adj = stress_adjusted_tests(counts, parents, design, covariate)
    return raw.set_index("cell_state").loc["E", "pvalue"], adj.set_index("cell_state").loc["E", "pvalue_stress_adj"]


def test_stress_in_the_cases_fires_unadjusted_not_adjusted_and_a_real_effect_survives():
    artefact = [_p(*_cohort(s, stress_in_cases=True, true_effect=1.0)) for s in range(20)]
    raw, adj = np.array(artefact).T
    assert (raw < 0.05).mean() >= 0.8  # the handling artefact looks like an expansion
    assert (adj < 0.05).mean() <= 0.15  # once the stress covariate is in the model, it does not
    real = [_p(*_cohort(s, stress_in_cases=False, true_effect=3.0)) for s in range(20)]
    raw, adj = np.array(real).T
    # stress unrelated to the complication: the adjustment keeps the effect (it even removes noise)
    assert (adj < 0.05).mean() >= 0.9 and (adj < 0.05).mean() >= (raw < 0.05).mean()


def test_sample_summary_parent_covariate_and_warning():
    obs = pd.DataFrame({"sample": ["a"] * 4 + ["b"] * 4, "donor": ["d1"] * 4 + ["d2"] * 4, "batch": "B1",
                        "lineage": ["Mono", "Mono", "Mono", "T"] * 2,
                        "cell_state": ["E", "N", "N", "T1", "E", "E", "N", "T1"]})
    score = np.array([5.0, 1.0, 2.0, 0.0, 9.0, 9.0, 4.0, 0.0])
    s = sample_stress(obs, score).set_index("sample")
    assert s.loc["a", "stress_Mono"] == np.mean([5, 1, 2]) and s.loc["b", "n_Mono"] == 3
    cov = parent_stress(obs, score, {"E": "Mono", "N": "Mono", "T1": "T"})
    assert cov.loc["d1", "E"] == 1.5 and cov.loc["d2", "E"] == 4.0  # the other monocytes only
    assert cov.loc["d1", "N"] == 5.0 and np.isnan(cov.loc["d1", "T1"])
    table = pd.DataFrame({"hypothesis": ["hypothesis", "hypothesis"], "cell_state": ["E", "F"], "contrast": "S",
                          "parent": "Mono", "fdr": [0.01, 0.01], "fdr_stress_adj": [0.4, 0.02]})
    w = stress_warnings(table)
    assert len(w) == 1 and w[0].startswith("E in S (FDR 0.01)") and "sample handling" in w[0]


def test_stress_confounded_with_the_group_is_flagged_even_when_the_adjusted_test_stays_significant():
    """Every case sample stressed, no control (the demo's `stress_in`): the covariate is collinear with
    the group, so the adjusted test may keep the artefact; the group difference in the covariate is
    reported and the warning fires. Stress unrelated to the group: no warning."""
    rng = np.random.default_rng(3)
    case = np.array([1] * 4 + [0] * 17)
    donors = [f"D{i:02d}" for i in range(len(case))]
    stress = np.where(case == 1, 3.0, 0.0) + rng.normal(0, 0.1, len(case))  # a handling batch = the cases
    share = np.where(case == 1, 0.6, 0.07)  # the stressed cells look like the state
    e = rng.binomial(800, share)
    counts = pd.DataFrame({"E": e, "N": 800 - e}, index=donors)
    sheet = pd.DataFrame({"sample": donors, "donor": donors, "X": case.astype(bool)})
    design = Design.from_sheet(sheet, contrasts=CONTRAST, complications=["X"])
    parents = {"E": "M", "N": "M"}
    adj = stress_adjusted_tests(counts, parents, design, pd.DataFrame({"E": stress, "N": stress}, index=donors))
    row = adj.set_index("cell_state").loc["E"]
    assert row["stress_diff"] > 10 and row["stress_diff_pvalue"] < 0.01
    # collinear: the adjusted test is not estimable, so it cannot "fire"
    assert np.isnan(row["pvalue_stress_adj"]) and np.isnan(row["fdr_stress_adj"])
    assert row["reason_stress_adj"].startswith("not estimable: the stress covariate is collinear with the group")
    table = pd.DataFrame({"hypothesis": ["hypothesis"], "cell_state": ["E"], "contrast": "S", "parent": "M",
                          "fdr": [1e-6], **{c: [row[c]] for c in ("fdr_stress_adj", "stress_diff", "stress_diff_pvalue")}})
    w = stress_warnings(table)
    assert len(w) == 1 and "confounded" in w[0] and "Mann-Whitney p" in w[0] and "not estimable" in w[0] and "handling, not biology" in w[0]
    # with the collinearity rule off, the adjusted model keeps the artefact: adjustment alone is no guard
    loose = stress_adjusted_tests(counts, parents, design, pd.DataFrame({"E": stress, "N": stress}, index=donors),
                                  max_vif=np.inf).set_index("cell_state").loc["E"]
    assert loose["fdr_stress_adj"] < 0.05
    # stress that does not differ between the groups: no confounding flag
    calm = pd.DataFrame({"E": rng.normal(0, 1, len(case)), "N": rng.normal(0, 1, len(case))}, index=donors)
    row = stress_adjusted_tests(counts, parents, design, calm).set_index("cell_state").loc["E"]
    assert row["stress_diff_pvalue"] > 0.05 and row["fdr_stress_adj"] < 0.1
    table.loc[0, ["fdr_stress_adj", "stress_diff", "stress_diff_pvalue"]] = [row["fdr_stress_adj"], row["stress_diff"],
                                                                            row["stress_diff_pvalue"]]
    assert stress_warnings(table) == []


def test_stress_scores_need_five_genes_and_say_so():
    import anndata as ad
    import pytest

    from sscsig.errors import InputError
    from sscsig.stats import stress_scores

    rna = ad.AnnData(np.random.default_rng(0).poisson(1.0, (50, 6)).astype(np.float32),
                     var=pd.DataFrame(index=["EGR1", "FOS", "JUN", "A", "B", "C"]))
    with pytest.raises(InputError, match="only 3 of the 4 stress genes"):
        stress_scores(rna, ["EGR1", "FOS", "JUN", "IER2"])
    score, used = stress_scores(rna, ["EGR1", "FOS", "JUN", "A", "B", "ZZZ"])
    assert used == ["EGR1", "FOS", "JUN", "A", "B"] and score.shape == (50,) and np.isfinite(score).all()
