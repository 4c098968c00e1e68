"""Integration metrics (scib-metrics).

The scIB definitions (Luecken et al., Nat Methods 2022) as implemented by ``scib-metrics``, on a
seeded subsample of cells shared by every embedding:

* ``batch_asw``: ``scib_metrics.silhouette_batch``: per cell type, ``1 - |silhouette|`` of the
  batch labels, averaged (1 = batches fully mixed within every type).
* ``ilisi``: ``scib_metrics.ilisi_knn`` on each cell's ``k`` nearest neighbours (for a graph
  integration such as WNN: its own graph neighbours), median, scaled to [0, 1].
* ``celltype_asw``: ``scib_metrics.silhouette_label``, ``(s + 1) / 2``.
* ``ari`` / ``nmi``: ``scib_metrics.nmi_ari_cluster_labels_kmeans`` (k-means with k = number of
  cell types) against the cell types.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd

METRIC_COLUMNS = ["embedding", "n_cells", "batch_asw", "ilisi", "celltype_asw", "ari", "nmi"]


def knn(emb: np.ndarray, k: int):
    """``scib_metrics`` neighbour results: each cell's ``k`` nearest neighbours (itself excluded)."""
    from scib_metrics.nearest_neighbors import NeighborsResults

    from ..neighbors import knn as nearest

    idx, dist = nearest(emb, k)
    return NeighborsResults(indices=idx, distances=dist.astype(np.float64))


def graph_neighbours(distances):
    """Neighbour results from a sparse kNN distance graph (e.g. WNN): the ``k`` nearest of each cell's
    graph neighbours, ``k`` = the smallest number any cell has."""
    import scipy.sparse as sp
    from scib_metrics.nearest_neighbors import NeighborsResults

    g = sp.csr_matrix(distances)
    counts = np.diff(g.indptr)
    k = int(counts.min())
    if k < 1:
        raise ValueError("a cell has no neighbours in the graph")
    idx = np.empty((g.shape[0], k), dtype=np.int64)
    dist = np.empty((g.shape[0], k))
    for i in range(g.shape[0]):
        row = slice(g.indptr[i], g.indptr[i + 1])
        order = np.argsort(g.data[row], kind="stable")[:k]
        idx[i], dist[i] = g.indices[row][order], g.data[row][order]
    return NeighborsResults(indices=idx, distances=dist)


