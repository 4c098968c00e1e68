"""Partial reading of cohort h5mu files and the pass-through of matrices a rule leaves on disk."""

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sscsig.io import backed_matrix, read_h5mu, write_h5mu


def _cohort(n=300, genes=40):
    rng = np.random.default_rng(0)
    cells = pd.Index([f"c{i}" for i in range(n)])
    counts = sp.random(n, genes, density=0.3, format="csr", random_state=1, dtype=np.float32)
    counts.data = np.ceil(counts.data * 20)
    rna = ad.AnnData(counts.copy(), obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=[f"G{j}" for j in range(genes)]))
    rna.X.data = np.log1p(rna.X.data)
    rna.layers["counts"] = counts
    rna.layers["spliced"] = rng.random((n, genes)).astype(np.float32)  # a dense layer
    prot = ad.AnnData(rng.random((n, 5)), obs=pd.DataFrame(index=cells))
    prot.layers["counts"] = rng.poisson(5, (n, 5)).astype(np.float32)
    m = md.MuData({"rna": rna, "prot": prot})
    m.obs["donor"] = pd.Categorical(rng.choice(["D1", "D2"], n))
    m.obsm["X_umap"] = rng.random((n, 2))
    return m


@pytest.mark.parametrize("skip, block", [(("mod/rna/layers/counts",), 1 << 24),
                                         (("mod/rna/layers/counts", "mod/rna/layers/spliced"), 7)])
def test_layers_left_on_disk_are_passed_through_unchanged(tmp_path, monkeypatch, skip, block):
    monkeypatch.setattr("sscsig.io._write._COPY_BLOCK", block)  # 7: many blocks, a partial last one
    m = _cohort()
    m.write(tmp_path / "in.h5mu")
    part = read_h5mu(tmp_path / "in.h5mu", skip=skip)
    assert not any(f"mod/rna/layers/{k}" in skip for k in part["rna"].layers)  # never read
    assert set(part["prot"].layers) == {"counts"} and list(part.obsm) == list(md.read_h5mu(tmp_path / "in.h5mu").obsm)
    part.obs["cell_state"] = "A"  # what a rule adds
    write_h5mu(part, tmp_path / "out.h5mu", passthrough=tmp_path / "in.h5mu", elements=skip)
    out, ref = md.read_h5mu(tmp_path / "out.h5mu"), md.read_h5mu(tmp_path / "in.h5mu")
    for mod in ("rna", "prot"):
        assert set(out[mod].layers) == set(ref[mod].layers)
        for k, v in ref[mod].layers.items():
            a, b = out[mod].layers[k], v
            assert type(a) is type(b) and a.dtype == b.dtype
            np.testing.assert_array_equal(a.toarray() if sp.issparse(a) else a, b.toarray() if sp.issparse(b) else b)
    np.testing.assert_array_equal(out["rna"].X.toarray(), ref["rna"].X.toarray())
    pd.testing.assert_frame_equal(out.obs.drop(columns="cell_state"), ref.obs)
    with backed_matrix(tmp_path / "out.h5mu", "rna", "layers/counts") as c:  # row blocks still readable
        np.testing.assert_array_equal(c[10:20].toarray(), ref["rna"].layers["counts"][10:20].toarray())


def test_pass_through_refuses_other_cells_and_leaves_no_output(tmp_path):
    m = _cohort()
    m.write(tmp_path / "in.h5mu")
    part = read_h5mu(tmp_path / "in.h5mu", skip=("mod/rna/layers/counts",))[:100].copy()
    with pytest.raises(ValueError, match="cells differ"):
        write_h5mu(part, tmp_path / "out.h5mu", passthrough=tmp_path / "in.h5mu", elements=("mod/rna/layers/counts",))
    assert not list(tmp_path.glob("out*"))
    with pytest.raises(ValueError, match="only a modality.s layers or X"):
        read_h5mu(tmp_path / "in.h5mu", skip=("obsm/X_umap",))


