"""Per-sample quality control of RNA and protein, doublet removal and ADT normalisation.

Every removed cell gets its reasons in ``obs`` of the unfiltered object (``qc_*`` booleans); the
kept cells are written on, with their metrics. Thresholds are data-driven (median absolute
deviations, MAD, per sample) and bounded by fixed limits from config.

Protein normalisation: CLR per cell always (``prot.layers['clr']``); DSB (Mulè et al., Nat Commun
2022; muon's implementation) in ``prot.layers['dsb']`` when the empty droplets of the sample are
given (sample-sheet ``raw_path``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .ingest import ADT_PREFIX, InputError

log = logging.getLogger(__name__)

DEFAULT_QC: dict = {
    "nmads": {"log_counts": 5.0, "log_genes": 5.0, "pct_mito": 3.0, "log_adt": 5.0, "log_isotype": 5.0},
    "min_genes": 200,
    "max_genes": 5000,
    "max_pct_mito": 20.0,
    "max_pct_hb": 5.0,
    "max_pct_platelet": 5.0,
    "mito_prefix": "MT-",
    "hb_genes": ["HBB", "HBA1", "HBA2"],
    "platelet_genes": ["PPBP", "PF4"],
    "protein_doublet_pairs": [["CD3", "CD19"], ["CD3", "CD14"], ["CD19", "CD14"], ["CD3", "CD11c"],
                              ["CD4", "CD8"]],
    "scrublet": True,
    "scrublet_expected_rate": 0.05,
    "scrublet_threshold": "expected_rate",
    "scrublet_min_cells": 300,  # scrublet's simulated doublets are unreliable in tiny libraries
    "min_cells": 50,
    "on_too_few_cells": "stop",
    "protein_norm": "auto",
    "dsb": {"empty_max_log10_rna": 2.5, "empty_log10_adt": [1.5, 3.0], "pseudocount": 10,
            "denoise": True, "min_empty": 100},
}

REASONS = ("low_counts", "high_counts", "low_genes", "high_genes", "high_mito", "red_cell",
           "platelet", "adt_outlier", "isotype_outlier", "protein_doublet", "scrublet_doublet")


def _merge(params: dict | None) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_QC.items()}
    for k, v in (params or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k].update(v)
        else:
            out[k] = v
    return out


def mad_bounds(x: np.ndarray, nmads: float) -> tuple[float, float]:
    """``median -/+ nmads * MAD`` (MAD scaled to the normal standard deviation)."""
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med))) * 1.4826
    return med - nmads * mad, med + nmads * mad


def clr_per_cell(x) -> np.ndarray:
    """Centred log-ratio per cell, ``log1p(x) - mean(log1p(x))`` over the panel (Seurat's margin 2)."""
    dense = x.toarray() if sp.issparse(x) else np.asarray(x)
    logx = np.log1p(dense.astype(np.float64))
    return (logx - logx.mean(1, keepdims=True)).astype(np.float32)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of a 1-D sample (between-class variance maximised over 256 bins)."""
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(np.asarray(values, dtype=np.float64), nbins=256))


def find_protein(prot_var: pd.DataFrame, name: str) -> str | None:
    """The ``ADT_*`` feature of a target, matched case-insensitively (``CD8`` also finds ``CD8a``)."""
    want = name.lower()
    for var_name, ab in zip(prot_var.index, prot_var["antibody"].astype(str)):
        if ab.lower() == want:
            return var_name
    for var_name, ab in zip(prot_var.index, prot_var["antibody"].astype(str)):
        if ab.lower().rstrip("ab") == want:
            return var_name
    return None


@dataclass
class QCResult:
    """Outcome of :func:`qc_sample`."""

    kept: md.MuData
    flags: pd.DataFrame
    summary: dict
    thresholds: dict = field(default_factory=dict)


def qc_sample(mdata: md.MuData, *, params: dict | None = None, seed: int = 0,
              empty: md.MuData | None = None) -> QCResult:
    """Quality control of one sample.

    Parameters
    ----------
    mdata
        Output of :func:`sscsig.ingest.read_sample` (raw counts).
    params
        ``qc`` section of the config; missing keys take :data:`DEFAULT_QC`.
    seed
        Seed of scrublet's simulated doublets and of DSB's mixture fits.
    empty
        The sample's raw droplets (all barcodes, e.g. ``raw_feature_bc_matrix.h5`` read with
        :func:`~sscsig.ingest.read_sample`). Needed for DSB; empty droplets are chosen from it by
        :func:`select_empty_droplets`.

    Returns
    -------
    :class:`QCResult` with the kept cells (metrics in ``obs``; ``prot.layers['clr']`` and, with DSB,
    ``prot.layers['dsb']``), the per-cell flags of all cells and a one-row summary (cells in, removed
    per reason, kept, thresholds, protein normalisation).
    """
    p = _merge(params)
    sample = str(mdata.obs["sample"].iloc[0]) if mdata.n_obs else "?"
    rna, prot = mdata["rna"], mdata["prot"]
    x = sp.csr_matrix(rna.X)
    counts = np.asarray(x.sum(1)).ravel()
    genes = np.diff(x.indptr)
    sym = rna.var_names.astype(str)

    def pct(mask: np.ndarray) -> np.ndarray:
        sub = np.asarray(x[:, mask].sum(1)).ravel() if mask.any() else np.zeros(x.shape[0])
        return 100 * sub / np.maximum(counts, 1)

    pct_mito = pct(np.asarray(sym.str.startswith(p["mito_prefix"])))
    pct_hb = pct(np.asarray(sym.isin(p["hb_genes"])))
    pct_plt = pct(np.asarray(sym.isin(p["platelet_genes"])))
    adt_total = np.asarray(prot.X.sum(1)).ravel()
    iso = prot.var["isotype"].to_numpy(bool)
    adt_iso = np.asarray(prot.X[:, iso].sum(1)).ravel() if iso.any() else np.zeros(prot.n_obs)

    if mdata.n_obs == 0:
        raise InputError(f"sample {sample!r}: no cells in the input")
    nm = p["nmads"]
    lc_lo, lc_hi = mad_bounds(np.log1p(counts), nm["log_counts"])
    lg_lo, lg_hi = mad_bounds(np.log1p(genes), nm["log_genes"])
    _, mito_hi = mad_bounds(pct_mito, nm["pct_mito"])
    mito_max = min(mito_hi, float(p["max_pct_mito"])) if p["max_pct_mito"] is not None else mito_hi
    la_lo, la_hi = mad_bounds(np.log1p(adt_total), nm["log_adt"])
    _, li_hi = mad_bounds(np.log1p(adt_iso), nm["log_isotype"]) if iso.any() else (0.0, np.inf)
    min_genes = max(np.expm1(lg_lo), p["min_genes"] or 0)
    max_genes = min(np.expm1(lg_hi), p["max_genes"] or np.inf)
    flags = pd.DataFrame(index=mdata.obs_names)
    flags["low_counts"] = np.log1p(counts) < lc_lo
    flags["high_counts"] = np.log1p(counts) > lc_hi
    flags["low_genes"] = genes < min_genes
    flags["high_genes"] = genes > max_genes
    flags["high_mito"] = pct_mito > mito_max
    flags["red_cell"] = pct_hb > p["max_pct_hb"]
    flags["platelet"] = pct_plt > p["max_pct_platelet"]
    flags["adt_outlier"] = (np.log1p(adt_total) < la_lo) | (np.log1p(adt_total) > la_hi)
    # isotype controls bind nothing specifically: high counts mean sticky cells or aggregates
    flags["isotype_outlier"] = np.log1p(adt_iso) > li_hi

    clr = clr_per_cell(prot.X)
    thresholds = {
        "log1p_counts": [lc_lo, lc_hi], "genes": [float(min_genes), float(max_genes)],
        "pct_mito_max": mito_max, "log1p_adt": [la_lo, la_hi], "log1p_isotype_max": float(li_hi),
        "pct_hb_max": float(p["max_pct_hb"]), "pct_platelet_max": float(p["max_pct_platelet"]),
    }
    pre = ~flags.any(axis=1).to_numpy()  # positivity thresholds from cells that pass so far
    positive: dict[str, np.ndarray] = {}
    doublet = np.zeros(mdata.n_obs, bool)
    for a, b in p["protein_doublet_pairs"]:
        for name in (a, b):
            if name not in positive:
                var = find_protein(prot.var, name)
                if var is None:
                    continue
                j = prot.var_names.get_loc(var)
                thr = otsu_threshold(clr[pre, j]) if pre.sum() > 10 else np.inf
                thresholds[f"clr_pos_{name}"] = thr
                positive[name] = clr[:, j] > thr
        if a in positive and b in positive:
            doublet |= positive[a] & positive[b]
    flags["protein_doublet"] = doublet
    flags["scrublet_doublet"] = False
    obs_extra = {}
    if p["scrublet"] and pre.sum() < p["scrublet_min_cells"]:
        log.warning("sample %s: %d cells < qc.scrublet_min_cells (%d): scrublet skipped",
                    sample, pre.sum(), p["scrublet_min_cells"])
    elif p["scrublet"]:
        flags["scrublet_doublet"], score, thr = _scrublet(rna, pre, p, seed)
        thresholds["scrublet_threshold"] = thr
        obs_extra["doublet_score"] = score

    remove = flags[list(REASONS)].any(axis=1).to_numpy()
    metrics = pd.DataFrame(
        {"total_counts": counts, "n_genes": genes, "pct_mito": pct_mito, "pct_hb": pct_hb,
         "pct_platelet": pct_plt, "adt_total": adt_total, "adt_isotype": adt_iso, **obs_extra},
        index=mdata.obs_names,
    )
    flags = pd.concat([metrics, flags.add_prefix("qc_")], axis=1)
    flags["qc_pass"] = ~remove
    summary = {"sample": sample, "cells_in": int(mdata.n_obs)}
    for r in REASONS:
        summary[f"removed_{r}"] = int(flags[f"qc_{r}"].sum())
    summary["cells_removed"] = int(remove.sum())
    summary["cells_kept"] = int((~remove).sum())
    summary.update({f"thr_{k}": (v if not isinstance(v, list) else ";".join(f"{y:.4g}" for y in v))
                    for k, v in thresholds.items()})
    kept = mdata[~remove].copy()
    for col in metrics.columns:
        kept.obs[col] = metrics.loc[kept.obs_names, col].to_numpy()
    kept["prot"].layers["clr"] = clr[~remove]
    method = protein_norm_method(p["protein_norm"], has_empty=empty is not None, sample=sample)
    summary["protein_norm"] = method
    if method == "dsb":
        drops = select_empty_droplets(empty, kept.obs_names, params=p["dsb"], sample=sample)
        summary["dsb_empty_droplets"] = int(drops.n_obs)
        kept["prot"].layers["dsb"] = dsb_normalise(kept["prot"], drops, params=p["dsb"], seed=seed)
    kept.uns["protein_norm"] = method
    return QCResult(kept=kept, flags=flags, summary=summary, thresholds=thresholds)


def _scrublet(rna, pre: np.ndarray, p: dict, seed: int):
    """Scrublet on the cells that passed the other filters; returns (flag, score, threshold).

    ``scrublet_threshold``: a number; ``None`` for scrublet's automatic threshold (bimodality of the
    simulated doublets' scores; it under-calls in PBMC libraries of a few thousand cells); or
    ``"expected_rate"`` (default): the ``round(scrublet_expected_rate * n)`` highest-scoring cells
    of the sample are called, as DoubletFinder does with its expected doublet number.
    """
    import anndata as ad
    import scanpy as sc

    sub = ad.AnnData(X=sp.csr_matrix(rna.X[pre]), obs=pd.DataFrame(index=rna.obs_names[pre]))
    mode = p["scrublet_threshold"]
    by_rate = isinstance(mode, str)
    if by_rate and mode != "expected_rate":
        raise InputError(f"qc.scrublet_threshold must be a number, null or 'expected_rate', not {mode!r}")
    sc.pp.scrublet(
        sub,
        expected_doublet_rate=p["scrublet_expected_rate"],
        threshold=None if by_rate else mode,
        random_state=seed,
        verbose=False,
        n_prin_comps=min(30, sub.n_obs - 1, sub.n_vars - 1),
        # exact kNN (scikit-learn): above 4,096 cells + simulated doublets scanpy would switch to
        # pynndescent, whose numba compilation costs each QC job ~35 s, far more than the search
        use_approx_neighbors=False,
    )
    score = np.full(rna.n_obs, np.nan)
    score[pre] = sub.obs["doublet_score"].to_numpy()
    flag = np.zeros(rna.n_obs, bool)
    if by_rate:
        n_call = int(round(p["scrublet_expected_rate"] * sub.n_obs))
        s = sub.obs["doublet_score"].to_numpy()
        order = np.argsort(-s, kind="stable")
        thr = float(s[order[n_call - 1]]) if n_call else np.inf
        called = np.zeros(sub.n_obs, bool)
        called[order[:n_call]] = True
        flag[pre] = called
    else:
        flag[pre] = sub.obs["predicted_doublet"].fillna(False).to_numpy(bool)
        thr = float(sub.uns["scrublet"].get("threshold", np.nan))
    return flag, score, thr


def normalised_protein(prot) -> tuple[np.ndarray, pd.Index, str]:
    """The cohort's normalised protein without isotype controls: (values, names, layer used).

    DSB (``layers['dsb']``) where the QC stage made it, CLR (``layers['clr']``) otherwise.
    """
    layer = "dsb" if "dsb" in prot.layers else "clr"
    keep = ~prot.var["isotype"].to_numpy(bool)
    return np.asarray(prot.layers[layer])[:, keep], prot.var_names[keep], layer


def protein_norm_method(choice: str, *, has_empty: bool, sample: str) -> str:
    """Resolve ``qc.protein_norm`` (``auto`` | ``dsb`` | ``clr``) for one sample."""
    if choice not in ("auto", "dsb", "clr"):
        raise InputError(f"qc.protein_norm must be 'auto', 'dsb' or 'clr', not {choice!r}")
    if choice == "dsb" and not has_empty:
        raise InputError(f"sample {sample!r}: qc.protein_norm is 'dsb' but the sample sheet gives no "
                         "raw_path (raw droplets) for it")
    if choice == "auto":
        return "dsb" if has_empty else "clr"
    return choice


def select_empty_droplets(raw: md.MuData, cells: pd.Index, *, params: dict | None = None,
                          sample: str = "?") -> "ad.AnnData":
    """The background droplets of a raw library, as in the DSB vignette.

    Barcodes that are not cells, with ``log10`` RNA UMIs below ``empty_max_log10_rna`` and ``log10``
    ADT counts within ``empty_log10_adt``. Raises :class:`InputError` when fewer than
    ``min_empty`` remain.
    """
    p = {**DEFAULT_QC["dsb"], **(params or {})}
    rna_n = np.log10(np.asarray(raw["rna"].X.sum(1)).ravel() + 1)
    adt_n = np.log10(np.asarray(raw["prot"].X.sum(1)).ravel() + 1)
    lo, hi = p["empty_log10_adt"]
    keep = (~raw.obs_names.isin(cells)) & (rna_n < p["empty_max_log10_rna"]) & (adt_n >= lo) & (adt_n < hi)
    if keep.sum() < p["min_empty"]:
        raise InputError(
            f"sample {sample!r}: {int(keep.sum())} empty droplets in its raw_path with log10 ADT in "
            f"[{lo}, {hi}) and log10 RNA < {p['empty_max_log10_rna']} (need qc.dsb.min_empty = "
            f"{p['min_empty']}); is raw_path the raw (unfiltered) matrix?")
    return raw["prot"][keep].copy()


def dsb_normalise(cells: "ad.AnnData", empty: "ad.AnnData", *, params: dict | None = None,
                  seed: int = 0) -> np.ndarray:
    """DSB-normalised protein of ``cells`` (float32, cells x proteins) with ``empty`` as background.

    Step I: ``log(x + pseudocount)`` standardised by the mean and sd of each protein in empty
    droplets. Step II (``denoise``): per cell, the technical component (first principal component of
    the isotype controls and the cell's background mean from a 2-component Gaussian mixture) is
    regressed out. Wraps :func:`muon.prot.pp.dsb`; proteins are matched by name.
    """
    import anndata as ad
    import warnings

    import muon as mu

    p = {**DEFAULT_QC["dsb"], **(params or {})}
    missing = [v for v in cells.var_names if v not in empty.var_names]
    if missing:
        raise InputError(f"DSB: proteins of the cells absent from the raw droplets: {missing[:5]}")
    a = ad.AnnData(X=sp.csr_matrix(cells.X, dtype=np.float64), var=pd.DataFrame(index=cells.var_names),
                   obs=pd.DataFrame(index=cells.obs_names))
    e = ad.AnnData(X=sp.csr_matrix(empty[:, cells.var_names].X, dtype=np.float64),
                   var=pd.DataFrame(index=cells.var_names), obs=pd.DataFrame(index=empty.obs_names))
    iso = list(cells.var_names[cells.var["isotype"].to_numpy(bool)]) if "isotype" in cells.var else []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*empty_counts_range.*")
        mu.prot.pp.dsb(a, e, pseudocount=p["pseudocount"], denoise_counts=p["denoise"],
                       isotype_controls=iso or None, random_state=seed)
    return np.asarray(a.X, dtype=np.float32)


def check_enough_cells(summary: dict, *, min_cells: int, policy: str) -> str | None:
    """Apply the too-few-cells policy: raise (``stop``) or return a warning text (``drop``)."""
    kept = summary["cells_kept"]
    if kept >= min_cells:
        return None
    msg = (f"sample {summary['sample']!r}: {kept} cells left after QC "
           f"(minimum qc.min_cells = {min_cells}; {summary['cells_in']} cells in)")
    if policy == "stop":
        raise InputError(msg + "; set qc.on_too_few_cells: drop to continue without it")
    return msg + "; sample dropped"


__all__ = ["ADT_PREFIX", "DEFAULT_QC", "QCResult", "qc_sample", "clr_per_cell", "find_protein",
           "mad_bounds", "check_enough_cells", "dsb_normalise", "normalised_protein", "select_empty_droplets",
           "protein_norm_method"]
