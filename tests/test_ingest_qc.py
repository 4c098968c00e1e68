import numpy as np
import pandas as pd
import pytest

from sscsig.ingest import InputError, read_sample
from sscsig.qc import check_enough_cells, clr_per_cell, mad_bounds, qc_sample


def test_read_demo_sample_types_and_prefix(small_cohort):
    m = read_sample(small_cohort / "HD01_PBMC/filtered_feature_bc_matrix.h5", sample="HD01_PBMC")
    assert set(m.mod) == {"rna", "prot"}
    assert all(v.startswith("ADT_") for v in m["prot"].var_names)
    assert m["prot"].var["isotype"].sum() == 3
    assert "CD4" in m["rna"].var_names and "ADT_CD4" in m["prot"].var_names
    assert (m.obs["sample"] == "HD01_PBMC").all()


def test_missing_and_corrupt_files_name_the_sample(tmp_path, small_cohort):
    with pytest.raises(InputError, match="S1.*not found"):
        read_sample(tmp_path / "nope.h5", sample="S1")
    src = (small_cohort / "HD01_PBMC/filtered_feature_bc_matrix.h5").read_bytes()
    bad = tmp_path / "trunc.h5"
    bad.write_bytes(src[: len(src) // 3])
    with pytest.raises(InputError, match="S2.*cannot read"):
        read_sample(bad, sample="S2")


def test_rna_only_library_is_rejected(tmp_path, small_cohort):
    import anndata as ad

    a = ad.AnnData(X=np.ones((5, 3), dtype=np.float32),
                   var=pd.DataFrame({"feature_types": ["Gene Expression"] * 3}, index=["A", "B", "C"]))
    a.write_h5ad(tmp_path / "x.h5ad")
    with pytest.raises(InputError, match="no 'Antibody Capture' features"):
        read_sample(tmp_path / "x.h5ad", sample="S3")


def test_non_integer_counts_rejected(tmp_path):
    import anndata as ad

    a = ad.AnnData(X=np.full((4, 3), 0.5, dtype=np.float32),
                   var=pd.DataFrame({"feature_types": ["Gene Expression", "Gene Expression", "Antibody Capture"]},
                                    index=["A", "B", "CD3"]))
    a.write_h5ad(tmp_path / "x.h5ad")
    with pytest.raises(InputError, match="raw counts"):
        read_sample(tmp_path / "x.h5ad", sample="S4")


def test_mad_bounds_and_clr():
    lo, hi = mad_bounds(np.array([1.0, 2, 3, 4, 100]), 1)
    assert lo == pytest.approx(3 - 1.4826) and hi == pytest.approx(3 + 1.4826)
    clr = clr_per_cell(np.array([[1, 3, 7], [0, 0, 0]]))
    assert np.allclose(clr.sum(1), 0, atol=1e-6)


def test_qc_removes_injected_bad_cells(small_cohort):
    truth = pd.read_csv(small_cohort / "truth/cells.tsv", sep="\t")
    truth.index = truth["sample"] + "_" + truth["barcode"]
    flags = []
    for s in ["SSc03_PBMC", "SSc12_PBMC", "HD02_PBMC"]:
        res = qc_sample(read_sample(small_cohort / s / "filtered_feature_bc_matrix.h5", sample=s), seed=0)
        assert res.summary["cells_kept"] + res.summary["cells_removed"] == res.summary["cells_in"]
        assert res.kept.n_obs == res.summary["cells_kept"]
        flags.append(res.flags.join(truth))
    f = pd.concat(flags)
    assert (~f.qc_pass[f.is_low_quality]).mean() >= 0.9
    assert (~f.qc_pass[f.is_doublet]).mean() >= 0.5
    good = ~f.is_low_quality & ~f.is_doublet
    assert (~f.qc_pass[good]).mean() <= 0.15


def test_too_few_cells_policy():
    s = {"sample": "X", "cells_in": 100, "cells_kept": 3}
    with pytest.raises(InputError, match="'X': 3 cells left"):
        check_enough_cells(s, min_cells=10, policy="stop")
    assert "dropped" in check_enough_cells(s, min_cells=10, policy="drop")
    assert check_enough_cells(s, min_cells=3, policy="stop") is None


@pytest.mark.realdata
def test_real_10x_mtx_folder(shared_data):
    m = read_sample(shared_data / "pbmc10k_protein_v3_tiny_10x/filtered_feature_bc_matrix", sample="pbmc10k")
    assert m["prot"].n_vars == 17 and m["rna"].n_vars == 100 and m.n_obs == 1024
    assert m["prot"].var["isotype"].sum() == 3
    res = qc_sample(m, params={"min_genes": 0, "scrublet": False}, seed=0)
    assert 0 < res.summary["cells_kept"] <= 1024