def test_a_skipped_x_is_none_and_passes_through_under_another_name(tmp_path):
    """The integrate rule's use: the merged cohort's raw counts (``mod/rna/X``) are not read and
    become the output's ``layers['counts']``, copied block by block."""
    m = _cohort()
    del m["rna"].layers["counts"], m["rna"].layers["spliced"]
    m.write(tmp_path / "in.h5mu")
    part = read_h5mu(tmp_path / "in.h5mu", skip=("mod/rna/X",))
    assert part["rna"].X is None and part["rna"].shape == m["rna"].shape and part["prot"].X is not None
    part["rna"].X = sp.csr_matrix(m["rna"].shape, dtype=np.float32)  # what the rule computes
    write_h5mu(part, tmp_path / "out.h5mu", passthrough=tmp_path / "in.h5mu",
               elements={"mod/rna/layers/counts": "mod/rna/X"})
    out = md.read_h5mu(tmp_path / "out.h5mu")
    assert out["rna"].X.nnz == 0 and list(out["rna"].layers) == ["counts"]
    np.testing.assert_array_equal(out["rna"].layers["counts"].toarray(), m["rna"].X.toarray())
    with pytest.raises(ValueError, match="only a modality.s layers or X"):
        read_h5mu(tmp_path / "in.h5mu", skip=("mod/rna/obs",))


@pytest.mark.parametrize("chunk", [1, 7, 10**6])
def test_reading_some_genes_equals_reading_all_then_subsetting(tmp_path, chunk):
    """read_modality(var_names=...) reads only those columns, a block of rows at a time (the annotate
    rule's raw counts of the marker file's state genes), in the modality's gene order; names the
    modality lacks are left out; a dense layer is read whole and subset."""
    from sscsig.io import read_modality

    path = tmp_path / "c.h5mu"
    _cohort().write_h5mu(path)
    whole = read_modality(path, "rna", x="layers/counts", layers=("spliced",))
    names = [whole.var_names[j] for j in (30, 2, 17, 39)] + ["not_a_gene"]
    part = read_modality(path, "rna", x="layers/counts", layers=("spliced",), var_names=names, chunk_cells=chunk)
    expect = whole[:, sorted([30, 2, 17, 39])]
    assert part.var_names.equals(expect.var_names) and part.obs_names.equals(whole.obs_names)
    assert sp.issparse(part.X) and part.X.dtype == whole.X.dtype and part.X.nnz == expect.X.nnz > 0
    np.testing.assert_array_equal(part.X.toarray(), expect.X.toarray())
    np.testing.assert_array_equal(part.layers["spliced"], expect.layers["spliced"])
    with pytest.raises(ValueError, match="var_names and cells"):
        read_modality(path, "rna", var_names=names, cells=np.ones(300, bool))


@pytest.mark.parametrize("chunk", [1, 7, 10**6])
def test_reading_some_cells_equals_reading_all_then_subsetting(tmp_path, chunk):
    """read_modality(cells=mask) reads only the selected rows (block by block for CSR) and gives
    exactly what reading everything and subsetting gives, for X, a CSR layer and a dense layer."""
    from sscsig.io import read_modality

    path = tmp_path / "c.h5mu"
    _cohort().write_h5mu(path)
    mask = np.random.default_rng(3).random(300) < 0.6
    mask[:20] = False  # whole blocks without a selected cell
    whole = read_modality(path, "rna", layers=("counts", "spliced"))[mask]
    part = read_modality(path, "rna", layers=("counts", "spliced"), cells=mask, chunk_cells=chunk)
    assert part.obs_names.equals(whole.obs_names) and part.var_names.equals(whole.var_names)
    for a, b in [(part.X, whole.X), (part.layers["counts"], whole.layers["counts"])]:
        assert sp.issparse(a) and a.dtype == b.dtype
        assert (a != b).nnz == 0 and a.nnz == b.nnz
    assert np.array_equal(part.layers["spliced"], whole.layers["spliced"])
    none = read_modality(path, "rna", cells=np.zeros(300, bool))
    assert none.shape == (0, 40)
    with pytest.raises(ValueError, match="299"):
        read_modality(path, "rna", cells=np.ones(299, bool))
