"""benchmarks/annotation_othersim.py: the second simulator, written apart from the demo twin, whose
cohorts score the annotation. Its labels must be the marker file's, its antibodies (several named as
gene symbols of the RNA) must land in the protein modality under the marker file's targets, and the
same seed must give the same cohort."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import annotation_othersim as O  # noqa: E402


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("othersim")
    O.simulate(out / "a", seed=3, cells_per_donor=40)
    O.simulate(out / "b", seed=3, cells_per_donor=40)
    return out


def _features(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 10x h5's counts (features x cells, dense), feature names and types, read from the file itself."""
    import h5py
    import scipy.sparse as sp

    with h5py.File(path) as f:
        g = f["matrix"]
        mat = sp.csc_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=tuple(g["shape"][:]))
        return mat.toarray(), g["features/name"][:].astype(str), g["features/feature_type"][:].astype(str)


def test_its_labels_are_the_marker_files(cohort):
    from sscsig.annotate import load_markers

    markers = load_markers(ROOT / "config/markers.yaml")
    lineage_of = {label: lin for lin, states in markers["states"].items() for name, comp in states.items()
                  for label in (name, *(comp.get("substates") or {}))}  # every state and substate
    labels = set(lineage_of)
    assert {s: lin for s, (lin, _) in O.STATES.items()} == lineage_of
    truth = pd.read_csv(cohort / "a/truth/cells.tsv", sep="\t")
    assert set(truth["cell_state"]) <= labels
    assert truth["is_doublet"].mean() == pytest.approx(0.06, abs=0.01)


