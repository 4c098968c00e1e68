import warnings

import numpy as np
import pandas as pd
import pytest

from sscsig.errors import InputError
from sscsig.io import read_cell_table, read_sample
from sscsig.protein import (background_means, clr_per_cell, dsb_normalise, protein_norm_method,
                            select_empty_droplets)
from sscsig.qc import check_enough_cells, mad_bounds, qc_sample


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
    truth = read_cell_table(small_cohort / "truth/cells.tsv")
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


@pytest.mark.slow
def test_qc_meets_targets_on_the_demo_cohort(tmp_path):
    """Issue 3's targets at the demo's default depth: >= 90% of low-quality cells and >= 70% of
    heterotypic doublets removed, <= 5% of good cells lost (27 samples x ~800 cells)."""
    from sscsig.demo import DemoParams, simulate_cohort

    sheet = simulate_cohort(tmp_path, DemoParams(seed=5, cells_per_donor=800))
    truth = read_cell_table(tmp_path / "truth/cells.tsv")
    flags = pd.concat([qc_sample(read_sample(tmp_path / p, sample=s), seed=0).flags
                       for s, p in zip(sheet["sample"], sheet["path"])]).join(truth)
    good = ~flags.is_low_quality & ~flags.is_doublet
    assert (~flags.qc_pass[flags.is_low_quality]).mean() >= 0.9
    assert (~flags.qc_pass[flags.is_doublet]).mean() >= 0.7
    assert (~flags.qc_pass[good]).mean() <= 0.05
    # both doublet detectors contribute, and the protein rule is specific
    assert flags.qc_scrublet_doublet[flags.is_doublet].mean() > 0.2
    assert flags.qc_protein_doublet[good].mean() < 0.005


def test_scrublet_expected_rate_calls_that_share(small_cohort):
    m = read_sample(small_cohort / "SSc02_PBMC/filtered_feature_bc_matrix.h5", sample="SSc02_PBMC")
    res = qc_sample(m, scrublet_min_cells=50, scrublet_expected_rate=0.1, seed=1)
    f = res.flags
    pre = ~f[[c for c in f if c.startswith("qc_") and c not in ("qc_scrublet_doublet", "qc_protein_doublet", "qc_pass")]].any(axis=1)
    assert f.qc_scrublet_doublet.sum() == round(0.1 * pre.sum())
    thr = res.thresholds["scrublet_threshold"]
    assert (f.doublet_score[f.qc_scrublet_doublet] >= thr).all()
    again = qc_sample(m, scrublet_min_cells=50, scrublet_expected_rate=0.1, seed=1)
    assert again.flags.equals(f)  # seeded
    with pytest.raises(InputError, match="scrublet_threshold"):
        qc_sample(m, scrublet_min_cells=50, scrublet_threshold="otsu")


def test_isotype_outliers_are_flagged(small_cohort):
    m = read_sample(small_cohort / "HD03_PBMC/filtered_feature_bc_matrix.h5", sample="HD03_PBMC")
    iso = m["prot"].var["isotype"].to_numpy()
    x = m["prot"].X.toarray()
    x[:3, iso] *= 50  # three sticky cells / aggregates
    m["prot"].X = x
    res = qc_sample(m, scrublet=False, seed=0)
    assert res.flags.qc_isotype_outlier.iloc[:3].all()
    assert res.flags.qc_isotype_outlier.iloc[3:].mean() < 0.02
    assert res.summary["removed_isotype_outlier"] >= 3


