"""Antibody panels that differ between samples (qc.panel_policy): which antibodies the cohort keeps,
missing values rather than zeros where a sample did not measure one, scores and gates that use an
antibody only where it was measured, and the report of the evidence each label loses."""

from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]


def test_panel_plan_keeps_what_each_policy_promises():
    from sscsig.errors import InputError
    from sscsig.protein import panel_plan

    panels = {"s1": ["A", "B", "C", "D"], "s2": ["A", "B", "C"], "s3": ["A", "B"], "s4": ["A", "E"]}
    inter = panel_plan(panels, policy="intersection")
    assert inter.index[inter["kept"]].tolist() == ["A"]
    assert inter.at["B", "s1"] == "measured, dropped" and inter.at["B", "s4"] == "not measured"
    major = panel_plan(panels, policy="majority", min_fraction=0.5)  # in >= 2 of 4 samples
    assert major.index[major["kept"]].tolist() == ["A", "B", "C"]
    assert major.at["C", "s3"] == "not measured, kept as missing" and major.at["D", "s1"] == "measured, dropped"
    assert major["n_samples"].to_dict() == {"A": 4, "B": 3, "C": 2, "D": 1, "E": 1}
    assert panel_plan(panels, policy="majority", min_fraction=0.75)["kept"].sum() == 2  # A, B
    assert panel_plan(panels, policy="union")["kept"].all()
    with pytest.raises(InputError, match="panel_policy"):
        panel_plan(panels, policy="most")
    with pytest.raises(InputError, match="panel_min_fraction"):
        panel_plan(panels, policy="majority", min_fraction=0)


def _sample(name: str, antibodies: list[str], n: int, seed: int, *, dsb: bool = True) -> md.MuData:
    rng = np.random.default_rng(seed)
    obs = pd.DataFrame({"sample": name}, index=[f"{name}_{i}" for i in range(n)])
    rna = ad.AnnData(sp.csr_matrix(rng.poisson(1.0, (n, 5)).astype(np.float32)), obs=obs.copy(),
                     var=pd.DataFrame(index=[f"G{i}" for i in range(5)]))
    counts = rng.poisson(20, (n, len(antibodies))).astype(np.float32)
    prot = ad.AnnData(sp.csr_matrix(counts), obs=obs.copy(),
                      var=pd.DataFrame({"antibody": antibodies, "isotype": [a.startswith("Iso") for a in antibodies]},
                                       index=[f"ADT_{a}" for a in antibodies]))
    if dsb:
        prot.layers["dsb"] = rng.normal(0, 1, counts.shape).astype(np.float32)
    m = md.MuData({"rna": rna, "prot": prot})
    m.obs["sample"] = name
    return m


