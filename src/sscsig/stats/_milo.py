"""Neighbourhood differential abundance (Milo; Dann et al., Nat Biotechnol 2022) per contrast.

pertpy's Milo on the integrated latent space (``obsm['X_integrated']``) of the contrast's donors,
design ``~ <covariates> + condition`` (the reference study used ``~ age + condition``), fitted with
PyDESeq2 (``solver="pydeseq2"``; the edgeR solver needs R). Donors are the samples of the count
matrix; cells can be subsampled per donor first (the study used 1,000 per sample). ``n_neighbors: auto``
sizes the kNN graph so that neighbourhoods hold ~5 cells per donor (k = 5 x donors, within 30-100).

Neighbourhoods are summarised per annotated state, weighting each neighbourhood by the number of the
state's cells in it: ``milo_logfc`` (weighted mean log fold change), ``milo_frac_sig`` (share of the
state's neighbourhood memberships in neighbourhoods with spatial FDR below ``fdr``) and
``milo_nhoods`` (neighbourhoods where the state is the majority).
"""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..design import UNASSIGNED, Contrast, Design
from ..neighbors import knn_transformer

log = logging.getLogger(__name__)

STATE_COLUMNS = ["contrast", "cell_state", "milo_nhoods", "milo_frac_sig", "milo_logfc"]


def subsample_per_donor(obs: pd.DataFrame, max_cells: int, *, seed: int, donor_key: str = "donor") -> np.ndarray:
    """Positions of at most ``max_cells`` cells per donor (seeded, order kept)."""
    rng = np.random.default_rng(seed)
    keep = []
    for _, idx in obs.groupby(obs[donor_key].astype(str), sort=True, observed=True).indices.items():
        idx = np.asarray(idx)
        keep.append(idx if len(idx) <= max_cells else np.sort(rng.choice(idx, max_cells, replace=False)))
    return np.sort(np.concatenate(keep)) if keep else np.array([], int)


def milo_contrast(
    obs: pd.DataFrame,
    latent: np.ndarray,
    donors: pd.DataFrame,
    contrast: Contrast,
    *,
    max_cells_per_donor: int = 1000,
    n_neighbors: int | str = "auto",
    prop: float = 0.1,
    fdr: float = 0.1,
    min_donors_per_group: int = 3,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Milo for one contrast. Returns (neighbourhood table, per-state summary, reason if not run).

    The keyword options are config ``milo`` (module docstring); ``donors`` is the design's donor
    table (covariates).
    """
    import scanpy as sc

    name = contrast.name
    group = contrast.groups
    donor = obs["donor"].astype(str)
    cond = donor.map(group)
    n_case, n_ctrl = int((group == 1).sum()), int((group == 0).sum())
    if min(n_case, n_ctrl) < min_donors_per_group:
        return pd.DataFrame(), pd.DataFrame(columns=STATE_COLUMNS), (
            f"too few donors ({n_case} case, {n_ctrl} control; minimum {min_donors_per_group})")
    sel = np.flatnonzero(cond.notna().to_numpy())
    sub_obs = obs.iloc[sel]
    pick = sel[subsample_per_donor(sub_obs, max_cells_per_donor, seed=seed)]
    covariates = list(contrast.covariates)
    a = ad.AnnData(obs=pd.DataFrame(index=obs.index[pick]), obsm={"X_latent": np.asarray(latent)[pick]})
    a.obs["donor"] = donor.iloc[pick].to_numpy()
    a.obs["cell_state"] = obs["cell_state"].astype(str).iloc[pick].to_numpy()
    for cov in covariates:
        a.obs[cov] = donors.loc[a.obs["donor"], cov].to_numpy()
    # levels sort so that the last (the tested one) is the case group
    a.obs["condition"] = pd.Categorical(np.where(cond.iloc[pick] == 1, "1_case", "0_control"),
                                        categories=["0_control", "1_case"])
    k = n_neighbors
    if k == "auto":  # Milo's advice: neighbourhoods of ~5 cells per sample
        k = int(np.clip(5 * (n_case + n_ctrl), 30, 100))
    sc.pp.neighbors(a, use_rep="X_latent", n_neighbors=min(int(k), a.n_obs - 1), random_state=seed,
                    transformer=knn_transformer(a.n_obs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pertpy as pt

        milo = pt.tl.Milo()
        m = milo.load(a)
        milo.make_nhoods(m["rna"], prop=prop, seed=seed)
        m = milo.count_nhoods(m, sample_col="donor")
        design = contrast.formula
        milo.da_nhoods(m, design=design, solver="pydeseq2")
        milo.annotate_nhoods(m, anno_col="cell_state")
    var = m["milo"].var
    nh = pd.DataFrame({
        "contrast": name, "nhood": np.arange(var.shape[0]),
        "cell_state": var["nhood_annotation"].astype(str).to_numpy(),
        "state_frac": var["nhood_annotation_frac"].to_numpy(float),
        "n_cells": np.asarray(m["rna"].obsm["nhoods"].sum(0)).ravel(),
        "logFC": var["logFC"].to_numpy(float), "PValue": var["PValue"].to_numpy(float),
        "SpatialFDR": var["SpatialFDR"].to_numpy(float),
    })
    nh["design"] = design
    nh["k"] = int(k)
    return nh, summarise_states(m["rna"].obsm["nhoods"], a.obs["cell_state"], nh, name, fdr=fdr), ""


def summarise_states(nhoods, states: pd.Series, nh: pd.DataFrame, name: str, *, fdr: float) -> pd.DataFrame:
    """Per state: weighted mean logFC, weighted share in significant neighbourhoods, majority count."""
    tested = np.isfinite(nh["logFC"].to_numpy())
    sig = (nh["SpatialFDR"].to_numpy() < fdr) & tested
    nhoods = sp.csc_matrix(nhoods)
    rows = []
    for state in sorted(set(states) - {UNASSIGNED}):
        onehot = (states.to_numpy() == state).astype(float)
        w = np.asarray(nhoods.T @ onehot).ravel() * tested
        total = w.sum()
        rows.append({
            "contrast": name, "cell_state": state,
            "milo_nhoods": int(((nh["cell_state"] == state) & tested).sum()),
            "milo_frac_sig": float((w * sig).sum() / total) if total else np.nan,
            "milo_logfc": float((w * np.nan_to_num(nh["logFC"].to_numpy())).sum() / total) if total else np.nan,
        })
    return pd.DataFrame(rows, columns=STATE_COLUMNS)


def run_milo(obs: pd.DataFrame, latent: np.ndarray, design: Design, *, enabled: bool = True,
             max_cells_per_donor: int = 1000, n_neighbors: int | str = "auto", prop: float = 0.1,
             fdr: float = 0.1, min_donors_per_group: int = 3, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every contrast of the design (none when not ``enabled``); returns (all neighbourhoods,
    per-state summaries). The keyword options are config ``milo``."""
    nhs, states = [], []
    for c in (design.contrasts.values() if enabled else ()):
        nh, st, reason = milo_contrast(obs, latent, design.donors, c, max_cells_per_donor=max_cells_per_donor,
                                       n_neighbors=n_neighbors, prop=prop, fdr=fdr,
                                       min_donors_per_group=min_donors_per_group, seed=seed)
        if reason:
            log.warning("Milo skipped for contrast %s: %s", c.name, reason)
        nhs.append(nh)
        states.append(st)
    nh = pd.concat(nhs, ignore_index=True) if nhs else pd.DataFrame()
    st = pd.concat(states, ignore_index=True) if states else pd.DataFrame(columns=STATE_COLUMNS)
    return nh, st
