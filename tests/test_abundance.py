import numpy as np
import pandas as pd
import pytest

from sscsig.design import Design, contrast_groups, donor_table
from sscsig.errors import InputError
from sscsig.stats import differential_abundance, quasi_poisson_test


def _design(sheet, contrasts=None):
    return Design.from_sheet(sheet, contrasts=contrasts or CONTRAST, complications=["SRC"])


def _cohort(rng, effect, n_case=6, n_ctrl=10, cells=400):
    donors, rows = [], []
    for i in range(n_case + n_ctrl):
        case = i < n_case
        d = f"D{i:02d}"
        donors.append({"sample": d + "_s", "donor": d, "batch": "b", "group": "SSc", "SRC": case,
                       "age": float(rng.integers(40, 80))})
        p = 0.1 * np.exp(rng.normal(0, 0.3)) * (effect if case else 1.0)
        k = rng.binomial(cells, p)
        m = rng.binomial(cells, 0.3)
        rows += [(d, "A", "L1", "L")] * k + [(d, "B", "L1", "L")] * (cells - k)
        rows += [(d, "C", "L2", "M")] * m + [(d, "D", "L2", "M")] * (cells - m)
    obs = pd.DataFrame(rows, columns=["donor", "cell_state", "lineage", "x"])
    return obs, pd.DataFrame(donors)


CONTRAST = {"T": {"complication": "SRC", "case": {"SRC": True}, "control": {"SRC": False}, "covariates": ["age"]}}


def test_detects_planted_effect_with_right_sign_and_ci():
    obs, sheet = _cohort(np.random.default_rng(0), effect=3.0)
    counts, res = differential_abundance(obs, _design(sheet))
    within = res[res.denominator == "parent"].set_index("cell_state")
    a = within.loc["A"]
    assert a.testable and a.pvalue < 0.001 and a.fdr < 0.01
    assert a.ci_low < np.log2(3.0) < a.ci_high and a.log2fc > 1
    assert within.loc["C"].pvalue > 0.01
    assert counts.loc["D00"].sum() == 800
    # share of all cells: A still up; the parent-level test is the sharper one
    every = res[res.denominator == "all"].set_index("cell_state")
    assert every.loc["A"].log2fc > 0.8 and every.loc["A"].pvalue < 0.01
    assert every.loc["A"].prop_case < a.prop_case  # a share of all cells is smaller than of the parent
    assert len(res) == 8 and set(res.denominator) == {"parent", "all"}


def test_null_is_calibrated():
    pvals = []
    for seed in range(150):
        obs, sheet = _cohort(np.random.default_rng(seed), effect=1.0, n_case=4, n_ctrl=17)
        _, res = differential_abundance(obs, _design(sheet))
        pvals.append(res[res.denominator == "parent"].set_index("cell_state").loc["A"].pvalue)
    rate = np.mean(np.array(pvals) < 0.05)
    assert rate <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 150)  # within Monte-Carlo error


def test_too_few_donors_gives_reason_not_pvalue():
    obs, sheet = _cohort(np.random.default_rng(1), effect=2.0, n_case=2, n_ctrl=10)
    _, res = differential_abundance(obs, _design(sheet))
    assert not res.testable.any()
    assert res.pvalue.isna().all() and res.fdr.isna().all()
    assert res.reason.str.contains("too few donors").all()


def test_contrast_errors_name_the_problem():
    sheet = pd.DataFrame({"sample": ["a", "b"], "donor": ["x", "y"], "group": ["SSc", "HD"], "SRC": [True, False]})
    donors = donor_table(sheet, ["group", "SRC"])
    with pytest.raises(InputError, match="unknown sample-sheet column 'ILD'"):
        contrast_groups(donors, "c", {"case": {"ILD": True}, "control": {"group": "HD"}})
    with pytest.raises(InputError, match="value 'Healthy' never occurs in column 'group'"):
        contrast_groups(donors, "c", {"case": {"SRC": True}, "control": {"group": "Healthy"}})
    conflicting = pd.DataFrame({"sample": ["a", "b"], "donor": ["x", "x"], "age": [50, 51]})
    with pytest.raises(InputError, match="donor 'x' has conflicting values in column 'age'"):
        donor_table(conflicting, ["age"])


def test_zero_cells_in_one_group_still_finite():
    y = np.array([0, 0, 0, 5, 7, 6, 4])
    n = np.full(7, 200)
    x = pd.DataFrame({"const": 1.0, "case": [1, 1, 1, 0, 0, 0, 0]})
    r = quasi_poisson_test(y, n, x)
    assert np.isfinite(r["beta"]) and r["beta"] < 0 and "0.5 added" in r["note"]