def test_majority_merge_marks_unmeasured_antibodies_missing_not_zero():
    from sscsig.integrate._integrate import normalise
    from sscsig.protein import clr_per_cell, complete_panel, normalised_protein
    from sscsig.qc import merge_samples
    from sscsig.qc._merge import cohort_warnings

    full = ["CD3", "CD4", "CD8", "CD14", "IsoG1"]
    samples = {"s1": _sample("s1", full, 30, 1), "s2": _sample("s2", full, 20, 2),
               "s3": _sample("s3", ["CD3", "CD8", "CD14", "IsoG1", "CD99"], 25, 3)}
    sheet = pd.DataFrame({"sample": ["s1", "s2", "s3"], "donor": ["d1", "d2", "d3"], "batch": ["b", "b", "b"],
                          "path": ["", "", ""]})
    inter, rep_i = merge_samples(samples, sheet, panel_policy="intersection")
    assert inter["prot"].var_names.tolist() == ["ADT_CD3", "ADT_CD8", "ADT_CD14", "ADT_IsoG1"]
    assert "protein_measured" not in inter["prot"].obsm and complete_panel(inter["prot"]).all()
    assert rep_i["panel_by_sample"] == {"s1": {"dropped": ["ADT_CD4"], "missing": []},
                                        "s2": {"dropped": ["ADT_CD4"], "missing": []},
                                        "s3": {"dropped": ["ADT_CD99"], "missing": []}}

    mdata, rep = merge_samples(samples, sheet, panel_policy="majority")
    prot = mdata["prot"]
    assert prot.var_names.tolist() == ["ADT_CD3", "ADT_CD4", "ADT_CD8", "ADT_CD14", "ADT_IsoG1"]  # CD99: 1 of 3
    assert prot.var["n_samples_measured"].tolist() == [3, 2, 3, 3, 3]
    assert complete_panel(prot).tolist() == [True, False, True, True, True]
    measured = prot.obsm["protein_measured"]
    in_s3 = (mdata.obs["sample"] == "s3").to_numpy()
    assert (~measured["ADT_CD4"].to_numpy() == in_s3).all() and measured.drop(columns="ADT_CD4").all().all()
    cd4 = prot.var_names.get_loc("ADT_CD4")
    assert np.isnan(prot.layers["dsb"][in_s3, cd4]).all() and not np.isnan(prot.layers["dsb"][~in_s3]).any()
    assert rep["panel_by_sample"] == {"s3": {"dropped": ["ADT_CD99"], "missing": ["ADT_CD4"]}}
    assert any("s3" in w and "CD4" in w and "missing values" in w and "CD99" in w for w in cohort_warnings(rep))
    # the merge says what the start-up check said, sentence for sentence (one builder)
    from sscsig.io import panel_warnings
    panels = {"s1": full, "s2": full, "s3": ["CD3", "CD8", "CD14", "IsoG1", "CD99"]}
    assert cohort_warnings(rep) == panel_warnings(panels, panel_policy="majority")
    assert cohort_warnings(rep_i) == panel_warnings(panels, panel_policy="intersection")
    plan = pd.DataFrame(rep["panel"]).set_index("antibody")
    assert plan.at["ADT_CD99", "s3"] == "measured, dropped" and plan.at["ADT_CD4", "s3"] == "not measured, kept as missing"

    # CLR: NaN where unmeasured; a shared antibody's value is centred on the shared antibodies only, so it
    # does not depend on whether the cell's sample had more antibodies
    normalise(mdata)
    clr = prot.layers["clr"]
    assert np.isnan(clr[in_s3, cd4]).all() and np.isfinite(clr[~in_s3]).all()
    shared = complete_panel(prot)
    expected = clr_per_cell(prot.layers["counts"][:, shared])
    np.testing.assert_allclose(clr[:, shared], expected, rtol=1e-5, atol=1e-5)
    # the embedding's input has no missing values: the antibodies every sample has, without isotypes
    values, names, layer = normalised_protein(prot)
    assert layer == "dsb" and names.tolist() == ["ADT_CD3", "ADT_CD8", "ADT_CD14"] and np.isfinite(values).all()


def _scorer(layer_values: np.ndarray, antibodies: list[str], centre: str = "mean"):
    from sscsig.annotate._markers import _Scorer

    n = layer_values.shape[0]
    prot = ad.AnnData(np.zeros(layer_values.shape), var=pd.DataFrame({"antibody": antibodies},
                                                                     index=[f"ADT_{a}" for a in antibodies]))
    prot.layers["clr"] = layer_values.astype(float)
    prot.layers["dsb"] = layer_values.astype(float)
    rna = ad.AnnData(sp.csr_matrix((n, 2)), var=pd.DataFrame(index=["G1", "G2"]))
    return _Scorer(md.MuData({"rna": rna, "prot": prot}), seed=0, min_genes=1, centre=centre)