def test_antibodies_named_as_genes_are_read_as_antibodies(cohort):
    from sscsig.io import read_sample
    from sscsig.protein import find_protein

    sheet = pd.read_csv(cohort / "a/samples.tsv", sep="\t")
    assert sheet["batch"].nunique() > 1 and len(sheet) == 27
    row = sheet.iloc[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = read_sample(cohort / "a" / row["path"], sample=row["sample"])
    # anndata's "make them unique" advice would rename the antibody CD4: not passed on to the user
    assert not [w for w in caught if "not unique" in str(w.message)]
    for gene in ("CD4", "CD14", "CCR7", "KLRB1", "MS4A1", "IL7R"):  # a gene and an antibody of that name
        assert gene in m["rna"].var_names
    assert {find_protein(m["prot"].var, target) is not None for target in O.PANEL} == {True}
    truth = pd.read_csv(cohort / "a/truth/cells.tsv", sep="\t", dtype={"barcode": str})
    truth = truth[(truth["sample"] == row["sample"]) & ~truth["is_doublet"] & ~truth["is_low_quality"]]
    x = m["prot"].X
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    counts = pd.DataFrame(x, columns=m["prot"].var_names, index=m.obs["barcode"].to_numpy())
    cd4 = counts[find_protein(m["prot"].var, "CD4")].reindex(truth["barcode"]).to_numpy()
    t4, t8 = (truth["lineage"] == "CD4_T").to_numpy(), (truth["lineage"] == "CD8_T").to_numpy()
    assert t4.sum() >= 5 and t8.sum() >= 3
    assert np.median(cd4[t4]) > 3 * np.median(cd4[t8])
    mat, names, kinds = _features(cohort / "a" / row["path"])  # the file's own "CD4" antibody, not its gene
    antibody = np.flatnonzero((names == "CD4") & (kinds == "Antibody Capture"))[0]
    gene = np.flatnonzero((names == "CD4") & (kinds == "Gene Expression"))[0]
    np.testing.assert_array_equal(counts[find_protein(m["prot"].var, "CD4")].to_numpy(), mat[antibody])
    np.testing.assert_array_equal(np.ravel(m["rna"][:, "CD4"].X.toarray()), mat[gene])


def test_the_same_seed_gives_the_same_cohort(cohort):
    a = pd.read_csv(cohort / "a/truth/cells.tsv", sep="\t")
    b = pd.read_csv(cohort / "b/truth/cells.tsv", sep="\t")
    pd.testing.assert_frame_equal(a, b)
    sheet = pd.read_csv(cohort / "a/samples.tsv", sep="\t")
    path = sheet["path"].iloc[5]
    assert (cohort / "a" / path).read_bytes() == (cohort / "b" / path).read_bytes()



def test_robustness_variants_change_what_they_name_and_nothing_else(cohort, tmp_path):
    """The issue's variants drawn by this generator: the panel variant is the default cohort without half
    the antibodies (the isotypes kept), the signal variant the same cells with dimmer antibodies."""
    sheet = pd.read_csv(cohort / "a/samples.tsv", sep="\t")
    path = sheet["path"].iloc[0]
    base, names, kinds = _features(cohort / "a" / path)
    for variant in ("panel_half", "protein_half"):
        O.simulate(tmp_path / variant, seed=3, cells_per_donor=40, variant=variant)
    panel, p_names, p_kinds = _features(tmp_path / "panel_half" / path)
    antibody = kinds == "Antibody Capture"
    gone = set(names[antibody]) - set(p_names[p_kinds == "Antibody Capture"])
    assert len(gone) == round(0.5 * len(O.PANEL)) and not gone & set(O.ISOTYPES)
    kept = ~np.isin(names, list(gone)) | ~antibody
    np.testing.assert_array_equal(panel, base[kept])  # the same cells and counts, fewer antibodies
    dim, d_names, _ = _features(tmp_path / "protein_half" / path)
    assert list(d_names) == list(names)
    truth, d_truth = (pd.read_csv(p / "truth/cells.tsv", sep="\t") for p in (cohort / "a", tmp_path / "protein_half"))
    pd.testing.assert_series_equal(truth["cell_state"], d_truth["cell_state"])  # the same cells
    truth, d_truth = (t[t["sample"] == sheet["sample"].iloc[0]] for t in (truth, d_truth))
    # the RNA is the default's (the draws after the antibodies', doublets and low-quality cells, differ)
    clean = ~(truth[["is_doublet", "is_low_quality"]].any(axis=1).to_numpy()
              | d_truth[["is_doublet", "is_low_quality"]].any(axis=1).to_numpy())
    assert clean.mean() > 0.75
    np.testing.assert_array_equal(dim[~antibody][:, clean], base[~antibody][:, clean])
    cd4_t = (truth["lineage"] == "CD4_T").to_numpy() & clean
    row = np.flatnonzero((names == "CD4") & antibody)[0]
    assert cd4_t.sum() >= 5 and np.median(dim[row, cd4_t]) < 0.75 * np.median(base[row, cd4_t])
    with pytest.raises(ValueError, match="not one of"):
        O.simulate(tmp_path / "x", seed=3, cells_per_donor=40, variant="panel")


def test_substate_ceiling_reads_the_programme_from_the_genes_it_is_given(tmp_path):
    """annotation_variants.substate_ceiling (the CD14.EGR1 row of the held-out draws): near 1 where the
    module's genes carry the programme, near the chance F1 where only genes it is not given do."""
    import anndata as ad
    import mudata as md
    import scipy.sparse as sp

    from annotation_variants import substate_ceiling
    from sscsig.io import cell_names

    rng = np.random.default_rng(0)
    n, module, other = 600, ["EGR1", "NFKBIA", "IER2", "FOS"], ["TNFAIP3", "CXCL8"]
    genes = module + other + [f"G{i}" for i in range(30)]
    lineage = np.where(np.arange(n) < 500, "Mono", "B")
    state = np.where(lineage == "B", "B.Naive", np.where(rng.random(n) < 0.15, "CD14.EGR1", "CD14.Mono"))
    rate = np.full((n, len(genes)), 2.0)
    hit = state == "CD14.EGR1"
    rate[np.ix_(hit, [genes.index(g) for g in module])] *= 6  # the programme in the module's genes only
    x = rng.poisson(rate).astype(np.float32)
    obs = pd.DataFrame({"sample": "s1", "barcode": [f"c{i}" for i in range(n)]})
    names = cell_names(obs["sample"], obs["barcode"])
    rna = ad.AnnData(sp.csr_matrix(x), obs=pd.DataFrame(index=names), var=pd.DataFrame(index=genes))
    rna.layers["counts"] = rna.X.copy()
    md.MuData({"rna": rna}).write(tmp_path / "a.h5mu")
    obs["lineage"], obs["cell_state"], obs["is_doublet"], obs["is_low_quality"] = lineage, state, False, False
    obs.to_csv(tmp_path / "truth.tsv", sep="\t", index=False)
    f1 = substate_ceiling(tmp_path / "a.h5mu", tmp_path / "truth.tsv", ROOT / "config/markers.yaml",
                          substate="CD14.EGR1", gene_sets={"module": None, "other": other})
    assert f1["module"] > 0.95  # the marker file's CD14.EGR1 genes, among them the four the programme raises
    assert f1["other"] < 0.5  # chance: the substate's share of the monocytes is 0.15, best F1 about 0.26
