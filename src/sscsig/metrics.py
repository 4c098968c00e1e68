"""Integration metrics (scib-metrics) and annotation accuracy.

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
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(emb) - 1)
    dist, idx = NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb)
    return NeighborsResults(indices=idx[:, 1:], distances=dist[:, 1:])


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
    plus muon's WNN graph (its neighbours are used for iLISI); ``pca``: the uncorrected blocks.
    Returns ``{name: (embedding, neighbours or None)}``.
    """
    from .integrate import _unit_blocks, harmony, wnn_graph

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
            g = wnn_graph(*corrected, n_neighbors=wnn_neighbors, seed=seed)
            out[EMBEDDING_NAMES["wnn"]] = (emb, graph_neighbours(g.obsp["wnn_distances"]))
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


def annotation_f1(pred, truth) -> tuple[pd.DataFrame, dict]:
    """Per-label precision, recall and F1 of predicted vs true labels, and the macro-F1.

    The macro average runs over the true labels (a predicted label absent from the truth, such as
    ``Unassigned``, counts against recall but gets no row of its own).
    """
    from sklearn.metrics import precision_recall_fscore_support

    pred, truth = np.asarray(pred).astype(str), np.asarray(truth).astype(str)
    labels = sorted(np.unique(truth))
    p, r, f, n = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    table = pd.DataFrame({"label": labels, "precision": p, "recall": r, "f1": f, "n_true": n})
    return table, {"macro_f1": float(np.mean(f)), "accuracy": float((pred == truth).mean()),
                   "n_cells": int(len(truth))}


def annotation_vs_truth(obs: pd.DataFrame, truth_tsv) -> tuple[dict, pd.DataFrame]:
    """Lineage and state F1 of an annotated demo cohort against the simulator's ``truth/cells.tsv``.

    Scored on the cells QC kept that are true singlets of good quality (doublets / low-quality cells
    QC missed have no true state). Returns a summary (macro-F1s, accuracies, the F1 of the reference
    study's two states) and the per-label table (``level`` = lineage or cell_state).
    """
    truth = pd.read_csv(truth_tsv, sep="\t")
    truth.index = truth["sample"] + "_" + truth["barcode"]
    t = truth.loc[obs.index]
    good = (~t.is_doublet & ~t.is_low_quality).to_numpy()
    lin_table, lin = annotation_f1(obs["lineage"][good], t["lineage"][good])
    state_table, state = annotation_f1(obs["cell_state"][good], t["cell_state"][good])
    f1 = state_table.set_index("label")["f1"]
    summary = {"cells_kept": int(len(obs)), "kept_true_singlets": int(good.sum()),
               "lineage_macro_f1": lin["macro_f1"], "state_macro_f1": state["macro_f1"],
               "lineage_accuracy": lin["accuracy"], "state_accuracy": state["accuracy"],
               "f1_CD14.EGR1": float(f1.get("CD14.EGR1", np.nan)),
               "f1_CD8.TEM_T2ISG": float(f1.get("CD8.TEM_T2ISG", np.nan))}
    return summary, pd.concat([lin_table.assign(level="lineage"), state_table.assign(level="cell_state")])
