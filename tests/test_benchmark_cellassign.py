"""benchmarks/annotation_cellassign.py: CellAssign must be given exactly the marker file's lineage genes
that the data hold (the comparison with the marker path is only fair on the same knowledge), and the
RNA-only cohort it builds for the marker path must be one the annotator accepts."""

import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import annotation_cellassign as C  # noqa: E402
import annotation_real as R  # noqa: E402


def test_marker_matrix_holds_the_lineage_genes_in_the_data_and_drops_lineages_without_any():
    markers = {"lineages": {"Mono": {"rna_pos": ["LYZ", "FCN1", "CST3"], "protein_pos": ["CD14"]},
                            "B": {"rna_pos": ["MS4A1", "CD79A"]},
                            "DC": {"rna_pos": ["CD1C"]},
                            "other_T": {"protein_pos": ["CD3"]}}}
    mat = C.marker_matrix(markers, ["LYZ", "CST3", "MS4A1", "CD79A", "ACTB"])
    assert list(mat.columns) == ["Mono", "B"]  # DC's gene is absent, other_T has none
    assert sorted(mat.index) == ["CD79A", "CST3", "LYZ", "MS4A1"]
    assert mat.loc["LYZ", "Mono"] == 1 and mat.loc["LYZ", "B"] == 0
    assert mat.loc["MS4A1", "B"] == 1 and mat.loc["CST3", "B"] == 0
    assert int(mat.to_numpy().sum()) == 4


def test_rna_only_cohort_has_a_graph_normalised_rna_raw_counts_and_an_empty_panel():
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(1.0, size=(60, 40)).astype(np.float32))
    genes = [f"G{i}" for i in range(40)]
    m = R.rna_only_mudata(counts, genes, [f"c{i}" for i in range(60)], seed=0)
    assert m["prot"].n_vars == 0 and m["prot"].layers["clr"].shape == (60, 0)
    assert m.obsp["connectivities"].shape == (60, 60) and m.obsp["connectivities"].nnz > 0
    assert np.allclose(m["rna"].layers["counts"].toarray(), counts.toarray())
    assert not np.allclose(m["rna"].X.toarray(), counts.toarray())  # log-normalised
    assert set(m.obs["batch"]) == {"one"}
