"""sscsig.scoring.ModuleScorer gives scanpy.tl.score_genes' scores bit for bit, with the gene means
computed once (in blocks of cells) instead of on two copies of the matrix per call."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp


def _lognorm(rng, n, g):
    counts = rng.poisson(rng.gamma(0.3, 2, g), (n, g)).astype(np.float32)
    return sp.csr_matrix(np.log1p(counts / counts.sum(1, keepdims=True).clip(1) * 1e4).astype(np.float32))


@pytest.mark.parametrize("kind", ["sparse", "dense", "nan", "stored_zeros"])
def test_module_scores_equal_scanpys_score_genes(kind):
    import scanpy as sc

    from sscsig.scoring import ModuleScorer

    rng = np.random.default_rng(1)
    x = _lognorm(rng, 2000, 600)
    if kind == "nan":  # scanpy's nan-mean path: a value left out of its gene's and its cell's means
        x.data[rng.choice(x.nnz, 400, replace=False)] = np.nan
    if kind == "stored_zeros":  # SciPy sums a row's stored values pairwise: stored zeros change rounding
        x.data[rng.choice(x.nnz, 4000, replace=False)] = 0
    if kind == "dense":
        x = x.toarray()
    var = [f"G{i}" for i in range(x.shape[1])]
    adata = ad.AnnData(x, var=pd.DataFrame(index=var))
    scorer = ModuleScorer(x, var, chunk_cells=77)  # blocks that do not divide the cells
    for seed in range(8):
        genes = list(rng.choice(var, int(rng.integers(1, 200)), replace=False)) + ["NOT_A_GENE"]
        sc.tl.score_genes(adata, genes, random_state=seed, score_name="s")
        mine = scorer.score(genes, random_state=seed)
        assert mine.dtype == np.float64
        assert np.array_equal(adata.obs["s"].to_numpy(), mine, equal_nan=True), (kind, seed)
    with pytest.raises(ValueError, match="No valid genes"):
        scorer.score(["NOT_A_GENE"])


def test_gene_means_are_computed_once_and_do_not_depend_on_the_block_size():
    from sscsig.scoring import ModuleScorer

    x = _lognorm(np.random.default_rng(2), 500, 100)
    var = [f"G{i}" for i in range(100)]
    whole = ModuleScorer(x, var, chunk_cells=10**6)
    means = whole.gene_means
    assert whole.gene_means is means
    for chunk in (1, 33, 499):
        assert np.array_equal(ModuleScorer(x, var, chunk_cells=chunk).gene_means, means)
    # what scanpy computes: SciPy's column sums (in float32 for a float32 matrix) as float64, / cells
    assert np.array_equal(means, np.asarray(x.sum(axis=0, dtype=np.float64)).ravel() / x.shape[0])
