"""Integration of RNA and protein across batches into one latent space.

Every method first log-normalises RNA, selects batch-aware highly variable genes (Seurat v3 on
counts) and computes the unintegrated reference: RNA PCA + protein PCA (DSB where the QC stage made
it, CLR otherwise), each block scaled to unit total variance and concatenated
(``obsm['X_unintegrated']``; the PCs also in ``obsm['X_pca_rna']``, ``obsm['X_pca_prot']``).

``totalvi`` (default): scvi-tools TOTALVI on the HVG counts + all protein counts with the batch
as ``batch_key``, seeded; epochs from config (``auto``: a cell-pass budget scaled to the data size,
larger on a GPU) with early stopping on the validation ELBO. Latent mean ->
``obsm['X_integrated']`` (also ``obsm['X_totalvi']``); denoised protein (foreground, batch-averaged)
-> ``prot.layers['totalvi_denoised']``. The trained model can be saved.

``wnn``: weighted nearest neighbours (Hao et al. 2021; muon): Harmony on the RNA and on the protein
PCs when there are batches, a kNN graph per modality, then muon's WNN graph
(``obsp['wnn_connectivities']``, used for clustering) with per-cell modality weights
(``obs['rna:mod_weight']``, ``obs['prot:mod_weight']``). ``X_integrated`` is the concatenated
corrected PCs (for Milo and the metrics' silhouettes).

``harmony``: the concatenated Harmony-corrected PCs (no WNN graph). ``pca``: the unintegrated reference.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
import scanpy as sc

from .qc import clr_per_cell, normalised_protein

log = logging.getLogger(__name__)

METHODS = ("totalvi", "wnn", "harmony", "pca")
DEFAULT_TOTALVI = {
    "n_latent": 20,
    "max_epochs": "auto",
    # auto epochs = round(budget / n_cells) within [min_epochs, 400]; scvi-tools' own heuristic is
    # 8M cell passes (400 epochs at 20k cells), affordable on a GPU; on CPU we spend 2M.
    "epoch_budget_cells": {"cpu": 2_000_000, "gpu": 8_000_000},
    "min_epochs": 20,
    "early_stopping_patience": 20,
    "batch_size": 256,
    "accelerator": "auto",  # auto | cpu | gpu
    "denoise_samples": 10,
}
DEFAULT_INTEGRATION = {
    "method": "totalvi",
    "batch_key": "batch",
    "n_hvg": 2000,
    "n_pcs_rna": 30,
    "n_pcs_prot": 15,
    "wnn_neighbors": 20,
    "compare": ["wnn", "harmony"],
    "totalvi": DEFAULT_TOTALVI,
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
    """PCA of a (sparse or dense) matrix; sparse input stays sparse (scanpy's implicit centring)."""
    n = max(1, min(n, x.shape[1] - 1, x.shape[0] - 1))
    if hasattr(x, "toarray"):
        tmp = sc.AnnData(X=x.astype(np.float32))
        sc.pp.pca(tmp, n_comps=n, random_state=seed, zero_center=True)
        return np.asarray(tmp.obsm["X_pca"], dtype=np.float32)
    from sklearn.decomposition import PCA

    dense = np.asarray(x, dtype=np.float64)
    dense = dense - dense.mean(0)
    solver = "full" if dense.shape[1] < 500 else "randomized"
    return PCA(n_components=n, random_state=seed, svd_solver=solver).fit_transform(dense).astype(np.float32)


def harmony(pcs: np.ndarray, batch, seed: int) -> np.ndarray:
    """Harmony (harmonypy, seeded) of a PC matrix for the batch labels."""
    import harmonypy

    meta = pd.DataFrame({"batch": np.asarray(batch).astype(str)})
    ho = harmonypy.run_harmony(pcs.astype(np.float64), meta, "batch", random_state=seed, verbose=False, ncores=1)
    z = np.asarray(ho.Z_corr)
    if z.shape[0] != pcs.shape[0]:
        z = z.T
    return z.astype(np.float32)


def _unit_blocks(*blocks: np.ndarray) -> np.ndarray:
    return np.hstack([b / np.sqrt(max(float(b.var(0).sum()), 1e-12)) for b in blocks]).astype(np.float32)


def wnn_graph(rna_pcs: np.ndarray, prot_pcs: np.ndarray, *, n_neighbors: int = 20, seed: int = 0,
              obs_names=None) -> md.MuData:
    """muon's weighted-nearest-neighbour graph of two PC blocks.

    Returns a cells-only MuData with ``obsp['wnn_connectivities']``, ``obsp['wnn_distances']`` and
    ``obs['rna:mod_weight']`` / ``obs['prot:mod_weight']``.
    """
    import anndata as ad
    import muon as mu

    n = rna_pcs.shape[0]
    idx = pd.Index(obs_names if obs_names is not None else [str(i) for i in range(n)])
    mods = {}
    for name, pcs in (("rna", rna_pcs), ("prot", prot_pcs)):
        a = ad.AnnData(obs=pd.DataFrame(index=idx), obsm={"X_rep": np.asarray(pcs, dtype=np.float32)},
                       shape=(n, 0))
        sc.pp.neighbors(a, use_rep="X_rep", n_neighbors=min(n_neighbors, n - 1), random_state=seed)
        mods[name] = a
    m = md.MuData(mods)
    mu.pp.neighbors(m, n_neighbors=min(n_neighbors, n - 1), n_multineighbors=min(200, n - 1),
                    key_added="wnn", random_state=seed, add_weights_to_modalities=False)
    return m


def auto_epochs(n_cells: int, *, on_gpu: bool, params: dict | None = None) -> int:
    """totalVI epochs for ``max_epochs: auto``: the cell-pass budget / cells, within [min_epochs, 400]."""
    p = {**DEFAULT_TOTALVI, **(params or {})}
    budget = p["epoch_budget_cells"]["gpu" if on_gpu else "cpu"]
    return int(np.clip(round(budget / max(n_cells, 1)), p["min_epochs"], 400))


def _gpu_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@contextmanager
def _torch_deterministic():
    """torch's deterministic kernels for the block, then the caller's setting back."""
    import torch

    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def run_totalvi(mdata: md.MuData, hvg: np.ndarray, *, batch_key: str | None, params: dict | None = None,
                seed: int = 0, model_dir: str | Path | None = None) -> dict:
    """Train TOTALVI on HVG + protein counts; return latent, denoised protein and training facts.

    ``mdata['rna'].layers['counts']`` and ``mdata['prot'].layers['counts']`` must hold raw counts.
    """
    import anndata as ad
    import scvi

    p = {**DEFAULT_TOTALVI, **(params or {})}
    scvi.settings.seed = seed
    rna, prot = mdata["rna"], mdata["prot"]
    obs = pd.DataFrame(index=mdata.obs_names)
    if batch_key:
        obs["batch"] = mdata.obs[batch_key].astype(str).to_numpy()
    r = ad.AnnData(X=rna.layers["counts"][:, hvg].astype(np.float32), obs=obs.copy(),
                   var=pd.DataFrame(index=rna.var_names[hvg]))
    pr = ad.AnnData(X=np.asarray(prot.layers["counts"].toarray() if hasattr(prot.layers["counts"], "toarray")
                                 else prot.layers["counts"], dtype=np.float32),
                    obs=obs.copy(), var=pd.DataFrame(index=prot.var_names))
    sub = md.MuData({"rna": r, "prot": pr})
    scvi.model.TOTALVI.setup_mudata(sub, rna_layer=None, protein_layer=None,
                                    batch_key="batch" if batch_key else None,
                                    modalities={"rna_layer": "rna", "protein_layer": "prot",
                                                "batch_key": "rna"})
    on_gpu = p["accelerator"] != "cpu" and _gpu_available()
    epochs = p["max_epochs"]
    if epochs == "auto":
        epochs = auto_epochs(sub.n_obs, on_gpu=on_gpu, params=p)
    with _torch_deterministic():
        model = scvi.model.TOTALVI(sub, n_latent=p["n_latent"])
        t0 = time.time()
        model.train(max_epochs=int(epochs), accelerator="gpu" if on_gpu else "cpu", devices=1,
                    batch_size=p["batch_size"], early_stopping=True,
                    early_stopping_patience=p["early_stopping_patience"],
                    enable_progress_bar=False)
        train_s = time.time() - t0
        hist = model.history
        trained = int(len(hist["elbo_train"])) if "elbo_train" in hist else int(epochs)
        latent = np.asarray(model.get_latent_representation(), dtype=np.float32)
        batches = sorted(obs["batch"].unique()) if batch_key else None
        _, denoised = model.get_normalized_expression(
            n_samples=p["denoise_samples"], return_mean=True, transform_batch=batches,
            gene_list=[str(r.var_names[0])], include_protein_background=False, return_numpy=True)
    if model_dir is not None:
        model.save(str(model_dir), save_anndata=False, overwrite=True)
    val = hist.get("elbo_validation")
    facts = {"epochs_max": int(epochs), "epochs_trained": trained, "train_seconds": round(train_s, 1),
             "accelerator": "gpu" if on_gpu else "cpu",
             "elbo_validation_last": float(val.iloc[-1, 0]) if val is not None and len(val) else float("nan")}
    log.info("totalVI: %s", facts)
    return {"latent": latent, "denoised": np.asarray(denoised, dtype=np.float32), "facts": facts}


def integrate(mdata: md.MuData, *, params: dict | None = None, seed: int = 0,
              model_dir: str | Path | None = None) -> None:
    """Normalise, select HVGs and build ``mdata.obsm['X_integrated']`` in place (see module doc).

    Parameters
    ----------
    mdata
        Merged cohort with ``rna`` and ``prot`` raw counts and the batch column in ``obs``.
    params
        ``integration`` section of the config (defaults: :data:`DEFAULT_INTEGRATION`).
    seed
        Seeds PCA, Harmony, the kNN graphs and totalVI.
    model_dir
        Where to save the trained totalVI model (``method: totalvi`` only).
    """
    p = {**DEFAULT_INTEGRATION, **(params or {})}
    method = p["method"]
    if method not in METHODS:
        raise ValueError(f"integration.method {method!r} is not one of {', '.join(METHODS)}")
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
    mdata.obsm["X_unintegrated"] = _unit_blocks(rna_pcs, prot_pcs)
    mdata.obsm["X_pca_rna"] = rna_pcs
    mdata.obsm["X_pca_prot"] = prot_pcs
    info = {"method": method, "batch_key": key, "n_batches": int(n_batches), "n_hvg": int(hv.sum()),
            "protein_layer": prot_layer}
    batch = mdata.obs[key].to_numpy() if n_batches > 1 else None
    if method == "totalvi":
        res = run_totalvi(mdata, hv, batch_key=key if n_batches > 1 else None, params=p.get("totalvi"),
                          seed=seed, model_dir=model_dir)
        mdata.obsm["X_integrated"] = res["latent"]
        mdata.obsm["X_totalvi"] = res["latent"]
        prot.layers["totalvi_denoised"] = res["denoised"]
        info["totalvi"] = res["facts"]
    elif method in ("wnn", "harmony"):
        r, q = (harmony(rna_pcs, batch, seed), harmony(prot_pcs, batch, seed)) if batch is not None \
            else (rna_pcs, prot_pcs)
        mdata.obsm["X_integrated"] = _unit_blocks(r, q)
        mdata.obsm["X_harmony_rna"], mdata.obsm["X_harmony_prot"] = r, q
        if method == "wnn":
            g = wnn_graph(r, q, n_neighbors=p["wnn_neighbors"], seed=seed, obs_names=mdata.obs_names)
            for k in ("wnn_connectivities", "wnn_distances"):
                mdata.obsp[k] = g.obsp[k]
            for col in ("rna:mod_weight", "prot:mod_weight"):
                mdata.obs[col] = g.obs[col].to_numpy().astype(np.float32)
    else:
        mdata.obsm["X_integrated"] = mdata.obsm["X_unintegrated"]
    mdata.uns["integration"] = info