@contextmanager
def _jax_x32():
    """scib-metrics' k-means fails when jax runs in 64-bit mode, which importing pertpy switches on:
    run it in 32-bit mode and restore the setting."""
    import jax

    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def subsample(n: int, max_cells: int, seed: int) -> np.ndarray:
    """Seeded, sorted subsample of ``range(n)`` of at most ``max_cells``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, max_cells, replace=False)) if n > max_cells else np.arange(n)


#: Display name of each integration method in the metrics table and its figure.
EMBEDDING_NAMES = {"totalvi": "totalVI", "wnn": "WNN", "harmony": "Harmony", "pca": "unintegrated (PCA)"}


def compared_embeddings(rna_pcs: np.ndarray, prot_pcs: np.ndarray, batch, methods, *, seed: int = 0,
                        wnn_neighbors: int = 20) -> dict:
    """The cheap integrations rebuilt from stored PCs, for the metrics table.

    ``harmony``: Harmony on each block, concatenated with equal weight; ``wnn``: the same blocks
    plus the WNN graph (its neighbours are used for iLISI); ``pca``: the uncorrected blocks.
    Returns ``{name: (embedding, neighbours or None)}``.
    """
    from ..neighbors import wnn
    from ._integrate import _unit_blocks, harmony

    out = {}
    multi = len(np.unique(np.asarray(batch).astype(str))) > 1
    corrected = None
    for m in methods:
        if m == "pca":
            out[EMBEDDING_NAMES["pca"]] = (_unit_blocks(rna_pcs, prot_pcs), None)
            continue
        if corrected is None:
            corrected = (harmony(rna_pcs, batch, seed), harmony(prot_pcs, batch, seed)) if multi \
                else (rna_pcs, prot_pcs)
        emb = _unit_blocks(*corrected)
        if m == "harmony":
            out[EMBEDDING_NAMES["harmony"]] = (emb, None)
        elif m == "wnn":
            dist, _, _ = wnn(dict(zip(("rna", "prot"), corrected)), n_neighbors=wnn_neighbors, seed=seed)
            out[EMBEDDING_NAMES["wnn"]] = (emb, graph_neighbours(dist))
        else:
            raise ValueError(f"cannot rebuild integration {m!r} from PCs")
    return out


def integration_metrics(embeddings: dict, batch, celltype, *, max_cells: int | None = 5000,
                        seed: int = 0, k: int = 30) -> pd.DataFrame:
    """One row per embedding with the metrics of the module docstring.

    ``embeddings`` maps a name to a matrix, or to ``(matrix, neighbours)`` where ``neighbours``
    (:func:`graph_neighbours`; cells already subsampled by the caller, ``max_cells=None``) replaces
    the matrix's own kNN for iLISI.
    """
    import scib_metrics

    batch, celltype = np.asarray(batch).astype(str), np.asarray(celltype).astype(str)
    n = len(batch)
    pick = subsample(n, max_cells, seed) if max_cells else np.arange(n)
    b, c = batch[pick], celltype[pick]
    multi_batch, multi_type = len(np.unique(b)) > 1, len(np.unique(c)) > 1
    rows = []
    for name, item in embeddings.items():
        emb, neigh = item if isinstance(item, tuple) else (item, None)
        if neigh is not None and len(pick) != n:
            raise ValueError("graph neighbours need the cells subsampled by the caller (max_cells=None)")
        e = np.asarray(emb, dtype=np.float32)[pick]
        with _jax_x32():
            clus = scib_metrics.nmi_ari_cluster_labels_kmeans(e, c) if multi_type else {"ari": np.nan, "nmi": np.nan}
        rows.append({
            "embedding": name, "n_cells": len(pick),
            "batch_asw": float(scib_metrics.silhouette_batch(e, c, b)) if multi_batch else np.nan,
            "ilisi": float(scib_metrics.ilisi_knn(neigh if neigh is not None else knn(e, k), b))
            if multi_batch else np.nan,
            "celltype_asw": float(scib_metrics.silhouette_label(e, c)) if multi_type else np.nan,
            "ari": float(clus["ari"]), "nmi": float(clus["nmi"]),
        })
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def cohort_integration_metrics(obs: pd.DataFrame, integrated: np.ndarray, rna_pcs: np.ndarray,
                               prot_pcs: np.ndarray, *, method: str, batch_key: str = "batch",
                               compare=("wnn", "harmony"), wnn_neighbors: int = 20, seed: int = 0,
                               max_cells: int = 5000, label_key: str = "cell_state") -> pd.DataFrame:
    """The metrics table of an integrated, annotated cohort: the pipeline's embedding (``method``),
    the ``compare`` methods rebuilt from the stored PCs and the unintegrated PCA, all on the same
    seeded ``max_cells`` cells; column ``pipeline_method`` marks the pipeline's row."""
    pick = subsample(len(obs), max_cells, seed)  # every embedding scored on the same cells
    batch = obs[batch_key].astype(str).to_numpy()[pick]
    emb = {}
    if method == "totalvi":
        emb[EMBEDDING_NAMES["totalvi"]] = integrated[pick]
    rebuilt = [m for m in dict.fromkeys([method, *compare, "pca"]) if m != "totalvi"]
    emb.update(compared_embeddings(rna_pcs[pick], prot_pcs[pick], batch, rebuilt, seed=seed,
                                   wnn_neighbors=wnn_neighbors))
    m = integration_metrics(emb, batch, obs[label_key].to_numpy()[pick], max_cells=None, seed=seed)
    m.insert(1, "pipeline_method", m["embedding"] == EMBEDDING_NAMES[method])
    return m
