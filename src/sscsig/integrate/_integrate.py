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

``wnn``: weighted nearest neighbours (Hao et al. 2021, as Seurat's ``FindMultiModalNeighbors``;
:func:`sscsig.neighbors.wnn`): Harmony on the RNA and on the protein PCs when there are batches,
then the WNN graph (``obsp['wnn_connectivities']``, used for clustering) with per-cell modality weights
(``obs['rna:mod_weight']``, ``obs['prot:mod_weight']``). ``X_integrated`` is the concatenated
corrected PCs (for Milo and the metrics' silhouettes).

``harmony``: the concatenated Harmony-corrected PCs (no WNN graph). ``pca``: the unintegrated reference.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
import scanpy as sc

from ..errors import InputError
from ..neighbors import wnn
from ..protein import clr_per_cell, measured_mask, normalised_protein
from ..rna import log_normalised, selected_counts
from ._totalvi import run_totalvi

log = logging.getLogger(__name__)

METHODS = ("totalvi", "wnn", "harmony", "pca")


def normalise(mdata: md.MuData, *, rna_x: bool = True) -> None:
    """RNA: counts to ``layers['counts']``, ``X`` = log1p(CP10k) (:func:`log_normalised`; with
    ``rna_x=False`` ``X`` is left ``None``, for a caller that fills it later and holds one matrix less
    meanwhile). Protein: ``layers['clr']`` (per cell; NaN where a sample did not measure an antibody,
    :func:`sscsig.protein.clr_per_cell`)."""
    rna, prot = mdata["rna"], mdata["prot"]
    if "counts" not in rna.layers:
        rna.layers["counts"] = rna.X  # the same matrix, not a copy: X is replaced below
    rna.X = None
    if rna_x:
        _fill_rna_x(rna)
    _normalise_protein(prot)


def _normalise_protein(prot) -> None:
    if "counts" not in prot.layers:
        prot.layers["counts"] = prot.X.copy()
    prot.layers["clr"] = clr_per_cell(prot.layers["counts"], measured=measured_mask(prot))


def _fill_rna_x(rna, counts=None) -> None:
    rna.X = log_normalised(rna.layers["counts"] if counts is None else counts)
    rna.uns["log1p"] = {"base": None}  # as scanpy.pp.log1p records it


def _pca(x: np.ndarray | object, n: int, seed: int) -> np.ndarray:
    """PCA of a (sparse or dense) matrix; sparse input stays sparse (scanpy's implicit centring)."""
    n = max(1, min(n, x.shape[1] - 1, x.shape[0] - 1))
    if hasattr(x, "toarray"):
        tmp = sc.AnnData(X=x.astype(np.float32, copy=False))
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


def integrate(mdata: md.MuData, *, method: str = "totalvi", batch_key: str = "batch", n_hvg: int = 2000,
              n_pcs_rna: int = 30, n_pcs_prot: int = 15, wnn_neighbors: int = 20, totalvi: dict | None = None,
              seed: int = 0, model_dir: str | Path | None = None, counts=None, chunk_cells: int = 10_000) -> None:
    """Normalise, select HVGs and build ``mdata.obsm['X_integrated']`` in place (see module doc).

    The keyword options are config ``integration`` (defaults and meaning: ``config/schemas``).

    Parameters
    ----------
    mdata
        Merged cohort with ``rna`` and ``prot`` raw counts and the batch column in ``obs``.
    method
        ``totalvi``, ``wnn``, ``harmony`` or ``pca`` (unintegrated).
    batch_key
        ``obs`` column of the batches (one batch: nothing to correct).
    n_hvg, n_pcs_rna, n_pcs_prot
        Batch-aware Seurat v3 HVGs; principal components of RNA and of protein.
    wnn_neighbors
        Neighbours of the per-modality graphs and of the WNN graph.
    totalvi
        Options of :func:`~sscsig.integrate.run_totalvi` (config ``integration.totalvi``).
    seed
        Seeds PCA, Harmony, the kNN graphs and totalVI.
    model_dir
        Where to save the trained totalVI model (``method: totalvi`` only).
    counts
        The RNA raw counts apart from ``mdata``, typically left on disk
        (:func:`sscsig.io.backed_matrix` of the merged cohort's ``mod/rna/X``; ``mdata['rna']`` then
        read without ``X``, :func:`sscsig.io.read_h5mu` ``skip``); a CSR matrix in memory also works. They are read whole once, for the HVG selection, and otherwise a block of
        ``chunk_cells`` cells at a time: for the PCA, totalVI's HVG counts and ``X``. ``layers['counts']``
        is then not set (the rule copies it from the input file); the results are those of the
        counts in memory. Default: ``mdata['rna'].layers['counts']``, else ``X``.
    chunk_cells
        Cells log-normalised (or read from disk) at a time.
    """
    import scipy.sparse as sp

    if method not in METHODS:
        raise InputError(f"integration.method {method!r} is not one of {', '.join(METHODS)}")
    rna, prot = mdata["rna"], mdata["prot"]
    if counts is None:
        normalise(mdata, rna_x=False)  # X is built last: until then only the counts are held whole
        counts = rna.layers["counts"]
        on_disk = False
    else:
        on_disk = True
        if rna.X is not None or "counts" in rna.layers:
            raise ValueError("integrate: counts given on disk, but mdata['rna'] holds counts or X as well")
        _normalise_protein(prot)
    key = batch_key
    n_batches = mdata.obs[key].nunique() if key in mdata.obs else 1
    if n_batches > 1:
        rna.obs[key] = mdata.obs[key].astype(str).to_numpy()
    if on_disk:  # the HVG statistics need every cell at once: the one time the counts are read whole
        rna.layers["counts"] = (counts if sp.issparse(counts) else
                                counts.to_memory() if hasattr(counts, "to_memory") else counts[()])
    # check_values=False: the counts were checked to be integers when each sample was read
    # (sscsig.io.read_sample); scanpy's check would hold two more temporaries the size of the counts
    sc.pp.highly_variable_genes(
        rna, flavor="seurat_v3", n_top_genes=min(n_hvg, rna.n_vars), layer="counts",
        batch_key=key if n_batches > 1 else None, check_values=False,
    )
    if on_disk:
        del rna.layers["counts"]
    hv = rna.var["highly_variable"].to_numpy()
    rna_pcs = _pca(log_normalised(counts, columns=hv, chunk_cells=chunk_cells), n_pcs_rna, seed)
    norm, _, prot_layer = normalised_protein(prot)
    norm = (norm - norm.mean(0)) / np.maximum(norm.std(0), 1e-6)
    prot_pcs = _pca(norm, n_pcs_prot, seed)
    mdata.obsm["X_unintegrated"] = _unit_blocks(rna_pcs, prot_pcs)
    mdata.obsm["X_pca_rna"] = rna_pcs
    mdata.obsm["X_pca_prot"] = prot_pcs
    info = {"method": method, "batch_key": key, "n_batches": int(n_batches), "n_hvg": int(hv.sum()),
            "protein_layer": prot_layer}
    batch = mdata.obs[key].to_numpy() if n_batches > 1 else None
    if method == "totalvi":
        res = run_totalvi(mdata, hv, batch_key=key if n_batches > 1 else None, seed=seed, model_dir=model_dir,
                          counts=selected_counts(counts, columns=hv, chunk_cells=chunk_cells) if on_disk else None,
                          **(totalvi or {}))
        mdata.obsm["X_integrated"] = res["latent"]
        mdata.obsm["X_totalvi"] = res["latent"]
        denoised = np.full(prot.shape, np.nan, dtype=np.float32)  # NaN: antibodies not every sample has
        denoised[:, res["proteins"]] = res["denoised"]
        prot.layers["totalvi_denoised"] = denoised
        info["totalvi"] = res["facts"]
    elif method in ("wnn", "harmony"):
        r, q = (harmony(rna_pcs, batch, seed), harmony(prot_pcs, batch, seed)) if batch is not None \
            else (rna_pcs, prot_pcs)
        mdata.obsm["X_integrated"] = _unit_blocks(r, q)
        mdata.obsm["X_harmony_rna"], mdata.obsm["X_harmony_prot"] = r, q
        if method == "wnn":
            dist, conn, weights = wnn({"rna": r, "prot": q}, n_neighbors=wnn_neighbors, seed=seed)
            mdata.obsp["wnn_connectivities"], mdata.obsp["wnn_distances"] = conn, dist
            for col in ("rna", "prot"):
                mdata.obs[f"{col}:mod_weight"] = weights[col].to_numpy().astype(np.float32)
    else:
        mdata.obsm["X_integrated"] = mdata.obsm["X_unintegrated"]
    _fill_rna_x(rna, counts)
    mdata.uns["integration"] = info
