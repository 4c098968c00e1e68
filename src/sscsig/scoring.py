"""Gene-module scores per cell, as ``scanpy.tl.score_genes`` computes them, with the gene means computed once.

``score_genes`` (Satija et al. 2015's method: the mean expression of the module's genes minus that
of control genes drawn from the same expression bins) ranks every gene by its mean over all cells to
choose the controls. For a sparse matrix scanpy 1.11 computes those means on two full copies of the
matrix, on every call: the marker annotation scores ~35 modules and the signatures rule a few more,
so a cohort's whole log-normalised matrix was copied twice ~35 times, and at ~900k cells each call
briefly held ~7.8 GB more than the cohort itself (``benchmarks/chunked.py --stage annotate``).

:class:`ModuleScorer` computes the gene means once, a block of cells at a time, adding the values in
the same order and precision as SciPy's column sum (each gene's values in the order of the cells), and
then follows ``score_genes`` step by step: the same bins, the same random control genes for the same
``random_state`` (drawn, as scanpy does, from NumPy's global generator after seeding it), the same
float64 means. The scores are equal to scanpy's, bit for bit (``tests/test_scoring.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


class ModuleScorer:
    """Module scores over one log-normalised cells x genes matrix.

    Parameters
    ----------
    x
        Cells x genes, log-normalised (a SciPy CSR matrix or a dense array); not copied.
    var_names
        The genes, in the matrix's column order.
    chunk_cells
        Cells per block when computing the gene means of a sparse matrix (memory only; exact).
    """

    def __init__(self, x, var_names, *, chunk_cells: int = 50_000):
        self.x = x
        self.var_names = pd.Index(var_names)
        self.chunk_cells = int(chunk_cells)
        self._means: np.ndarray | None = None

    @property
    def gene_means(self) -> np.ndarray:
        """Per gene, the mean over the cells that have a value (NaN left out), computed once."""
        if self._means is None:
            x = self.x
            if not sp.issparse(x):
                self._means = np.asarray(np.nanmean(x, axis=0)).ravel()
            else:
                x = sp.csr_matrix(x) if x.format != "csr" else x
                # SciPy's sum(axis=0) accumulates in the matrix's own precision (float32 for a float32
                # matrix), each gene's values in the order of the cells, and casts the sums to float64
                total = np.zeros(x.shape[1], dtype=np.sum(np.zeros(1, dtype=x.dtype)).dtype)
                nans = np.zeros(x.shape[1], dtype=np.int64)
                for start in range(0, x.shape[0], self.chunk_cells):
                    block = x[start:start + self.chunk_cells]
                    values = block.data
                    bad = np.isnan(values) if values.dtype.kind == "f" else np.zeros(len(values), bool)
                    if bad.any():
                        nans += np.bincount(block.indices[bad], minlength=x.shape[1])
                        values = np.where(bad, 0, values)
                    np.add.at(total, block.indices, values)  # sequential: the same additions, in the same order
                with np.errstate(invalid="ignore", divide="ignore"):
                    self._means = total.astype(np.float64) / (x.shape[0] - nans)
        return self._means

    def _row_means(self, genes: pd.Index) -> np.ndarray:
        sub = self.x[:, self.var_names.get_indexer(genes)]
        if not sp.issparse(sub):
            return np.asarray(np.nanmean(sub, axis=1, dtype="float64")).ravel()
        sub = sp.csr_matrix(sub)  # a new matrix: fancy indexing copies
        n = np.full(sub.shape[0], sub.shape[1], dtype=np.int64)
        bad = np.isnan(sub.data) if sub.data.dtype.kind == "f" else np.zeros(sub.nnz, bool)
        if bad.any():
            rows = np.repeat(np.arange(sub.shape[0]), np.diff(sub.indptr))
            n -= np.bincount(rows[bad], minlength=sub.shape[0])
            sub.data[bad] = 0
        if (sub.data == 0).any():
            # as scanpy does: SciPy sums each row's stored values pairwise, so stored zeros change the rounding
            sub.eliminate_zeros()
        return np.asarray(sub.sum(axis=1, dtype="float64")).ravel() / n

    def score(self, genes, *, random_state: int | None = 0, ctrl_size: int = 50, n_bins: int = 25,
              ctrl_as_ref: bool = True) -> np.ndarray:
        """Per cell, the mean of ``genes`` minus the mean of expression-matched control genes.

        Parameters
        ----------
        genes
            The module; genes not in ``var_names`` are left out.
        random_state, ctrl_size, n_bins, ctrl_as_ref
            As in ``scanpy.tl.score_genes`` (the gene pool is every gene).

        Returns
        -------
        float64 scores, one per cell.
        """
        if random_state is not None:
            np.random.seed(random_state)
        gene_list = pd.Index([genes] if isinstance(genes, str) else list(genes)).intersection(self.var_names)
        if len(gene_list) == 0:
            raise ValueError("No valid genes were passed for scoring.")
        gene_pool = self.var_names.astype("string")
        obs_avg = pd.Series(self.gene_means, index=gene_pool)
        obs_avg = obs_avg[np.isfinite(obs_avg)]
        n_items = int(np.round(len(obs_avg) / (n_bins - 1)))
        obs_cut = obs_avg.rank(method="min") // n_items
        keep = False if ctrl_as_ref else obs_cut.index.isin(gene_list)
        control = pd.Index([], dtype="string")
        for cut in np.unique(obs_cut.loc[gene_list]):
            r_genes = obs_cut[(obs_cut == cut) & ~keep].index
            if ctrl_size < len(r_genes):
                r_genes = r_genes.to_series().sample(ctrl_size).index
            if ctrl_as_ref:
                r_genes = r_genes.difference(gene_list)
            control = control.union(r_genes)
        if len(control) == 0:
            raise RuntimeError("No control genes found in any cut.")
        return self._row_means(gene_list) - self._row_means(control)