def test_dsb_on_simulated_raw_droplets(tmp_path):
    from sscsig.demo import DemoParams, simulate_cohort

    sheet = simulate_cohort(tmp_path, DemoParams(seed=2, cells_per_donor=150, with_raw=True))
    row = sheet.iloc[0]
    cells = read_sample(tmp_path / row["path"], sample=row["sample"])
    raw = read_sample(tmp_path / row["raw_path"], sample=row["sample"])
    assert raw.n_obs > 3 * cells.n_obs and cells.obs_names.isin(raw.obs_names).all()
    res = qc_sample(cells, scrublet=False, empty=raw, seed=0)
    assert res.summary["protein_norm"] == "dsb" and res.summary["dsb_empty_droplets"] >= 100
    dsb = res.kept["prot"].layers["dsb"]
    assert dsb.shape == res.kept["prot"].shape and np.isfinite(dsb).all()
    cd3 = dsb[:, res.kept["prot"].var_names.get_loc("ADT_CD3")]
    lineage_t = res.kept.obs_names.isin(
        read_cell_table(tmp_path / "truth/cells.tsv").query("lineage.str.endswith('_T')").index)
    assert np.median(cd3[lineage_t]) > np.median(cd3[~lineage_t]) + 3
    # a filtered matrix given as raw_path has no empty droplets: a clear error names the sample
    with pytest.raises(InputError, match=f"{row['sample']}.*empty droplets"):
        select_empty_droplets(cells, cells.obs_names[:0], sample=row["sample"])


def test_protein_norm_policy():
    assert protein_norm_method("auto", has_empty=True, sample="A") == "dsb"
    assert protein_norm_method("auto", has_empty=False, sample="A") == "clr"
    assert protein_norm_method("clr", has_empty=True, sample="A") == "clr"
    with pytest.raises(InputError, match="'A'.*raw_path"):
        protein_norm_method("dsb", has_empty=False, sample="A")


def _ashman_d(x: np.ndarray) -> tuple[float, float, float]:
    """Ashman's D, minor weight and mean gap of a 2-component Gaussian mixture."""
    from sklearn.mixture import GaussianMixture

    g = GaussianMixture(2, random_state=0).fit(x.reshape(-1, 1))
    m, s = g.means_.ravel(), np.sqrt(g.covariances_.ravel())
    return float(np.sqrt(2) * abs(m[0] - m[1]) / np.sqrt((s ** 2).sum())), float(g.weights_.min()), float(abs(m[0] - m[1]))


@pytest.mark.realdata
def test_dsb_on_kotliarov2020(shared_data):
    """Real CITE-seq (87 ADT): after DSB the isotype controls sit near 0 and lineage proteins are
    bimodal (two mixture components > 3 DSB units apart, the smaller >= 5% of cells)."""
    import anndata as ad

    cells = ad.read_h5ad(shared_data / "dsb_kotliarov2020_adt_cells.h5ad")
    empty = ad.read_h5ad(shared_data / "dsb_kotliarov2020_adt_empty_drops.h5ad")
    cells.var["isotype"] = cells.var_names.str.contains("(?i)isotype")
    assert cells.var["isotype"].sum() == 4
    dsb = dsb_normalise(cells, empty, seed=0)
    # muon's implementation on 300 of these cells gives the same values
    sub = cells[:300]
    np.testing.assert_allclose(dsb_normalise(sub, empty, seed=0),
                               _muon_dsb(sub, empty[:, sub.var_names], seed=0,
                                         isotypes=list(sub.var_names[sub.var["isotype"]])), atol=1e-5)
    for v in cells.var_names[cells.var["isotype"]]:
        x = dsb[:, cells.var_names.get_loc(v)]
        assert abs(np.median(x)) < 0.5 and abs(x.mean()) < 0.5 and np.percentile(x, 95) < 2.5, v
    for v in ("CD3_PROT", "CD19_PROT", "CD14_PROT", "CD56_PROT"):
        d, minor, gap = _ashman_d(dsb[:, cells.var_names.get_loc(v)])
        assert gap > 3 and minor >= 0.05 and d > 1.8, (v, d, minor, gap)
    # the isotypes are not bimodal
    for v in cells.var_names[cells.var["isotype"]]:
        assert _ashman_d(dsb[:, cells.var_names.get_loc(v)])[2] < 2


