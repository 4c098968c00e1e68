"""Partial readers of the pipeline's own cohort files (``cohort/*.h5mu``).

A rule reads only what it uses: ``obs`` and one embedding for Milo, the raw counts for pseudobulk,
the log-normalised RNA for signatures, never the whole object when the matrices are not needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anndata as ad
import h5py
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import read_elem, sparse_dataset


def read_elems(path, *keys: str) -> list:
    """The named elements of an h5mu (e.g. ``"obs"``, ``"obsm/X_umap"``), nothing else."""
    with h5py.File(path, "r") as f:
        return [read_elem(f[k]) for k in keys]


def read_obs(path) -> pd.DataFrame:
    """The cohort's cell metadata (``obs``) of an h5mu."""
    return read_elems(path, "obs")[0]


def read_modality(path, mod: str, *, x: str | None = "X", layers=(), cells=None, var_names=None,
                  chunk_cells: int = 50_000) -> ad.AnnData:
    """One modality with only the matrices a rule needs, in the cohort's cell order.

    Parameters
    ----------
    path
        A cohort h5mu.
    mod
        ``"rna"`` or ``"prot"``.
    x
        The element read as ``X`` (e.g. ``"layers/counts"``); ``None`` for no ``X``.
    layers
        Extra layers to read; those absent are skipped.
    cells
        Boolean mask over the cohort's cells: only these rows are read (a sparse matrix
        ``chunk_cells`` rows at a time into arrays sized for the selection, so memory holds the
        selection once, not the whole matrix and then its subset). ``None``: every cell.
    var_names
        Only these variables (genes, antibodies; those the modality lacks are left out), read a
        block of ``chunk_cells`` rows at a time, so that memory holds their columns alone: the
        raw counts of a marker file's genes without the whole counts layer. Not with ``cells``.
        ``None``: every variable.
    """
    with h5py.File(path, "r") as f:
        g = f[f"mod/{mod}"]
        names = _cells_in_cohort_order(f, path, mod)
        if cells is not None:
            cells = np.asarray(cells, dtype=bool)
            if cells.shape != (len(names),):
                raise ValueError(f"{path}: cells mask has {cells.shape} values for {len(names)} cells")
            names = names[cells]

        var = read_elem(g["var"])
        if var_names is not None:
            if cells is not None:
                raise ValueError("read_modality: var_names and cells cannot be combined")
            cols = np.flatnonzero(var.index.isin(list(var_names)))
            var = var.iloc[cols]

        def get(key):
            if var_names is not None:
                return _read_columns(g[key], cols, chunk_cells)
            return read_elem(g[key]) if cells is None else _read_rows(g[key], cells, chunk_cells)

        return ad.AnnData(X=get(x) if x else None, obs=pd.DataFrame(index=names), var=var,
                          layers={k: get(f"layers/{k}") for k in layers if f"layers/{k}" in g})


def _read_rows(elem, rows: np.ndarray, chunk: int):
    """The rows ``rows`` (a boolean mask) of a stored matrix: CSR read a block of rows at a time into
    arrays of the selection's size; dense or CSC read whole, then subset."""
    if not isinstance(elem, h5py.Group) or elem.attrs.get("encoding-type") != "csr_matrix":
        return read_elem(elem)[rows]
    indptr = elem["indptr"][()].astype(np.int64)
    counts = np.diff(indptr)
    nnz = int(counts[rows].sum())
    data = np.empty(nnz, dtype=elem["data"].dtype)
    indices = np.empty(nnz, dtype=elem["indices"].dtype)
    at = 0
    for a in range(0, len(rows), chunk):
        b = min(a + chunk, len(rows))
        if not rows[a:b].any():
            continue
        lo, hi = indptr[a], indptr[b]
        take = np.repeat(rows[a:b], counts[a:b])
        d, i = elem["data"][lo:hi][take], elem["indices"][lo:hi][take]
        data[at:at + len(d)], indices[at:at + len(d)] = d, i
        at += len(d)
    ptr = np.concatenate([[0], np.cumsum(counts[rows])])
    shape = tuple(elem.attrs["shape"])
    return sp.csr_matrix((data, indices, ptr.astype(indices.dtype if nnz < 2**31 else np.int64)),
                         shape=(int(rows.sum()), shape[1]))


