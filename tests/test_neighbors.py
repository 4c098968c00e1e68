"""Nearest neighbours and the weighted-nearest-neighbour graph (sscsig.neighbors)."""

import numpy as np
import pytest


def _two_modalities(seed=0, n_per=150):
    """Four cell types: 0/1 differ in modality A only, 2/3 in modality B only (B is noise for 0/1,
    A for 2/3), so each type pair can only be told apart by one modality."""
    rng = np.random.default_rng(seed)
    types = np.repeat(np.arange(4), n_per)
    a_centres = np.array([[4, 0, 0, 0, 0], [-4, 0, 0, 0, 0], [0, 6, 0, 0, 0], [0, 6, 0, 0, 0]], float)
    b_centres = np.array([[0, 0, 6, 0], [0, 0, 6, 0], [4, 0, 0, 0], [-4, 0, 0, 0]], float)
    a = a_centres[types] + rng.normal(size=(len(types), 5))
    b = b_centres[types] + rng.normal(size=(len(types), 4))
    return a, b, types


def test_knn_is_exact_and_never_returns_the_cell_itself():
    from scipy.spatial.distance import cdist

    from sscsig.neighbors import knn

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    x[10] = x[11]  # duplicated rows: each other's nearest, never their own
    idx, dist = knn(x, 7)
    d = cdist(x, x)
    np.fill_diagonal(d, np.inf)
    assert idx.shape == (300, 7) and not (idx == np.arange(300)[:, None]).any()
    assert np.allclose(np.sort(d, axis=1)[:, :7], dist, atol=1e-4)
    assert idx[10, 0] == 11 and idx[11, 0] == 10 and dist[10, 0] == pytest.approx(0, abs=1e-4)
    assert knn(x[:4], 10)[0].shape == (4, 3)  # at most n - 1 neighbours


def test_wnn_weights_follow_the_modality_that_separates_a_cell():
    from sscsig.neighbors import wnn

    a, b, types = _two_modalities()
    dist, conn, w = wnn({"A": a, "B": b}, n_neighbors=15, n_multineighbors=60)
    assert list(w.columns) == ["A", "B"] and np.allclose(w.sum(1), 1)
    assert w["A"][types < 2].mean() > 0.7 and w["B"][types >= 2].mean() > 0.7
    # the graph: n_neighbors per cell besides itself, symmetric connectivities, no self-loops
    assert dist.shape == (600, 600) and (np.diff(dist.indptr) == 15).all()
    assert dist.diagonal().sum() == 0 and abs(conn - conn.T).max() < 1e-6 and conn.diagonal().sum() == 0
    # multimodal neighbours are of the cell's own type; each modality alone confuses one pair
    same = (types[dist.indices.reshape(600, 15)] == types[:, None]).mean()
    assert same > 0.97
    for x in (a, b):
        from sscsig.neighbors import knn

        assert (types[knn(x, 15)[0]] == types[:, None]).mean() < 0.85


def test_wnn_is_deterministic_and_checks_its_input():
    from sscsig.neighbors import wnn

    a, b, _ = _two_modalities(seed=2, n_per=40)
    d1, c1, w1 = wnn({"A": a, "B": b}, n_neighbors=10)
    d2, c2, w2 = wnn({"A": a, "B": b}, n_neighbors=10)
    assert (d1 != d2).nnz == 0 and (c1 != c2).nnz == 0 and w1.equals(w2)
    with pytest.raises(ValueError, match="same cells"):
        wnn({"A": a, "B": b[:-1]})
    with pytest.raises(ValueError, match="two modalities"):
        wnn({"A": a})


@pytest.mark.slow
def test_wnn_clusters_as_muons_implementation_does():
    """The same clusters as muon's ``pp.neighbors`` WNN (the implementation it replaces) on data
    where the modalities disagree (Leiden on each graph, ARI >= 0.9; both find the four types)."""
    import anndata as ad
    import mudata as md
    import muon as mu
    import pandas as pd
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    from sscsig.neighbors import wnn

    a, b, types = _two_modalities(seed=3, n_per=200)
    names = pd.Index([f"c{i}" for i in range(len(types))])
    mods = {}
    for key, x in (("A", a), ("B", b)):
        m = ad.AnnData(obs=pd.DataFrame(index=names), obsm={"X_rep": x.astype(np.float32)}, shape=(len(names), 0))
        sc.pp.neighbors(m, use_rep="X_rep", n_neighbors=20, transformer="sklearn")
        mods[key] = m
    ref = md.MuData(mods)
    mu.pp.neighbors(ref, n_neighbors=20, n_multineighbors=200, key_added="wnn", random_state=0)
    _, conn, _ = wnn({"A": a, "B": b}, n_neighbors=20)
    labels = {}
    for key, graph in (("muon", ref.obsp["wnn_connectivities"]), ("sscsig", conn)):
        g = ad.AnnData(obs=pd.DataFrame(index=names), shape=(len(names), 0))
        g.obsp["c"] = graph
        sc.tl.leiden(g, obsp="c", resolution=0.3, random_state=0, flavor="igraph", n_iterations=2, directed=False)
        labels[key] = g.obs["leiden"].to_numpy()
        assert adjusted_rand_score(types, labels[key]) > 0.9, key
    assert adjusted_rand_score(labels["muon"], labels["sscsig"]) >= 0.9


@pytest.mark.slow
def test_knn_above_the_exact_limit_is_approximate_but_close(monkeypatch):
    """Above EXACT_KNN_MAX_CELLS the search is pynndescent's (seeded): >= 95% of the exact
    neighbours found, the cell itself never returned, the same result twice."""
    import sscsig.neighbors as nb

    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    exact = nb.knn(x, 10)[0]
    monkeypatch.setattr(nb, "EXACT_KNN_MAX_CELLS", 500)
    approx = nb.knn(x, 10, seed=1)[0]
    assert not (approx == np.arange(2000)[:, None]).any()
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95
    assert np.array_equal(approx, nb.knn(x, 10, seed=1)[0])


def test_kernel_width_is_seurats_fewest_shared_neighbourhoods():
    """The kernel width against a direct computation: for each cell, among the other cells whose
    neighbourhood (the cell and its kNN) shares some member with its own, the n with the lowest
    Jaccard (ties: the farther), mean distance less the nearest neighbour's."""
    from scipy.spatial.distance import cdist

    from sscsig.neighbors import _bandwidth, knn

    rng = np.random.default_rng(5)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    idx, dist = knn(x, 6)
    sigma = _bandwidth(x, idx, dist[:, 0], n_bandwidth=5)
    d = cdist(x, x)
    sets = [{i, *idx[i]} for i in range(len(x))]
    for i in range(len(x)):
        cand = [(len(sets[i] & sets[j]) / len(sets[i] | sets[j]), -d[i, j], j)
                for j in range(len(x)) if j != i and sets[i] & sets[j]]
        chosen = sorted(cand)[:5]
        expected = np.mean([-negd for _, negd, _ in chosen]) - dist[i, 0]
        assert sigma[i] == pytest.approx(max(expected, 1e-6), rel=1e-4), i