@pytest.mark.realdata
def test_real_10x_mtx_folder(shared_data):
    m = read_sample(shared_data / "pbmc10k_protein_v3_tiny_10x/filtered_feature_bc_matrix", sample="pbmc10k")
    assert m["prot"].n_vars == 17 and m["rna"].n_vars == 100 and m.n_obs == 1024
    assert set(m["rna"].var_names).isdisjoint(m["prot"].var_names)
    assert m["prot"].var["isotype"].sum() == 3
    assert {"ADT_CD3", "ADT_CD4", "ADT_CD8a", "ADT_CD14", "ADT_CD19"} <= set(m["prot"].var_names)
    res = qc_sample(m, min_genes=0, scrublet=False, seed=0)
    assert 0 < res.summary["cells_kept"] <= 1024
    assert res.kept["prot"].layers["clr"].shape == (res.summary["cells_kept"], 17)
    assert res.summary["protein_norm"] == "clr"


def test_protein_doublets_need_a_positive_population(tmp_path, caplog):
    """A B-cell-depleted cohort (the twin without B cells): Otsu's threshold on CD19 splits the
    negative cells in two, and the CD3+CD19 / CD19+CD14 rules then called about half the cells
    doublets (84 of 164 in a sample, measured). A protein whose split does not separate is not used."""
    import logging

    from sscsig.demo import DemoParams, simulate_cohort

    sheet = simulate_cohort(tmp_path, DemoParams(seed=0, cells_per_donor=150, absent_lineages=("B",)))
    s, p = sheet["sample"].iloc[0], sheet["path"].iloc[0]
    with caplog.at_level(logging.INFO, logger="sscsig.qc._qc"):
        res = qc_sample(read_sample(tmp_path / p, sample=s), scrublet=False, seed=0)
    assert res.summary["removed_protein_doublet"] <= 0.05 * res.summary["cells_in"]
    assert res.thresholds["clr_pos_CD19"] == np.inf and np.isfinite(res.thresholds["clr_pos_CD3"])
    assert "CD19 has no separate positive population" in caplog.text
    old = qc_sample(read_sample(tmp_path / p, sample=s), scrublet=False, doublet_min_separation=0.0, seed=0)
    assert old.summary["removed_protein_doublet"] >= 0.3 * old.summary["cells_in"]  # the rule before