def _read_columns(elem, cols: np.ndarray, chunk: int):
    """The columns ``cols`` (positions, ascending) of a stored matrix: CSR read a block of rows at a
    time, each block's entries in those columns kept; dense or CSC read whole, then subset."""
    if not isinstance(elem, h5py.Group) or elem.attrs.get("encoding-type") != "csr_matrix":
        return read_elem(elem)[:, cols]
    n = int(elem.attrs["shape"][0])
    indptr = elem["indptr"][()].astype(np.int64)
    where = np.full(int(elem.attrs["shape"][1]), -1, dtype=np.int64)
    where[cols] = np.arange(len(cols))
    blocks = []
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        lo, hi = indptr[a], indptr[b]
        new = where[elem["indices"][lo:hi]]
        keep = new >= 0
        row = np.repeat(np.arange(b - a), np.diff(indptr[a:b + 1]))[keep]
        blocks.append(sp.csr_matrix((elem["data"][lo:hi][keep], (row, new[keep])), shape=(b - a, len(cols))))
    return sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, len(cols)))


def _cells_in_cohort_order(f: h5py.File, path, mod: str) -> pd.Index:
    """The modality's cell names, checked to be the cohort's (``obs``) in the same order."""
    cells = read_elem(f[f"mod/{mod}/obs"]).index
    if not cells.equals(read_elem(f["obs"]).index):
        raise ValueError(f"{path}: modality {mod!r} cells are not in the cohort's order")
    return cells


@contextmanager
def backed_matrix(path, mod: str, key: str = "X") -> Iterator:
    """One matrix of a modality left on disk, rows read on demand, in the cohort's cell order.

    Parameters
    ----------
    path
        A cohort h5mu.
    mod
        ``"rna"`` or ``"prot"``.
    key
        The element within the modality, e.g. ``"X"`` or ``"layers/counts"``.

    Yields
    ------
    A sparse matrix on disk (``anndata.abc.CSRDataset``, sliced by rows as ``m[a:b]``) or an h5py
    dataset for a dense one; valid inside the ``with`` block only.
    """
    with h5py.File(path, "r") as f:
        g = f[f"mod/{mod}"]
        if key not in g:
            raise KeyError(f"{path}: modality {mod!r} has no {key!r}")
        _cells_in_cohort_order(f, path, mod)
        elem = g[key]
        yield sparse_dataset(elem) if isinstance(elem, h5py.Group) else elem


def read_h5mu(path, *, skip=()) -> md.MuData:
    """A cohort h5mu as ``mudata.read_h5mu`` reads it, without the elements in ``skip``.

    Parameters
    ----------
    path
        A cohort h5mu.
    skip
        Layers or ``X`` of a modality not to read, e.g. ``("mod/rna/layers/counts",)`` or
        ``("mod/rna/X",)`` (then ``X`` is ``None``): a rule that does not use a large matrix leaves it
        on disk (reading rows with :func:`backed_matrix` where it needs them) and passes it on with
        :func:`sscsig.io.write_h5mu`'s ``passthrough``.
    """
    from anndata.experimental import read_dispatched

    skip = {s.strip("/") for s in skip}
    bad = [s for s in skip if not (s.startswith("mod/") and ("/layers/" in s or s.count("/") == 2 and s.endswith("/X")))]
    if bad:
        raise ValueError(f"read_h5mu: only a modality's layers or X can be skipped, not {bad}")

    def callback(func, name, elem, iospec):
        if name.endswith("/layers"):  # the layers mapping, less the skipped ones
            return {k: read_elem(v) for k, v in elem.items() if f"{name.strip('/')}/{k}" not in skip}
        if name.strip("/") in skip:  # a skipped X
            return None
        return func(elem)

    with h5py.File(path, "r") as f:
        order = list(f["mod"].attrs.get("mod-order", list(f["mod"].keys())))
        mods = {m: read_dispatched(f[f"mod/{m}"], callback) for m in order}
        rest = {k: read_elem(f[k]) for k in f.keys() if k != "mod"}
        if "axis" in f.attrs:
            rest["axis"] = int(f.attrs["axis"])
    return md.MuData(mods, **rest)


__all__ = ["backed_matrix", "read_elems", "read_h5mu", "read_modality", "read_obs"]
