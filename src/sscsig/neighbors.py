"""Nearest-neighbour search shared by the stages that build kNN graphs on an embedding (the
integrated space and WNN modalities in ``integrate``, Milo's neighbourhoods in ``stats``), and the
weighted-nearest-neighbour graph of several modalities (:func:`wnn`)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

log = logging.getLogger(__name__)

#: up to this many cells, neighbours are exact (scikit-learn, brute force: seconds at 50k cells);
#: above, approximate (pynndescent), whose numba compilation costs ~30 s in every new process
EXACT_KNN_MAX_CELLS = 50_000

#: rows handled at once where a step expands every cell's candidate neighbours (bounds memory)
_BLOCK = 8192


def knn_transformer(n_cells: int) -> str:
    """scanpy's ``transformer`` for ``sc.pp.neighbors`` of ``n_cells`` cells (see :data:`EXACT_KNN_MAX_CELLS`)."""
    return "sklearn" if n_cells <= EXACT_KNN_MAX_CELLS else "pynndescent"


def knn(x: np.ndarray, n_neighbors: int, *, seed: int = 0, threads: int | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``n_neighbors`` nearest other rows by Euclidean distance.

    Exact (scikit-learn, brute force) up to :data:`EXACT_KNN_MAX_CELLS` rows, approximate
    (pynndescent, seeded) above.

    Parameters
    ----------
    x
        Cells x dimensions.
    n_neighbors
        Neighbours per cell, the cell itself not counted (at most ``n - 1``).
    seed
        pynndescent's random state.
    threads
        Worker threads of the search (``None``: all).

    Returns
    -------
    ``(indices, distances)``, each cells x ``n_neighbors``, nearest first; a cell is never its own
    neighbour (duplicated rows may be each other's).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    k = min(int(n_neighbors), n - 1)
    if n <= EXACT_KNN_MAX_CELLS:
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", n_jobs=threads).fit(x).kneighbors(x)
    else:
        from pynndescent import NNDescent

        index = NNDescent(x, n_neighbors=k + 1, metric="euclidean", random_state=seed, low_memory=True,
                          n_jobs=threads if threads else -1)
        idx, dist = index.neighbor_graph
    # drop the cell itself wherever it is in its row (first unless duplicated rows tie), else the last
    not_self = idx != np.arange(n)[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")[:, :k]
    return (np.take_along_axis(idx, order, 1).astype(np.int64),
            np.take_along_axis(dist, order, 1).astype(np.float32))


def _row_distances(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Euclidean distance of each (row, col) pair of ``x``, in blocks."""
    out = np.empty(len(rows), dtype=np.float32)
    step = max(1, (_BLOCK * 64 * 16) // max(x.shape[1], 1))
    for s in range(0, len(rows), step):
        d = x[rows[s:s + step]] - x[cols[s:s + step]]
        out[s:s + step] = np.sqrt(np.einsum("ij,ij->i", d, d))
    return out


def _self_and_neighbours(idx: np.ndarray, value: float) -> sp.csr_matrix:
    """Cells x cells CSR with ``value`` at each cell and its neighbours ``idx`` (cells x k)."""
    n, k = idx.shape
    return sp.csr_matrix((np.full(n * (k + 1), value, dtype=np.float32), np.column_stack([np.arange(n), idx]).ravel(),
                          np.arange(0, n * (k + 1) + 1, k + 1)), shape=(n, n))


def _bandwidth(x: np.ndarray, idx: np.ndarray, nearest: np.ndarray, *, n_bandwidth: int) -> np.ndarray:
    """Seurat's kernel width per cell: the mean distance, less the distance to the nearest
    neighbour, to the ``n_bandwidth`` cells whose neighbourhoods (a cell and its kNN ``idx``) share
    the fewest, but some, members with its own (Jaccard; among ties the farther)."""
    n, k = idx.shape
    sets = _self_and_neighbours(idx, 1.0)
    sets_t = sets.T.tocsr()
    sigma = np.empty(n, dtype=np.float32)
    for s in range(0, n, _BLOCK):
        shared = (sets[s:s + _BLOCK] @ sets_t).tocoo()
        keep = shared.row + s != shared.col
        r, c, sh = shared.row[keep], shared.col[keep], shared.data[keep]
        jac = sh / (2 * (k + 1) - sh)
        d = _row_distances(x, r + s, c)
        order = np.lexsort((-d, jac, r))
        r, d = r[order], d[order]
        start = np.searchsorted(r, np.arange(min(_BLOCK, n - s)))
        rank = np.arange(len(r)) - start[r]
        sel = rank < n_bandwidth
        total = np.bincount(r[sel], weights=d[sel], minlength=len(start))
        count = np.bincount(r[sel], minlength=len(start))
        sigma[s:s + _BLOCK] = total / np.maximum(count, 1) - nearest[s:s + _BLOCK]
    return np.maximum(sigma, 1e-6)


def _mean_of_neighbours(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Each cell's prediction: the mean of ``x`` over the cell and its neighbours ``idx``."""
    return np.asarray(_self_and_neighbours(idx, 1.0 / (idx.shape[1] + 1)) @ x, dtype=np.float32)


def _kernel(d: np.ndarray, nearest: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Seurat's affinity exp(-max(d - d_nearest, 0) / sigma)."""
    return np.exp(-np.maximum(d - nearest, 0.0) / sigma)


def wnn(blocks: dict[str, np.ndarray], *, n_neighbors: int = 20, n_bandwidth_neighbors: int = 20,
        n_multineighbors: int = 200, eps: float = 1e-4, l2_norm: bool = True, seed: int = 0,
        threads: int | None = None
        ) -> tuple[sp.csr_matrix, sp.csr_matrix, pd.DataFrame]:
    """Weighted nearest neighbours of several modalities (Hao et al., Cell 2021; Seurat's
    ``FindMultiModalNeighbors``), vectorised.

    Each embedding is L2-normalised per cell (``l2_norm``, Seurat's default). Per modality: each
    cell's ``n_neighbors - 1`` nearest cells; its profile predicted as the mean over itself and
    those neighbours, and over itself and each other modality's neighbours; the affinity of each
    prediction, exp(-max(d - d_nearest, 0) / sigma), with sigma the mean distance (less d_nearest)
    to the ``n_bandwidth_neighbors`` cells whose neighbourhoods share the fewest, but some, members
    with the cell's (SNN/Jaccard; Seurat's kernel width). A cell's weight for a modality is the
    softmax over modalities of own-prediction affinity / (best other-prediction affinity + ``eps``),
    clipped to [0, 200]. The multimodal neighbours are the ``n_neighbors`` cells (the cell itself not
    counted) of highest weighted affinity among the union of each modality's
    ``n_multineighbors - 1`` nearest cells. The graph's distances are sqrt((1 - affinity) / 2) (as
    Seurat's and muon's) and its connectivities UMAP's fuzzy simplicial set of the cell and those
    neighbours (as ``scanpy.pp.neighbors``).

    muon's ``pp.neighbors`` does the same with a numba metric compiled in every process and
    per-cell Python loops (76 s of a 94 s WNN step at 18.8k cells, 53 s of it compilation); here
    the neighbour searches are exact below :data:`EXACT_KNN_MAX_CELLS` cells and every other step
    is sparse / array algebra in blocks of cells.

    Parameters
    ----------
    blocks
        Modality name -> cells x dimensions embedding (e.g. Harmony-corrected PCs), same cells.
    n_neighbors
        Multimodal neighbours per cell besides itself (Seurat's ``k.nn``); each modality's kNN is
        the cell and ``n_neighbors - 1`` others.
    n_bandwidth_neighbors
        Cells whose mean distance sets a cell's kernel width.
    n_multineighbors
        Candidates per modality for the multimodal neighbours, the cell itself counted (Seurat's
        ``knn.range``).
    eps
        Added to the cross-modality affinity of the weight ratio.
    l2_norm
        L2-normalise each cell's embedding first.
    seed
        Random state of the approximate search (above :data:`EXACT_KNN_MAX_CELLS` cells).
    threads
        Threads of the neighbour searches.

    Returns
    -------
    ``(distances, connectivities, weights)``: cells x cells CSR graphs and a cells x modalities
    DataFrame of modality weights (rows sum to 1).
    """
    names = list(blocks)
    if len(names) < 2:
        raise ValueError("wnn needs at least two modalities")
    xs = {}
    for m in names:
        x = np.asarray(blocks[m], dtype=np.float32)
        if l2_norm:
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        xs[m] = np.ascontiguousarray(x)
    n = xs[names[0]].shape[0]
    if any(x.shape[0] != n for x in xs.values()):
        raise ValueError("wnn: every modality must have the same cells")
    if n < 3:
        raise ValueError(f"wnn needs at least 3 cells, got {n}")
    k_own = max(1, min(int(n_neighbors) - 1, n - 2))  # a modality's kNN: the cell and k_own others
    keep_k = min(int(n_neighbors), n - 1)  # multimodal neighbours, the cell itself not counted
    n_cand = min(max(int(n_multineighbors) - 1, k_own, keep_k), n - 1)
    cand, nearest, sigma = {}, {}, {}
    for m in names:
        idx, dist = knn(xs[m], n_cand, seed=seed, threads=threads)
        cand[m], nearest[m] = idx, dist[:, 0]
        sigma[m] = _bandwidth(xs[m], idx[:, :k_own], nearest[m], n_bandwidth=min(n_bandwidth_neighbors, n - 1))
        log.info("wnn: %s neighbours and kernel widths of %d cells", m, n)
    scores = np.empty((n, len(names)), dtype=np.float64)
    for j, m in enumerate(names):
        theta = {}
        for m2 in names:  # modality m predicted from m2's neighbours
            pred = _mean_of_neighbours(xs[m], cand[m2][:, :k_own])
            theta[m2] = _kernel(np.linalg.norm(xs[m] - pred, axis=1), nearest[m], sigma[m])
        other = np.max([theta[m2] for m2 in names if m2 != m], axis=0)
        scores[:, j] = np.clip(theta[m] / (other + eps), 0.0, 200.0)
    scores -= scores.max(1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(1, keepdims=True)

    out_idx = np.empty((n, keep_k), dtype=np.int64)
    out_sim = np.empty((n, keep_k), dtype=np.float64)
    for s in range(0, n, _BLOCK):
        e = min(n, s + _BLOCK)
        both = np.hstack([cand[m][s:e] for m in names])
        both.sort(axis=1)
        dup = np.zeros_like(both, dtype=bool)
        dup[:, 1:] = both[:, 1:] == both[:, :-1]
        rows = np.repeat(np.arange(s, e), both.shape[1])[~dup.ravel()]
        cols = both.ravel()[~dup.ravel()]
        sim = np.zeros(len(rows), dtype=np.float64)
        for j, m in enumerate(names):
            d = _row_distances(xs[m], rows, cols)
            sim += weights[rows, j] * _kernel(d, nearest[m][rows], sigma[m][rows])
        order = np.lexsort((cols, -sim, rows))
        rows, cols, sim = rows[order], cols[order], sim[order]
        start = np.searchsorted(rows, np.arange(s, e))
        rank = np.arange(len(rows)) - start[rows - s]
        sel = rank < keep_k
        out_idx[s:e] = cols[sel].reshape(e - s, keep_k)
        out_sim[s:e] = sim[sel].reshape(e - s, keep_k)
    out_dist = np.sqrt(np.clip(0.5 * (1.0 - out_sim), 0.0, None))
    distances = sp.csr_matrix((out_dist.ravel(), out_idx.ravel(), np.arange(0, n * keep_k + 1, keep_k)),
                              shape=(n, n))
    from scanpy.neighbors._connectivity import umap as umap_connectivities

    knn_idx = np.column_stack([np.arange(n), out_idx])
    knn_dist = np.column_stack([np.zeros(n), out_dist])
    connectivities = umap_connectivities(knn_idx, knn_dist, n_obs=n, n_neighbors=keep_k + 1)
    log.info("wnn: %d cells, mean weights %s", n,
             ", ".join(f"{m} {w:.2f}" for m, w in zip(names, weights.mean(0))))
    return distances, sp.csr_matrix(connectivities), pd.DataFrame(weights, columns=names)


__all__ = ["EXACT_KNN_MAX_CELLS", "knn", "knn_transformer", "wnn"]