def test_scores_and_gate_use_an_antibody_only_where_it_was_measured():
    from sscsig.annotate._markers import lineage_gate

    nan = np.nan
    # CD3, CD8, CD4; cells 3-5 come from a sample without the CD8 antibody
    x = np.array([[20, 15, 1], [20, 1, 12], [1, 1, 1],
                  [20, nan, 1], [20, nan, 12], [1, nan, 1]])
    scorer = _scorer(x, ["CD3", "CD8", "CD4"])
    cd8, _ = lineage_gate(scorer, {"protein_pos": ["CD8"], "protein_neg": ["CD4"]}, layer="dsb", min_value=6)
    # unmeasured CD8 neither admits nor excludes; a measured CD4 still excludes
    assert cd8.tolist() == [True, False, False, True, False, True]
    cd4, _ = lineage_gate(scorer, {"protein_pos": ["CD4"], "protein_neg": ["CD8"]}, layer="dsb", min_value=6)
    assert cd4.tolist() == [False, True, False, False, True, False]
    rows = np.arange(6)
    # score_centre: otsu (each antibody centred at its Otsu boundary) over the cells that measured it
    from sscsig.annotate._markers import _boundary_z

    s = _scorer(x, ["CD3", "CD8", "CD4"], centre="otsu").score({"protein_pos": ["CD3", "CD8"]}, rows)
    b3, b8 = _boundary_z(x[:, [0]])[:, 0], _boundary_z(x[:3, [1]])[:, 0]
    np.testing.assert_allclose(s[:3], (b3[:3] + b8) / 2)
    np.testing.assert_allclose(s[3:], b3[3:])
    assert s[0] > 0 > s[2] and np.isnan(_boundary_z(x[:, [1]])[3:]).all()
    # z-scores (the default): the same rule, exact numbers
    s = scorer.score({"protein_pos": ["CD3", "CD8"]}, rows)
    # without CD8 the component is the mean of the measured markers (CD3), z-scored over the cells that have it
    z3 = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std()
    m8 = x[:3, 1]
    z8 = (m8 - m8.mean()) / m8.std()
    np.testing.assert_allclose(s[:3], (z3[:3] + z8) / 2)
    np.testing.assert_allclose(s[3:], z3[3:])
    only_cd8 = scorer.score({"protein_pos": ["CD8"], "protein_neg": ["CD4"]}, rows)
    assert np.isfinite(only_cd8).all()
    z4 = (x[:, 2] - x[:, 2].mean()) / x[:, 2].std()
    np.testing.assert_allclose(only_cd8[3:], (0 - z4[3:]) / 2)  # no CD8 value: that component is neutral (0)


def test_panel_evidence_names_the_labels_that_lose_an_antibody():
    from sscsig.annotate import load_markers, panel_evidence
    from sscsig.protein import panel_plan

    markers = load_markers(ROOT / "config/markers.yaml")
    panels = {"s1": ["ADT_CD3", "ADT_CD4", "ADT_CD8", "ADT_CD19", "ADT_CD14"],
              "s2": ["ADT_CD3", "ADT_CD4", "ADT_CD8", "ADT_CD14"], "s3": ["ADT_CD3", "ADT_CD8", "ADT_CD14"]}
    plan = panel_plan(panels, policy="majority", min_fraction=0.5)
    plan.insert(0, "target", [a.removeprefix("ADT_") for a in plan.index])
    ev = panel_evidence(markers, plan)
    b = ev[(ev.label == "B") & (ev.marker == "CD19")]
    assert b.status.tolist() == ["dropped"] and b.samples_without.tolist() == ["s2,s3"]
    cd4 = ev[(ev.label == "CD4_T") & (ev.marker == "CD4")]
    assert cd4.status.tolist() == ["missing in some samples"] and cd4.samples_without.tolist() == ["s3"]
    assert cd4.n_samples_without.tolist() == [1]
    assert not ev[(ev.marker == "CD3")].shape[0]  # measured everywhere: nothing lost
    assert (ev[ev.marker == "HLA-DR"].status == "not in any panel").all()
    assert ev.label.str.contains("/").any()  # states are covered, not only lineages


def test_start_up_warning_says_what_the_policy_does_per_sample():
    from sscsig.io import panel_warnings

    panels = {"s1": ["CD3", "CD4", "CD20"], "s2": ["CD3", "CD4"], "s3": ["CD3", "CD20"]}
    inter = panel_warnings(panels, panel_policy="intersection")
    assert len(inter) == 3 and all(w.endswith("dropped from the whole cohort") for w in inter), inter
    assert inter[1] == ("sample 's2' lacks 1 antibodies other samples have (CD20); qc.panel_policy = "
                        "intersection: CD4, CD20 dropped from the whole cohort"), inter
    major = panel_warnings(panels, panel_policy="majority")
    assert any(w.startswith("sample 's2' lacks 1") and "CD20 kept as missing" in w for w in major)
    assert not any("dropped" in w for w in major)


