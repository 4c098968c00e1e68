"""RNA counts: log1p(counts per 10,000) a block of cells at a time, from memory or from disk.

Shared by the stages that read normalised RNA: integration (``rna.X``, the HVG PCA), annotation
(the reference classifier's gene features, :mod:`sscsig.mapping`) and the tissue stage (marker scores,
gene trends). One implementation, so that a gene level means the same in every table:
``scanpy.pp.normalize_total`` to 1e4, then ``scanpy.pp.log1p``, each cell on its own (a cell without
counts stays 0).
"""

from __future__ import annotations

import numpy as np


def log_normalised(counts, *, columns: np.ndarray | None = None, chunk_cells: int = 10_000):
    """log1p(CP10k) of raw counts (``scanpy.pp.normalize_total`` to 1e4, ``scanpy.pp.log1p``), a block
    of cells at a time.

    Parameters
    ----------
    counts
        Cells x genes raw counts: CSR in memory, or on disk (:func:`sscsig.io.backed_matrix`; read a
        block of rows at a time, never whole).
    columns
        Boolean mask of the genes to return (each cell is still normalised by its total over all
        genes); default all.
    chunk_cells
        Cells normalised at a time: the values are those of normalising the whole matrix (each cell
        on its own), but only the output and one block are held besides ``counts``.

    Returns
    -------
    CSR float32, cells x the selected genes.
    """
    import scanpy as sc  # here, not at import: the rule files import the tissue stage (2 s of every Snakemake start)

    def norm(block):
        block = sc.AnnData(X=block.astype(np.float32))
        sc.pp.normalize_total(block, target_sum=1e4)
        sc.pp.log1p(block)
        return block.X

    return _in_blocks(counts, norm, columns=columns, chunk_cells=chunk_cells)


def selected_counts(counts, *, columns: np.ndarray, chunk_cells: int = 10_000):
    """The raw counts of some genes (``counts[:, columns]`` as float32 CSR), built a block of cells
    at a time from a matrix in memory or on disk (see :func:`log_normalised`)."""
    return _in_blocks(counts, lambda b: b.astype(np.float32, copy=False), columns=columns, chunk_cells=chunk_cells)


def _in_blocks(counts, transform, *, columns, chunk_cells):
    """``transform`` (CSR -> CSR of the same shape) applied to row blocks of ``counts``, then the
    ``columns`` kept, assembled into one CSR matrix (its size counted first, so only the output and a
    block are ever held)."""
    import scipy.sparse as sp

    if sp.issparse(counts):
        counts = sp.csr_matrix(counts)
    n, g = counts.shape
    cols = np.arange(g) if columns is None else np.flatnonzero(columns)
    keep = np.zeros(g, bool)
    keep[cols] = True
    starts = list(range(0, n, chunk_cells))
    if sp.issparse(counts):
        nnz = [int(keep[counts.indices[counts.indptr[a]:counts.indptr[min(a + chunk_cells, n)]]].sum()) for a in starts]
    elif columns is None and hasattr(counts, "group"):  # on disk, all genes: the row offsets size it
        ptr = counts.group["indptr"][()]
        nnz = [int(ptr[min(a + chunk_cells, n)] - ptr[a]) for a in starts]
    else:  # on disk: a first pass over the blocks to size the output
        nnz = [int(keep[sp.csr_matrix(counts[a:a + chunk_cells]).indices].sum()) for a in starts]
    data = np.empty(sum(nnz), np.float32)
    indices = np.empty(sum(nnz), np.int32 if len(cols) < 2**31 else np.int64)
    indptr = np.zeros(n + 1, np.int64)
    at = 0
    for a, k in zip(starts, nnz):
        x = transform(sp.csr_matrix(counts[a:a + chunk_cells]))
        x = x[:, cols] if columns is not None else x
        data[at:at + k], indices[at:at + k] = x.data, x.indices
        indptr[a + 1:a + 1 + x.shape[0]] = at + x.indptr[1:]
        at += k
    return sp.csr_matrix((data, indices, indptr), shape=(n, len(cols)))