def _demo_tests(seed, *, null, src_oldest=False, covariates=("age",)):
    import yaml
    from pathlib import Path

    from sscsig.demo import STATE_LINEAGE, DemoParams, simulate_state_counts
    from sscsig.stats import test_contrast

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
    counts, sheet = simulate_state_counts(DemoParams(seed=seed, cells_per_donor=800, null=null,
                                                     src_oldest=src_oldest))
    contrasts = {name: {**cfg["contrasts"][name], "covariates": list(covariates)}
                 for name in ("SRC_vs_SSc", "ILD_vs_SSc")}
    design = Design.from_sheet(sheet, contrasts=contrasts, complications=["SRC", "ILD"])
    return pd.concat([test_contrast(counts, dict(STATE_LINEAGE), design.donors, c)
                      for c in design.contrasts.values()])


def test_demo_design_null_is_calibrated_and_default_effects_are_found():
    """The study's design (4 vs 17, 10 vs 7) on the simulator's true states: null p-values are
    calibrated over 30 seeds; the planted states are the top hits with the default effects."""
    null = pd.concat([_demo_tests(s, null=True) for s in range(500, 530)])
    t = null[null.testable]
    rate = (t.pvalue < 0.05).mean()
    assert rate <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / len(t))
    hits = 0
    for s in range(500, 510):
        r = _demo_tests(s, null=False).set_index(["contrast", "cell_state"])
        hits += r.loc[("SRC_vs_SSc", "CD14.EGR1"), "fdr"] < 0.1
        hits += r.loc[("ILD_vs_SSc", "CD8.TEM_T2ISG"), "fdr"] < 0.1
    assert hits >= 14  # of 20 (power ~0.9 each at the default x3 effects; benchmarks/calibration.py)


def test_age_in_the_design_keeps_an_age_driven_state_out_of_src():
    """SRC donors the oldest (simulator's src_oldest), nothing planted: CD8.Naive falls with age.
    With age in the design it is not an SRC hit; without age it is biased (lower in SRC)."""
    with_age, without = [], []
    for s in range(600, 620):
        for cov, store in ((("age",), with_age), ((), without)):
            r = _demo_tests(s, null=True, src_oldest=True, covariates=cov)
            row = r[(r.contrast == "SRC_vs_SSc") & (r.cell_state == "CD8.Naive")].iloc[0]
            store.append((row.pvalue, row.log2fc, row.fdr))
    w, wo = np.array(with_age), np.array(without)
    assert (w[:, 2] < 0.1).mean() <= 0.05
    assert (w[:, 0] < 0.05).mean() <= 0.15
    assert np.median(wo[:, 1]) < np.median(w[:, 1]) - 0.2  # the unadjusted estimate carries the age effect


def _batched(rng, *, share, n_per_batch=8, batches=("b1", "b2", "b3"), src_per_batch=(2, 2, 2), cells=300):
    """Donor x state counts of one lineage (states A and B), the donors' batches and design table;
    ``share(batch, src)`` is the expected share of A (donors' shares scattered log-normal, SD 0.3)."""
    counts, donors, batch = {}, {}, {}
    for b, n_src in zip(batches, src_per_batch):
        for i in range(n_per_batch):
            d = f"{b}_{i}"
            src = i < n_src
            p = min(0.9, share(b, src) * np.exp(rng.normal(0, 0.3)))
            k = rng.binomial(cells, p)
            counts[d] = {"A": k, "B": cells - k}
            donors[d] = {"group": "SSc" if i % 4 else "HD", "SRC": src}
            batch[d] = b
    return (pd.DataFrame.from_dict(counts, orient="index"), {"A": "L", "B": "L"}, pd.Series(batch),
            pd.DataFrame.from_dict(donors, orient="index"))


def test_batch_check_flags_calls_that_follow_the_batches_not_the_design():
    """A state whose calls are 4x as common in one batch is flagged; one whose share follows SRC, with
    the SRC donors gathered in one batch, is flagged only when SRC is left out of the design; under the
    null the test holds its level; a batch that is the design cannot be judged."""
    from sscsig.stats import batch_association

    rng = np.random.default_rng(0)
    counts, parents, batch, donors = _batched(rng, share=lambda b, src: 0.2 if b == "b2" else 0.05)
    res = batch_association(counts, parents, batch, donors, columns=["group", "SRC"]).set_index("cell_state")
    assert res.loc["A", "testable"] and res.loc["A", "fdr"] < 0.001 and res.loc["A", "n_batches"] == 3
    shares = dict(part.split(": ") for part in res.loc["A", "share_per_batch"].split("; "))
    assert float(shares["b2"]) > 3 * max(float(shares["b1"]), float(shares["b3"]))

    # SRC raises A, and 6 of batch 1's 8 donors have SRC: a batch difference that the design explains
    counts, parents, batch, donors = _batched(rng, share=lambda b, src: 0.3 if src else 0.05, src_per_batch=(6, 1, 1))
    naive = batch_association(counts, parents, batch, donors, columns=[]).set_index("cell_state")
    assert naive.loc["A", "pvalue"] < 0.05, naive.loc["A", "pvalue"]
    adjusted = batch_association(counts, parents, batch, donors, columns=["group", "SRC"]).set_index("cell_state")
    assert adjusted.loc["A", "testable"] and adjusted.loc["A", "pvalue"] > 0.2, adjusted.loc["A", "pvalue"]

    p = []
    for _ in range(200):
        counts, parents, batch, donors = _batched(rng, share=lambda b, src: 0.1)
        p.append(batch_association(counts, parents, batch, donors, columns=["group", "SRC"])["pvalue"].iloc[0])
    p = np.array(p)
    assert np.isfinite(p).all() and 0.01 <= (p < 0.05).mean() <= 0.08 and 0.35 <= (p < 0.5).mean() <= 0.65

    donors["group"] = batch.map({"b1": "HD", "b2": "SSc", "b3": "SSc"}) + np.where(batch == "b3", "x", "")
    res = batch_association(counts, parents, batch, donors, columns=["group"])
    assert not res["testable"].any() and res["reason"].str.startswith("batch confounded with the design").all()
    assert res["pvalue"].isna().all()