def test_majority_policy_keeps_real_cells_calls_where_the_antibody_was_measured(shared_data):
    """Real pbmc10k cells in two samples of 100; the second sample's panel lacks CD4 and CD8a.
    Calls are compared with those on the full 14-antibody panel. ``intersection`` drops CD4/CD8 for
    both samples; ``majority`` keeps them for the first and scores the second without them. Zeros in
    place of the unmeasured values (what ``union`` did before) make the second sample's T cells
    CD4-negative and CD8-negative: measured 0.83 agreement there vs 0.94 with missing values."""
    from sscsig.annotate import annotate, load_markers
    from sscsig.integrate import cluster, integrate
    from sscsig.io import read_sample
    from sscsig.protein import find_protein
    from sscsig.qc import merge_samples

    markers = load_markers(ROOT / "config/markers.yaml")
    m = read_sample(shared_data / "pbmc10k_protein_v3_200cells_scvi.h5mu", sample="pbmc10k")
    order = np.random.default_rng(0).permutation(m.n_obs)
    halves = {"A": np.sort(order[:100]), "B": np.sort(order[100:])}

    def sample(name, drop=()):
        s = m[halves[name]].copy()
        s.obs_names = [f"{name}_{o}" for o in s.obs_names]
        for mod in s.mod.values():
            mod.obs_names = s.obs_names
        s.obs["sample"] = name
        if drop:
            gone = {find_protein(s["prot"].var, d) for d in drop}
            s.mod["prot"] = s["prot"][:, [v for v in s["prot"].var_names if v not in gone]].copy()
            s.update()
        return s

    sheet = pd.DataFrame({"sample": ["A", "B"], "donor": ["d1", "d2"], "batch": ["b1", "b1"], "path": ["", ""]})

    def calls(policy, drop=(), zeros=False):
        mdata, _ = merge_samples({"A": sample("A"), "B": sample("B", drop)}, sheet, panel_policy=policy)
        if zeros:
            mdata["prot"].obsm.pop("protein_measured")
            mdata["prot"].var["measured_in_all"] = True
        integrate(mdata, method="wnn", seed=0)
        cluster(mdata, resolutions=[1.0], seed=0)
        annotate(mdata, markers, seed=0)
        return mdata.obs["lineage"].astype(str).to_numpy(), (mdata.obs["sample"] == "A").to_numpy()

    full, in_a = calls("intersection")

    def agree(lin):
        return (lin[in_a] == full[in_a]).mean(), (lin[~in_a] == full[~in_a]).mean()

    inter_a, inter_b = agree(calls("intersection", ("CD4", "CD8a"))[0])
    maj_a, maj_b = agree(calls("majority", ("CD4", "CD8a"))[0])
    _, zero_b = agree(calls("majority", ("CD4", "CD8a"), zeros=True)[0])
    assert maj_a >= 0.95 and maj_a > inter_a + 0.03, (maj_a, inter_a)  # measured 0.96 vs 0.90
    assert maj_b >= 0.9 and maj_b >= inter_b, (maj_b, inter_b)  # 0.94 vs 0.93
    assert maj_b > zero_b + 0.05, (maj_b, zero_b)  # 0.94 vs 0.83


