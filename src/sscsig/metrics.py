"""Integration metrics: batch mixing and conservation of biology, per embedding.

A small implementation of the scIB definitions (Luecken et al., Nat Methods 2022) on a seeded
subsample of cells:

* ``batch_asw``: per cell type, silhouette of the batch labels; ``mean(1 - |s|)`` averaged over cell
  types (1 = batches fully mixed within every type).
* ``ilisi``: per cell, inverse Simpson index of the batches among its ``k`` nearest neighbours
  (for a graph integration such as WNN: its graph neighbours), median over cells, scaled to [0, 1]
  by ``(x - 1) / (n_batches - 1)``.
* ``celltype_asw``: silhouette of the cell-type labels, ``(s + 1) / 2``.
* ``ari`` / ``nmi``: k-means clusters (k = number of cell types, seeded) against the cell types.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRIC_COLUMNS = ["embedding", "n_cells", "batch_asw", "ilisi", "celltype_asw", "ari", "nmi"]


def knn_indices(emb: np.ndarray, k: int) -> np.ndarray:
    """Indices of each cell's ``k`` nearest neighbours (itself excluded)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(emb) - 1)
    return NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb, return_distance=False)[:, 1:]


def graph_neighbours(distances) -> list[np.ndarray]:
    """Each cell's neighbours in a sparse kNN distance graph (e.g. WNN)."""
    import scipy.sparse as sp

    g = sp.csr_matrix(distances)
    return [g.indices[g.indptr[i]:g.indptr[i + 1]] for i in range(g.shape[0])]


def ilisi(emb: np.ndarray | None, batch: np.ndarray, *, k: int = 30, neighbours=None) -> float:
    """Median inverse Simpson index of batches in each cell's kNN, scaled to [0, 1].

    ``neighbours`` (a list of index arrays, e.g. from a WNN graph) replaces the kNN of ``emb``.
    """
    levels, codes = np.unique(batch, return_inverse=True)
    if len(levels) < 2:
        return np.nan
    if neighbours is None:
        neighbours = knn_indices(emb, k)
    onehot = np.eye(len(levels))
    p = np.vstack([onehot[codes[nb]].mean(0) if len(nb) else onehot[codes[i]]
                   for i, nb in enumerate(neighbours)])
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


def subsample(n: int, max_cells: int, seed: int) -> np.ndarray:
    """Seeded, sorted subsample of ``range(n)`` of at most ``max_cells``."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, max_cells, replace=False)) if n > max_cells else np.arange(n)


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
            out["unintegrated (PCA)"] = (_unit_blocks(rna_pcs, prot_pcs), None)
            continue
        if corrected is None:
            corrected = (harmony(rna_pcs, batch, seed), harmony(prot_pcs, batch, seed)) if multi \
                else (rna_pcs, prot_pcs)
        emb = _unit_blocks(*corrected)
        if m == "harmony":
            out["Harmony"] = (emb, None)
        elif m == "wnn":
            g = wnn_graph(*corrected, n_neighbors=wnn_neighbors, seed=seed)
            out["WNN"] = (emb, graph_neighbours(g.obsp["wnn_distances"]))
        else:
            raise ValueError(f"cannot rebuild integration {m!r} from PCs")
    return out


def integration_metrics(embeddings: dict, batch, celltype, *, max_cells: int | None = 5000,
                        seed: int = 0, k: int = 30) -> pd.DataFrame:
    """One row per embedding with the metrics of the module docstring.

    ``embeddings`` maps a name to a matrix, or to ``(matrix, neighbours)`` where ``neighbours``
    (cells already subsampled by the caller, ``max_cells=None``) is a graph's neighbour lists.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    batch, celltype = np.asarray(batch).astype(str), np.asarray(celltype).astype(str)
    n = len(batch)
    pick = subsample(n, max_cells, seed) if max_cells else np.arange(n)
    b, c = batch[pick], celltype[pick]
    rows = []
    for name, item in embeddings.items():
        emb, neigh = item if isinstance(item, tuple) else (item, None)
        if neigh is not None and len(pick) != n:
            raise ValueError("graph neighbours need the cells subsampled by the caller (max_cells=None)")
        e = np.asarray(emb, dtype=np.float64)[pick]
        n_types = len(np.unique(c))
        clusters = KMeans(n_clusters=n_types, n_init=4, random_state=seed).fit_predict(e)
        rows.append({
            "embedding": name, "n_cells": len(pick),
            "batch_asw": batch_asw(e, b, c), "ilisi": ilisi(e, b, k=k, neighbours=neigh),
            "celltype_asw": float((silhouette_score(e, c) + 1) / 2) if n_types > 1 else np.nan,
            "ari": float(adjusted_rand_score(c, clusters)), "nmi": float(normalized_mutual_info_score(c, clusters)),
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