def test_batch_check_leaves_out_donors_across_batches_and_small_batches():
    from sscsig.stats import batch_association, donor_batches

    samples = pd.DataFrame({"sample": ["a1", "a2", "b1", "c1"], "donor": ["A", "A", "B", "C"],
                            "batch": ["r1", "r2", "r1", "r2"], "in_group_tests": [True, True, True, False]})
    got = donor_batches(samples)
    assert np.isnan(got["A"]) and got["B"] == "r1" and "C" not in got  # C's only sample is not in the tests
    rng = np.random.default_rng(1)
    counts, parents, batch, donors = _batched(rng, share=lambda b, src: 0.1, n_per_batch=6)
    batch.iloc[:4] = "b9"  # a fourth batch of three donors, and one of a single donor
    batch.iloc[0] = "lone"
    res = batch_association(counts, parents, batch, donors, columns=["group", "SRC"], min_donors_per_batch=2)
    row = res.set_index("cell_state").loc["A"]
    assert row["n_donors"] == len(counts) - 1 and row["n_batches"] == 4 and "lone" not in row["share_per_batch"]


def test_batch_warnings_name_flagged_states_that_the_table_reports(caplog):
    from sscsig.stats import batch_warnings, log_batch_check

    batch = pd.DataFrame({"cell_state": ["X", "Y", "Z"], "parent": ["Mono"] * 3, "testable": [True, True, False],
                          "fdr": [0.001, 0.002, np.nan], "f_statistic": [20.0, 15.0, np.nan],
                          "share_per_batch": ["r1: 0.010; r2: 0.150"] * 3})
    table = pd.DataFrame({"cell_state": ["X", "Y", "Z", "W"], "contrast": "c", "fdr": [0.5, 0.01, 0.01, 0.01],
                          "hypothesis": ["hypothesis", "discovery", "discovery", "discovery"]})
    out = batch_warnings(table, batch, fdr=0.1)
    assert len(out) == 2 and out[0].startswith("X: its share of Mono differs between batches") and "r2: 0.150" in out[0]
    assert out[1].startswith("Y:")  # W is not flagged, Z not testable
    assert "annotation.substate_group_key: batch" in out[0]  # the remedy for a programme substate, named
    assert batch_warnings(table.assign(fdr=0.5, hypothesis="discovery"), batch) == []
    with caplog.at_level("INFO", logger="sscsig"):
        assert log_batch_check(batch, fdr=0.1, columns=["group", "SRC"]) == ["X", "Y"]
    assert "2 of 3 states testable; 2 follow the batches beyond group, SRC" in caplog.text
    assert [r.levelname for r in caplog.records].count("WARNING") == 2 and "X's share of Mono" in caplog.text
    assert "annotation.substate_group_key: batch fits its background per batch" in caplog.text


def test_batch_plot_shows_the_states_the_check_ranks_first(tmp_path, monkeypatch):
    import matplotlib.axes

    from sscsig.report import batch_plot
    from sscsig.stats import batch_association

    rng = np.random.default_rng(2)
    counts, parents, batch, donors = _batched(rng, share=lambda b, src: 0.2 if b == "b2" else 0.05)
    counts["C"], counts["D"] = rng.binomial(200, 0.3, len(counts)), 0
    counts["D"] = 200 - counts["C"]
    parents |= {"C": "M", "D": "M"}
    check = batch_association(counts, parents, batch, donors, columns=["group", "SRC"])
    titles = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda ax, t, **kw: titles.append((t, kw.get("color"))))
    batch_plot(check, counts, batch, tmp_path / "b.png", fdr=0.1, top=3)
    assert (tmp_path / "b.png").stat().st_size > 5_000
    # A and its complement B (a lineage of two states) are flagged, in red; C, of another lineage, is not
    assert len(titles) == 3 and {t.split("\n")[0] for t, _ in titles[:2]} == {"A", "B"}
    assert [c for _, c in titles] == ["tab:red", "tab:red", "k"] and titles[2][0].startswith("C\nFDR")
    batch_plot(check.iloc[:0], counts, batch, tmp_path / "none.png")
    assert (tmp_path / "none.png").stat().st_size > 2_000
