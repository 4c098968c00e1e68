"""Integration metrics: batch mixing and conservation of biology, per embedding.

A small implementation of the scIB definitions (Luecken et al., Nat Methods 2022) on a seeded
subsample of cells:

* ``batch_asw``: per cell type, silhouette of the batch labels; ``mean(1 - |s|)`` averaged over cell
  types (1 = batches fully mixed within every type).
* ``ilisi``: per cell, inverse Simpson index of the batches among its ``k`` nearest neighbours,
  median over cells, scaled to [0, 1] by ``(x - 1) / (n_batches - 1)``.
* ``celltype_asw``: silhouette of the cell-type labels, ``(s + 1) / 2``.
* ``ari`` / ``nmi``: k-means clusters (k = number of cell types, seeded) against the cell types.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRIC_COLUMNS = ["embedding", "n_cells", "batch_asw", "ilisi", "celltype_asw", "ari", "nmi"]


def ilisi(emb: np.ndarray, batch: np.ndarray, *, k: int = 30) -> float:
    """Median inverse Simpson index of batches in each cell's kNN, scaled to [0, 1]."""
    from sklearn.neighbors import NearestNeighbors

    levels, codes = np.unique(batch, return_inverse=True)
    if len(levels) < 2:
        return np.nan
    k = min(k, len(emb) - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb, return_distance=False)[:, 1:]
    onehot = np.eye(len(levels))[codes[idx]]  # cells x k x batches
    p = onehot.mean(1)
    simpson = 1.0 / np.maximum((p ** 2).sum(1), 1e-12)
    return float((np.median(simpson) - 1) / (len(levels) - 1))


def batch_asw(emb: np.ndarray, batch: np.ndarray, celltype: np.ndarray) -> float:
    """scIB batch ASW: 1 - |silhouette of batch| within each cell type, averaged over types."""
    from sklearn.metrics import silhouette_samples

    scores = []
    for ct in np.unique(celltype):
        m = celltype == ct
        if m.sum() < 10 or len(np.unique(batch[m])) < 2:
            continue
        scores.append(float(np.mean(1 - np.abs(silhouette_samples(emb[m], batch[m])))))
    return float(np.mean(scores)) if scores else np.nan


def integration_metrics(embeddings: dict[str, np.ndarray], batch, celltype, *, max_cells: int = 5000,
                        seed: int = 0, k: int = 30) -> pd.DataFrame:
    """One row per embedding with the metrics of the module docstring."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    batch, celltype = np.asarray(batch).astype(str), np.asarray(celltype).astype(str)
    n = len(batch)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, max_cells, replace=False)) if n > max_cells else np.arange(n)
    b, c = batch[pick], celltype[pick]
    rows = []
    for name, emb in embeddings.items():
        e = np.asarray(emb, dtype=np.float64)[pick]
        n_types = len(np.unique(c))
        clusters = KMeans(n_clusters=n_types, n_init=4, random_state=seed).fit_predict(e)
        rows.append({
            "embedding": name, "n_cells": len(pick),
            "batch_asw": batch_asw(e, b, c), "ilisi": ilisi(e, b, k=k),
            "celltype_asw": float((silhouette_score(e, c) + 1) / 2) if n_types > 1 else np.nan,
            "ari": float(adjusted_rand_score(c, clusters)), "nmi": float(normalized_mutual_info_score(c, clusters)),
        })
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)
