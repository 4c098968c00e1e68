import hashlib

import numpy as np
import pandas as pd
import scanpy as sc

from sscsig.demo import STATE_LINEAGE
from sscsig.demo import _simulate as S


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_design_matches_reference_study():
    d = S.study_design()
    assert len(d) == 27 and (d.group == "SSc").sum() == 21 and (d.group == "HD").sum() == 6
    ssc = d[d.group == "SSc"]
    assert ssc.SRC.sum() == 4 and ssc.ILD.sum() == 12 and (ssc.SRC & ssc.ILD).sum() == 2
    assert (~ssc.SRC & ~ssc.ILD).sum() == 7
    assert list(ssc.age) == S.AGES_SSC and list(d[d.group == "HD"].age) == S.AGES_HD
    assert d.batch.nunique() == 3 and d["sample"].is_unique
    assert not d[d.group == "HD"][["SRC", "ILD"]].any().any()


def test_src_oldest_variant_confounds_age():
    d = S.study_design(src_oldest=True)
    ssc = d[d.group == "SSc"]
    assert ssc[ssc.SRC].age.min() >= ssc[~ssc.SRC].age.max()
    assert sorted(ssc.age) == sorted(S.AGES_SSC)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    p = S.DemoParams(seed=5, cells_per_donor=40)
    S.simulate_cohort(tmp_path / "a", p)
    S.simulate_cohort(tmp_path / "b", p)
    S.simulate_cohort(tmp_path / "c", S.DemoParams(seed=6, cells_per_donor=40))
    f = "SSc01_PBMC/filtered_feature_bc_matrix.h5"
    assert _sha(tmp_path / "a" / f) == _sha(tmp_path / "b" / f)
    assert _sha(tmp_path / "a" / "truth/cells.tsv") == _sha(tmp_path / "b" / "truth/cells.tsv")
    assert _sha(tmp_path / "a" / f) != _sha(tmp_path / "c" / f)


def test_cellranger_layout_and_features(small_cohort):
    a = sc.read_10x_h5(small_cohort / "SSc01_PBMC/filtered_feature_bc_matrix.h5", gex_only=False)
    types = a.var["feature_types"].value_counts()
    assert types["Gene Expression"] >= 2000 and types["Antibody Capture"] >= 33
    for g in ["EGR1", "NFKBIA", "IER2", "SGK1", "CCR1", "IL1B", "GBP5", "CXCR3", "CCL5", "HLA-DRB1", "CD74"]:
        assert g in set(a.var_names[a.var.feature_types == "Gene Expression"])
    x = a.X.toarray()
    assert np.all(x == np.round(x)) and x.min() >= 0
    sheet = pd.read_csv(small_cohort / "samples.tsv", sep="\t")
    assert {"sample", "donor", "batch", "path", "group", "age", "sex", "SRC", "ILD"} <= set(sheet.columns)


def test_truth_tables(small_cohort):
    cells = pd.read_csv(small_cohort / "truth/cells.tsv", sep="\t")
    assert list(cells.columns) == ["sample", "barcode", "lineage", "cell_state", "is_doublet", "is_low_quality"]
    assert set(cells.cell_state) <= set(STATE_LINEAGE)
    assert len(set(cells.cell_state)) >= 20
    assert 0.02 < cells.is_doublet.mean() < 0.1 and 0.02 < cells.is_low_quality.mean() < 0.1
    eff = pd.read_csv(small_cohort / "truth/effects.tsv", sep="\t")
    src = eff[(eff.complication == "SRC") & (eff.cell_state == "CD14.EGR1")].planted_fold_change.item()
    assert src == 3.0


def test_planted_effect_raises_share_and_null_does_not():
    rng_donor = S.study_design().iloc[0]  # SRC and ILD donor
    shares = {}
    for null in (False, True):
        p = S.DemoParams(seed=1, null=null)
        vals = []
        for k in range(200):
            comp = S.donor_composition(np.random.default_rng(k), rng_donor, p)
            mono = comp[[s for s, lin in STATE_LINEAGE.items() if lin == "Mono"]]
            vals.append(comp["CD14.EGR1"] / mono.sum())
        shares[null] = np.mean(vals)
    assert 2.5 < shares[False] / shares[True] < 3.5


def test_state_counts_equal_the_truth_of_the_full_simulator(small_cohort):
    from sscsig.demo import DemoParams, simulate_state_counts

    counts, sheet = simulate_state_counts(DemoParams(seed=3, cells_per_donor=120))
    truth = pd.read_csv(small_cohort / "truth/cells.tsv", sep="\t")
    donor = truth["sample"].str.replace("_PBMC", "")
    expected = pd.crosstab(donor, truth["cell_state"]).reindex(columns=counts.columns, fill_value=0)
    assert counts.loc[expected.index].equals(expected.rename_axis(None).rename_axis(None, axis=1))
    assert list(sheet["donor"]) == list(counts.index)


