"""Integration of RNA and protein across batches into one latent space (``obsm['X_integrated']``).

``harmony`` (default here): RNA log-normalised HVGs -> PCA, protein (DSB where the QC stage made
it, CLR otherwise) -> PCA; Harmony corrects each
modality's PCs for ``batch_key``; the corrected blocks, each scaled to unit total variance, are
concatenated so that RNA and protein weigh equally. ``pca``: the same without Harmony (the
unintegrated reference).
"""

from __future__ import annotations

import logging

import mudata as md
import numpy as np
import pandas as pd
import scanpy as sc

from .qc import clr_per_cell, normalised_protein

log = logging.getLogger(__name__)

DEFAULT_INTEGRATION = {
    "method": "harmony",
    "batch_key": "batch",
    "n_hvg": 2000,
    "n_pcs_rna": 30,
    "n_pcs_prot": 15,
}


def normalise(mdata: md.MuData) -> None:
    """RNA: counts to ``layers['counts']``, ``X`` = log1p(CP10k). Protein: ``layers['clr']`` (per cell)."""
    rna, prot = mdata["rna"], mdata["prot"]
    if "counts" not in rna.layers:
        rna.layers["counts"] = rna.X.copy()
    rna.X = rna.layers["counts"].copy()
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    if "counts" not in prot.layers:
        prot.layers["counts"] = prot.X.copy()
    prot.layers["clr"] = clr_per_cell(prot.layers["counts"])


def _pca(x: np.ndarray | object, n: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    dense = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    dense = dense - dense.mean(0)
    n = max(1, min(n, dense.shape[1] - 1, dense.shape[0] - 1))
    return PCA(n_components=n, random_state=seed, svd_solver="full" if dense.shape[1] < 500 else "randomized").fit_transform(dense).astype(np.float32)


def _harmony(pcs: np.ndarray, meta: pd.DataFrame, key: str, seed: int) -> np.ndarray:
    import harmonypy

    ho = harmonypy.run_harmony(pcs.astype(np.float64), meta, key, random_state=seed, verbose=False, ncores=1)
    z = np.asarray(ho.Z_corr)
    if z.shape[0] != pcs.shape[0]:
        z = z.T
    return z.astype(np.float32)


def integrate(mdata: md.MuData, *, params: dict | None = None, seed: int = 0) -> None:
    """Normalise, select HVGs and build ``mdata.obsm['X_integrated']`` in place (see module doc)."""
    p = {**DEFAULT_INTEGRATION, **(params or {})}
    normalise(mdata)
    rna, prot = mdata["rna"], mdata["prot"]
    key = p["batch_key"]
    n_batches = mdata.obs[key].nunique() if key in mdata.obs else 1
    if n_batches > 1:
        rna.obs[key] = mdata.obs[key].astype(str).to_numpy()
    sc.pp.highly_variable_genes(
        rna, flavor="seurat_v3", n_top_genes=min(p["n_hvg"], rna.n_vars), layer="counts",
        batch_key=key if n_batches > 1 else None,
    )
    hv = rna.var["highly_variable"].to_numpy()
    rna_pcs = _pca(rna.X[:, hv], p["n_pcs_rna"], seed)
    norm, _, prot_layer = normalised_protein(prot)
    norm = (norm - norm.mean(0)) / np.maximum(norm.std(0), 1e-6)
    prot_pcs = _pca(norm, p["n_pcs_prot"], seed)
    method = p["method"]
    mdata.obsm["X_unintegrated"] = np.hstack(
        [b / np.sqrt((b.var(0)).sum()) for b in (rna_pcs, prot_pcs)]).astype(np.float32)
    if method == "harmony" and n_batches > 1:
        meta = pd.DataFrame({key: mdata.obs[key].astype(str).to_numpy()})
        rna_pcs = _harmony(rna_pcs, meta, key, seed)
        prot_pcs = _harmony(prot_pcs, meta, key, seed)
    elif method not in ("harmony", "pca"):
        raise ValueError(f"integration.method {method!r} is not one of 'harmony', 'pca'")
    blocks = [b / np.sqrt((b.var(0)).sum()) for b in (rna_pcs, prot_pcs)]
    mdata.obsm["X_integrated"] = np.hstack(blocks).astype(np.float32)
    mdata.obsm["X_pca_rna"] = rna_pcs
    mdata.obsm["X_pca_prot"] = prot_pcs
    mdata.uns["integration"] = {"method": method, "batch_key": key, "n_batches": int(n_batches),
                                "n_hvg": int(hv.sum()), "protein_layer": prot_layer}