def _muon_dsb(cells, empty, *, isotypes, seed):
    import anndata as ad
    import muon as mu

    a, e = ad.AnnData(cells.X.astype(np.float64)), ad.AnnData(empty.X.astype(np.float64))
    a.var_names = e.var_names = cells.var_names
    e.obs_names = [f"e{i}" for i in range(e.n_obs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mu.prot.pp.dsb(a, e, isotype_controls=isotypes or None, random_state=seed)
    return np.asarray(a.X)


@pytest.mark.parametrize("with_isotypes", [True, False])
def test_dsb_equals_muons_implementation(with_isotypes):
    """sscsig's DSB is muon's ``prot.pp.dsb`` step for step (written out to avoid muon's import cost),
    with and without isotype controls; and the denoising changes the result (so the check can fail)."""
    import anndata as ad

    rng = np.random.default_rng(4)
    n, p = 150, 8
    depth = rng.lognormal(0, 0.4, n)[:, None]
    pos = rng.random((n, p)) < 0.3
    counts = rng.poisson(depth * np.where(pos, 200, 8))
    counts[:, -2:] = rng.poisson(depth * 6, (n, 2))  # isotype controls follow the cell's background
    empty = rng.poisson(rng.lognormal(0, 0.3, 400)[:, None] * 3, (400, p))
    var = pd.DataFrame({"isotype": [False] * (p - 2) + [with_isotypes] * 2}, index=[f"ADT_P{i}" for i in range(p)])
    cells = ad.AnnData(counts.astype(np.float32), var=var)
    background = ad.AnnData(empty.astype(np.float32), var=var)
    iso = list(var.index[var["isotype"]])
    ours = dsb_normalise(cells, background, seed=3)
    np.testing.assert_allclose(ours, _muon_dsb(cells, background, isotypes=iso, seed=3), atol=1e-5)
    assert np.abs(ours - dsb_normalise(cells, background, seed=3, denoise=False)).max() > 0.1


def test_background_means_equal_scikit_learns_mixture_fitted_per_cell():
    """The vectorised EM gives each cell the lower mean of scikit-learn's tied / full 2-component
    mixture (lower BIC), as a loop over cells does; with both kinds chosen for some cells."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(1)
    z = np.vstack([rng.normal(0, 1, (40, 30)),  # one component
                   np.hstack([rng.normal(0, 0.5, (40, 20)), rng.normal(6, 2, (40, 10))])])  # background + positives
    expected, kinds = [], []
    for row in z[:, :, None]:
        fits = {kind: GaussianMixture(2, covariance_type=kind, init_params="random", random_state=5).fit(row)
                for kind in ("tied", "full")}
        kind = "tied" if fits["tied"].bic(row) < fits["full"].bic(row) else "full"
        expected.append(fits[kind].means_.min())
        kinds.append(kind)
    assert set(kinds) == {"tied", "full"}
    np.testing.assert_allclose(background_means(z, seed=5), expected, atol=1e-10)
    assert np.abs(background_means(z, seed=6) - np.array(expected)).max() > 1e-6  # the seed is used


def test_per_cell_tables_line_up_with_the_cohorts_cell_names(tmp_path):
    """A per-cell TSV (the twin's truth, a user's labels) is indexed like read_sample's cells; numeric
    barcodes keep their leading zeros."""
    from sscsig.io import cell_names

    (tmp_path / "cells.tsv").write_text("sample\tbarcode\tlabel\nS1\t0012\ta\nS2\t7\tb\n")
    table = read_cell_table(tmp_path / "cells.tsv")
    assert list(table.index) == ["S1_0012", "S2_7"] and list(table["label"]) == ["a", "b"]
    assert list(cell_names("S1", ["AAAC-1", "GGTT-1"])) == ["S1_AAAC-1", "S1_GGTT-1"]


def test_read_counting_rows_are_not_antibodies(shared_data, caplog):
    """CiteFuse's ECCITE-seq CTCL library (../shared) carries CITE-seq-Count's read-counting rows among its
    protein features: bad_struct, no_match and total_reads, the last half of each cell's "antibody" counts.
    Reading drops them (features.technical_pattern) with a warning naming the sample, and the start-up check
    lists the same antibodies, so that the panel check does not call them a panel difference; the 49
    antibodies the control library shares stay, their counts untouched."""
    import logging

    import mudata as md

    from sscsig.io import inspect_sample

    path = shared_data / "eccite_sce_ctcl_subset_citefuse.h5mu"
    with caplog.at_level(logging.WARNING, logger="sscsig.io._read"):
        m = read_sample(path, sample="ctcl")
    assert not {"bad_struct", "no_match", "total_reads"} & set(m["prot"].var["antibody"])
    assert m["prot"].n_vars == 49 and "total_reads" in caplog.text and "ctcl" in caplog.text
    assert inspect_sample(path, sample="ctcl").antibodies == list(m["prot"].var["antibody"])
    raw = md.read_h5mu(path)["prot"]
    np.testing.assert_array_equal(m["prot"][:, "ADT_CD3"].X.toarray().ravel(),
                                  np.asarray(raw[:, "CD3"].layers["counts"].todense()).ravel())
    control = read_sample(shared_data / "eccite_sce_control_subset_citefuse.h5mu", sample="control")
    assert list(control["prot"].var_names) == list(m["prot"].var_names)
    with pytest.raises(InputError, match="technical_pattern"):
        read_sample(path, sample="ctcl", technical_pattern=".")
    with pytest.raises(InputError, match="technical_pattern"):  # the start-up check says so before any job
        inspect_sample(path, sample="ctcl", technical_pattern=".")