def test_longitudinal_donor_rises_before_onset_and_falls_after_treatment(tmp_path):
    d = S.study_design(longitudinal=True)
    assert len(d) == 29 and list(d["sample"][-2:]) == ["SSc01_pre", "SSc01_post"]
    assert (d.groupby("donor").size() > 1).sum() == 1 and set(d["timepoint"]) == {"baseline", "pre_onset",
                                                                                 "post_treatment"}
    p = S.DemoParams(seed=4, cells_per_donor=1500, longitudinal=True)
    S.simulate_cohort(tmp_path, p)
    truth = pd.read_csv(tmp_path / "truth/cells.tsv", sep="\t")
    mono = truth[truth.lineage == "Mono"].groupby("sample")["cell_state"].apply(lambda s: (s == "CD14.EGR1").mean())
    assert mono["SSc01_post"] < mono["SSc01_pre"] < mono["SSc01_PBMC"]
    # the baseline cohort is unchanged by the extra samples
    S.simulate_cohort(tmp_path / "base", S.DemoParams(seed=4, cells_per_donor=1500))
    f = "SSc05_PBMC/filtered_feature_bc_matrix.h5"
    assert _sha(tmp_path / f) == _sha(tmp_path / "base" / f)


def test_state_protein_overrides_change_one_state_only():
    """DemoParams.state_protein (the egr1_activated variant of benchmarks/annotation_variants.py)."""
    import pytest

    from sscsig.demo import _states as S
    from sscsig.demo._simulate import _state_protein_levels

    base = _state_protein_levels()
    hla = S.PROTEINS.index("HLA-DR")
    changed = _state_protein_levels((("CD14.EGR1", (("HLA-DR", 3), ("CD16", 1))),))
    assert base["CD14.EGR1"][hla] == 2 and changed["CD14.EGR1"][hla] == 3
    assert changed["CD14.EGR1"][S.PROTEINS.index("CD16")] == 1
    assert all((changed[s] == base[s]).all() for s in base if s != "CD14.EGR1")
    with pytest.raises(ValueError, match="unknown states"):
        _state_protein_levels((("CD14.Nope", (("HLA-DR", 3),)),))


def test_study_catalogue_has_the_reference_studys_states_and_its_marker_file_matches(tmp_path):
    """demo.states: study (issue 16): the study's 41 fine states, each with a lineage, a program and a
    share; the five extra antibodies in the panel; config/markers_study.yaml labels exactly these states
    under the same lineages; and the core twin is unchanged by the catalogue's existence."""
    from pathlib import Path

    import pytest

    from sscsig.annotate import load_markers
    from sscsig.annotate._markers import _labels
    from sscsig.demo import _states as C

    study = C.catalogue("study")
    names = set(study.state_lineage)
    assert len(names) == 41 and set(C.STUDY_STATES) == names
    # the study's list (reference-study.md), in its names or the pipeline's equivalents
    for s in ["CD14.VCAN", "CD14.PLBD1", "CD14.HLA", "CD16.ISG", "cDC1", "ASDC", "pDC.ISG", "CD4.CTL", "CD4.ISG",
              "CD8.TCM_GATA3", "dnT", "B.Naive_Activated", "B.Memory_pre.switched", "B.Memory_post.switched",
              "ABC", "Plasma.cell", "NK.intermediate", "ILC", "Proliferating", "CD4.TCM_1", "CD4.TCM_2"]:
        assert s in names, s
    assert set(study.state_program) == set(study.state_protein) == set(study.base_share) == names
    assert set(C.STUDY_EXTRA_PROTEINS) <= set(study.proteins) and C.catalogue("core").proteins == C.PROTEINS
    universe = set(S._gene_table(study.extra_genes)["symbol"])
    assert set(study.program_genes()) <= universe and len(universe) == len(S._gene_table()) + len(study.extra_genes)
    markers = load_markers(Path(__file__).resolve().parents[1] / "config/markers_study.yaml")
    placed = {label.split("/")[-1]: label.split("/")[0] for label, _ in _labels(markers) if "/" in label}
    assert placed == study.state_lineage
    with pytest.raises(ValueError, match="with_tissue"):
        S.DemoParams(states="study", with_tissue=True)
    with pytest.raises(ValueError, match="unknown catalogue"):
        S.DemoParams(states="nope")

    S.simulate_cohort(tmp_path, S.DemoParams(seed=0, cells_per_donor=300, states="study"))
    truth = pd.read_csv(tmp_path / "truth/cells.tsv", sep="\t")
    assert set(truth["cell_state"]) == names  # 27 x ~300 cells: even the 0.15% states are drawn
    assert (truth["lineage"] == truth["cell_state"].map(study.state_lineage)).all()
    adata = sc.read_10x_h5(tmp_path / "HD01_PBMC/filtered_feature_bc_matrix.h5", gex_only=False)
    prot = adata.var_names[adata.var["feature_types"] == "Antibody Capture"]
    assert set(C.STUDY_EXTRA_PROTEINS) <= set(prot) and len(prot) == 40
    # the extra antibodies carry their states' signal (levels 0-3; the counts follow them)
    levels = S._state_protein_levels(cat=study)
    top = {p: max(levels, key=lambda st: levels[st][study.proteins.index(p)]) for p in ("CD141", "CD138", "CD117")}
    assert top == {"CD141": "cDC1", "CD138": "Plasma.cell", "CD117": "ILC"}