def test_majority_policy_through_the_workflow(tmp_path, write_sheet, small_cohort):
    """A sample without the CD4 antibody: the start-up warning says CD4 is kept as missing there; the
    merge rule writes cohort/panel.tsv and the merged cohort marks those cells' CD4 unmeasured."""
    import subprocess
    import sys

    import scanpy as sc


    # seven of the 27 samples (both complications, both groups, all three batches): the rule is per sample
    # and the merge per cohort, so more samples would only add QC jobs (27: 94 s of the suite)
    sheet = pd.read_csv(write_sheet(), sep="\t").iloc[[0, 1, 2, 4, 14, 21, 22]].reset_index(drop=True)
    lacking = sheet["sample"].iloc[1]
    a = sc.read_10x_h5(sheet["path"].iloc[1], gex_only=False)
    cd4 = (a.var["feature_types"] == "Antibody Capture") & a.var_names.str.upper().str.startswith("CD4")
    cd4 &= ~a.var_names.str.upper().str.startswith("CD45")
    assert cd4.sum() == 1
    a = a[:, ~cd4.to_numpy()].copy()
    a.write_h5ad(tmp_path / "lacking.h5ad")
    sheet.loc[1, "path"] = str(tmp_path / "lacking.h5ad")
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    cfg = tmp_path / "panel.yaml"
    cfg.write_text(f"samples: {tmp_path / 'samples.tsv'}\noutdir: {tmp_path / 'results'}\n"
                   "qc:\n  panel_policy: majority\n  scrublet: false\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", str(tmp_path / "results/cohort/panel.tsv"), "--cores",
                           "2", "--configfile", "config/config.yaml", str(cfg), "-q"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warn = [ln for ln in proc.stderr.splitlines() if ln.startswith("sscsig: warning:") and lacking in ln]
    assert len(warn) == 1 and "CD4" in warn[0] and "kept as missing" in warn[0], proc.stderr[-2000:]
    panel = pd.read_csv(tmp_path / "results/cohort/panel.tsv", sep="\t").set_index("target")
    assert panel.at["CD4", lacking] == "not measured, kept as missing" and bool(panel.at["CD4", "kept"])
    assert panel.at["CD4", "n_samples"] == len(sheet) - 1
    merged = md.read_h5mu(tmp_path / "results/cohort/merged.h5mu")
    measured = merged["prot"].obsm["protein_measured"]
    col = panel.loc["CD4", "antibody"]
    in_lacking = (merged.obs["sample"].astype(str) == lacking).to_numpy()
    assert in_lacking.sum() > 0 and (~measured[col].to_numpy() == in_lacking).all()
    assert measured.drop(columns=col).to_numpy().all()


def test_antibodies_are_found_under_the_names_public_panels_give_them():
    """A marker file's targets (CD197, CD127, HLA-DR, ...) are found however a panel spells them. The
    names are those of four public data sets: dsb's Kotliarov 2020 PBMCs (``CD3_PROT``), CiteFuse's
    ECCITE-seq (``IL7Ralpha (CD127)``, ``CCR7``), Seurat's bmcite (``CD197-CCR7``, ``HLA.DR``, ``CD8a``)
    and Hao 2021's PBMC reference (two clones ``CD3-1`` / ``CD3-2``, ``TCR-V-7.2``); before this matching
    the first found none of the 34 targets and the second lacked CD197, CD127 and HLA-DR. Targets the
    panel lacks stay missing: CD45 is not CD45RA, CD1c not CD1a, HLA-DR not HLA-A,B,C, CD279 not PD-L1."""
    from sscsig.protein import antibody_names, find_protein

    def found(names: list[str], targets: list[str]) -> dict[str, str | None]:
        var = pd.DataFrame({"antibody": names}, index=[f"ADT_{n}" for n in names])
        hits = {t: find_protein(var, t) for t in targets}
        return {t: None if v is None else v[len("ADT_"):] for t, v in hits.items()}

    dsb = ["CD3_PROT", "CD4_PROT", "CD8_PROT", "HLA-DR_PROT", "TCRgd_PROT", "CD278 _PROT", "CD45RA_PROT",
           "CD1c_PROT", "MouseIgG1kappaisotype_PROT"]
    assert found(dsb, ["CD3", "CD8", "HLA-DR", "TCR_gd", "CD1c", "CD45RO"]) == {
        "CD3": "CD3_PROT", "CD8": "CD8_PROT", "HLA-DR": "HLA-DR_PROT", "TCR_gd": "TCRgd_PROT", "CD1c": "CD1c_PROT",
        "CD45RO": None}
    eccite = ["B220 (CD45R)", "B7-H1 (PD-L1)", "C-kit (CD117)", "CCR7", "CD1a", "CD3", "CD45", "CD45RA",
              "HLA-A,B,C", "IL7Ralpha (CD127)", "MHCII (HLA-DR)", "PD-1 (CD279)", "PD-L1 (CD274)", "PD1 (CD279)"]
    assert found(eccite, ["CD197", "CD127", "HLA-DR", "CD279", "CD274", "CD117", "CD45", "CD1c", "CD45RO"]) == {
        "CD197": "CCR7", "CD127": "IL7Ralpha (CD127)", "HLA-DR": "MHCII (HLA-DR)", "CD279": "PD-1 (CD279)",
        "CD274": "PD-L1 (CD274)", "CD117": "C-kit (CD117)", "CD45": "CD45", "CD1c": None, "CD45RO": None}
    bmcite = ["CD11a", "CD127-IL7Ra", "CD16", "CD197-CCR7", "CD278-ICOS", "CD3", "CD45RA", "CD45RO", "CD8a",
              "HLA.DR"]
    assert found(bmcite, ["CD127", "CD197", "CD8", "HLA-DR", "CD11c", "CD45RO", "CD278"]) == {
        "CD127": "CD127-IL7Ra", "CD197": "CD197-CCR7", "CD8": "CD8a", "HLA-DR": "HLA.DR", "CD11c": None,
        "CD45RO": "CD45RO", "CD278": "CD278-ICOS"}
    hao = ["CD3-1", "CD3-2", "CD4-1", "CD4-2", "CD8", "CD56-1", "CD56-2", "TCR-V-7.2", "HLA-DR"]
    assert found(hao, ["CD3", "CD4", "CD56", "TCR_Va7.2", "CD8", "TCR_gd"]) == {
        "CD3": "CD3-1", "CD4": "CD4-1", "CD56": "CD56-1", "TCR_Va7.2": "TCR-V-7.2", "CD8": "CD8", "TCR_gd": None}
    # the exact name wins over any other match (CD8 before CD8a); a panel named by genes is read too
    assert found(["CD8a", "CD8"], ["CD8"]) == {"CD8": "CD8"}
    assert found(["MS4A1", "NCAM1", "CD3E"], ["CD20", "CD56", "CD3"]) == {"CD20": "MS4A1", "CD56": "NCAM1", "CD3": "CD3E"}
    assert antibody_names("CD197-CCR7_TotalSeqC") == ("CD197-CCR7", "CD197", "CCR7")


def test_samples_that_spell_an_antibody_differently_share_it():
    """Two samples whose feature references spell a target differently (``HLA-DR`` / ``HLA.DR``,
    ``CD3`` / ``CD3_PROT``) keep it under the intersection policy, under the first sample's spelling; the
    start-up check and the merge say so in the same sentence. Two antibodies of one sample with the same
    key (CiteFuse's ``PD-1 (CD279)`` and ``PD1 (CD279)``) are left apart."""
    from sscsig.io import panel_warnings
    from sscsig.protein import same_antibody_names
    from sscsig.qc import merge_samples

    s1 = ["CD3", "HLA-DR", "CD14"]
    s2 = ["CD3_PROT", "HLA.DR", "CD14"]
    s3 = ["CD3", "HLA_DR", "CD14"]
    samples = {"s1": _sample("s1", s1, 20, 1), "s2": _sample("s2", s2, 20, 2), "s3": _sample("s3", s3, 20, 3)}
    sheet = pd.DataFrame({"sample": ["s1", "s2", "s3"], "donor": ["d1", "d2", "d3"], "batch": ["b"] * 3,
                          "path": [""] * 3})
    mdata, report = merge_samples(samples, sheet, panel_policy="intersection")
    assert mdata["prot"].var_names.tolist() == ["ADT_CD3", "ADT_HLA-DR", "ADT_CD14"]
    assert mdata["prot"].var["antibody"].tolist() == ["CD3", "HLA-DR", "CD14"]
    assert report["antibodies_renamed"] == {"s2": {"CD3_PROT": "CD3", "HLA.DR": "HLA-DR"}, "s3": {"HLA_DR": "HLA-DR"}}
    # the counts moved with their names: s2's HLA.DR column is the cohort's HLA-DR in s2's cells
    in_s2 = (mdata.obs["sample"] == "s2").to_numpy()
    np.testing.assert_array_equal(mdata["prot"].X[in_s2][:, 1].toarray(),
                                  samples["s2"]["prot"][:, "ADT_HLA.DR"].X.toarray())
    said = panel_warnings({"s1": s1, "s2": s2, "s3": s3}, panel_policy="intersection")
    assert said == report["panel_warnings"] and len(said) == 2 and "HLA.DR -> HLA-DR" in said[0]

    two = same_antibody_names({"a": ["PD-1 (CD279)", "PD1 (CD279)"], "b": ["PD-1 (CD279)", "pd1 (cd279)"]})
    assert two == {"a": {}, "b": {}}
