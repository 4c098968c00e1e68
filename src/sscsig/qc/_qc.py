"""Per-sample quality control of RNA and protein, doublet removal and ADT normalisation.

Every cell gets its metrics and its removal reasons (``qc_*`` booleans) in the flags table of
:class:`QCResult` (written as ``qc/<sample>.cells.tsv``); the kept cells are written on, with their
metrics in ``obs``. Thresholds are data-driven (median absolute
deviations, MAD, per sample) and bounded by fixed limits from config.

Protein normalisation: CLR per cell always (``prot.layers['clr']``); DSB (Mulè et al., Nat Commun
2022; :func:`sscsig.protein.dsb_normalise`) in ``prot.layers['dsb']`` when the empty droplets of the sample are
given (sample-sheet ``raw_path``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..config import default
from ..errors import InputError
from ..protein import (clr_per_cell, dsb_normalise, find_protein, otsu_separation, otsu_threshold, protein_norm_method,
                       select_empty_droplets)

log = logging.getLogger(__name__)

REASONS = ("low_counts", "high_counts", "low_genes", "high_genes", "high_mito", "red_cell",
           "platelet", "adt_outlier", "isotype_outlier", "protein_doublet", "scrublet_doublet")


def mad_bounds(x: np.ndarray, nmads: float) -> tuple[float, float]:
    """``median -/+ nmads * MAD`` (MAD scaled to the normal standard deviation)."""
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med))) * 1.4826
    return med - nmads * mad, med + nmads * mad


@dataclass
class QCResult:
    """Outcome of :func:`qc_sample`."""

    kept: md.MuData
    flags: pd.DataFrame
    summary: dict
    thresholds: dict = field(default_factory=dict)


def qc_sample(
    mdata: md.MuData,
    *,
    nmads: dict | None = None,
    min_genes: int | None = 200,
    max_genes: int | None = 5000,
    max_pct_mito: float | None = 20.0,
    max_pct_hb: float = 5.0,
    max_pct_platelet: float = 5.0,
    mito_prefix: str = "MT-",
    hb_genes=("HBB", "HBA1", "HBA2"),
    platelet_genes=("PPBP", "PF4"),
    protein_doublet_pairs=(("CD3", "CD19"), ("CD3", "CD14"), ("CD19", "CD14"), ("CD3", "CD11c"), ("CD4", "CD8")),
    doublet_min_separation: float = 0.7,
    scrublet: bool = True,
    scrublet_expected_rate: float = 0.05,
    scrublet_threshold: float | str | None = "expected_rate",
    scrublet_min_cells: int = 300,
    min_cells: int = 50,
    on_too_few_cells: str = "stop",
    protein_norm: str = "auto",
    dsb: dict | None = None,
    seed: int = 0,
    empty: md.MuData | None = None,
) -> QCResult:
    """Quality control of one sample.

    The keyword options are config ``qc`` (their defaults and meaning: ``config/schemas``); ``nmads``
    and ``dsb`` given in part take the schema's defaults for the keys they omit.

    Parameters
    ----------
    mdata
        Output of :func:`sscsig.io.read_sample` (raw counts).
    nmads
        MAD multipliers of the data-driven bounds: ``log_counts``, ``log_genes``, ``pct_mito``,
        ``log_adt``, ``log_isotype``.
    min_genes, max_genes, max_pct_mito
        Fixed bounds that the MAD bounds may not cross (the study: 200 < genes < 5,000, mito < 20%).
    max_pct_hb, max_pct_platelet, hb_genes, platelet_genes, mito_prefix
        Red cells and platelets: cells above these shares of haemoglobin / platelet gene UMIs.
    protein_doublet_pairs
        Heterotypic doublets: cells positive (Otsu threshold of CLR) for both proteins of a pair.
    doublet_min_separation
        Otsu's threshold splits any distribution in two, also one without positive cells (CD19 in
        a B-cell-depleted sample): a protein is used for doublets only where the split separates
        (between-class / total variance at the threshold, :func:`~sscsig.protein.otsu_separation`,
        at least this; ~0.64 for one normal population, 0.8-0.95 for the twin's and pbmc10k's
        lineage markers). Below it, no cell counts as positive for that protein (logged).
    scrublet, scrublet_expected_rate, scrublet_threshold, scrublet_min_cells
        Scrublet doublet scores, skipped below ``scrublet_min_cells``; see :func:`call_scrublet`.
    min_cells, on_too_few_cells
        Fewer kept cells than ``min_cells``: raise :class:`InputError` (``stop``) or mark the sample
        dropped with a warning (``drop``; ``summary['dropped']``, ``summary['warning']``).
    protein_norm, dsb
        ``auto`` (DSB when ``empty`` is given), ``dsb`` or ``clr``; DSB's options.
    seed
        Seed of scrublet's simulated doublets and of DSB's mixture fits.
    empty
        The sample's raw droplets (all barcodes, e.g. ``raw_feature_bc_matrix.h5`` read with
        :func:`~sscsig.io.read_sample`). Needed for DSB; background droplets are chosen from it by
        :func:`sscsig.protein.select_empty_droplets`.

    Returns
    -------
    :class:`QCResult` with the kept cells (metrics in ``obs``; ``prot.layers['clr']`` and, with DSB,
    ``prot.layers['dsb']``), the per-cell flags of all cells and a one-row summary (cells in, removed
    per reason, kept, thresholds, protein normalisation, dropped and why).
    """
    nm = {**default("qc.nmads"), **(nmads or {})}
    dsb = {**default("qc.dsb"), **(dsb or {})}
    sample = str(mdata.obs["sample"].iloc[0]) if mdata.n_obs else "?"
    log.info("QC of %s (%d cells): genes in [%s, %s], mito <= %s%%, scrublet %s, min %d cells, protein %s", sample,
             mdata.n_obs, min_genes, max_genes, max_pct_mito, "on" if scrublet else "off", min_cells, protein_norm)
    rna, prot = mdata["rna"], mdata["prot"]
    x = sp.csr_matrix(rna.X)
    counts = np.asarray(x.sum(1)).ravel()
    genes = np.diff(x.indptr)
    sym = rna.var_names.astype(str)

    def pct(mask: np.ndarray) -> np.ndarray:
        sub = np.asarray(x[:, mask].sum(1)).ravel() if mask.any() else np.zeros(x.shape[0])
        return 100 * sub / np.maximum(counts, 1)

    pct_mito = pct(np.asarray(sym.str.startswith(mito_prefix)))
    pct_hb = pct(np.asarray(sym.isin(list(hb_genes))))
    pct_plt = pct(np.asarray(sym.isin(list(platelet_genes))))
    adt_total = np.asarray(prot.X.sum(1)).ravel()
    iso = prot.var["isotype"].to_numpy(bool)
    adt_iso = np.asarray(prot.X[:, iso].sum(1)).ravel() if iso.any() else np.zeros(prot.n_obs)

    if mdata.n_obs == 0:
        raise InputError(f"sample {sample!r}: no cells in the input")
    lc_lo, lc_hi = mad_bounds(np.log1p(counts), nm["log_counts"])
    lg_lo, lg_hi = mad_bounds(np.log1p(genes), nm["log_genes"])
    _, mito_hi = mad_bounds(pct_mito, nm["pct_mito"])
    mito_max = min(mito_hi, float(max_pct_mito)) if max_pct_mito is not None else mito_hi
    la_lo, la_hi = mad_bounds(np.log1p(adt_total), nm["log_adt"])
    _, li_hi = mad_bounds(np.log1p(adt_iso), nm["log_isotype"]) if iso.any() else (0.0, np.inf)
    lo_genes = max(np.expm1(lg_lo), min_genes or 0)
    hi_genes = min(np.expm1(lg_hi), max_genes or np.inf)
    flags = pd.DataFrame(index=mdata.obs_names)
    flags["low_counts"] = np.log1p(counts) < lc_lo
    flags["high_counts"] = np.log1p(counts) > lc_hi
    flags["low_genes"] = genes < lo_genes
    flags["high_genes"] = genes > hi_genes
    flags["high_mito"] = pct_mito > mito_max
    flags["red_cell"] = pct_hb > max_pct_hb
    flags["platelet"] = pct_plt > max_pct_platelet
    flags["adt_outlier"] = (np.log1p(adt_total) < la_lo) | (np.log1p(adt_total) > la_hi)
    # isotype controls bind nothing specifically: high counts mean sticky cells or aggregates
    flags["isotype_outlier"] = np.log1p(adt_iso) > li_hi

    clr = clr_per_cell(prot.X)
    thresholds = {
        "log1p_counts": [lc_lo, lc_hi], "genes": [float(lo_genes), float(hi_genes)],
        "pct_mito_max": mito_max, "log1p_adt": [la_lo, la_hi], "log1p_isotype_max": float(li_hi),
        "pct_hb_max": float(max_pct_hb), "pct_platelet_max": float(max_pct_platelet),
    }
    pre = ~flags.any(axis=1).to_numpy()  # positivity thresholds from cells that pass so far
    positive: dict[str, np.ndarray] = {}
    doublet = np.zeros(mdata.n_obs, bool)
    for a, b in protein_doublet_pairs:
        for name in (a, b):
            if name not in positive:
                var = find_protein(prot.var, name)
                if var is None:
                    continue
                j = prot.var_names.get_loc(var)
                thr = otsu_threshold(clr[pre, j]) if pre.sum() > 10 else np.inf
                sep = otsu_separation(clr[pre, j], thr) if np.isfinite(thr) else 0.0
                if sep < doublet_min_separation:
                    log.info("sample %s: %s has no separate positive population (Otsu separation %.2f < "
                             "qc.doublet_min_separation %.2f): not used for protein doublets", sample, name, sep,
                             doublet_min_separation)
                    thr = np.inf
                thresholds[f"clr_pos_{name}"] = thr
                positive[name] = clr[:, j] > thr
        if a in positive and b in positive:
            doublet |= positive[a] & positive[b]
    flags["protein_doublet"] = doublet
    flags["scrublet_doublet"] = False
    obs_extra = {}
    if scrublet and pre.sum() < scrublet_min_cells:
        log.warning("sample %s: %d cells < qc.scrublet_min_cells (%d): scrublet skipped",
                    sample, pre.sum(), scrublet_min_cells)
    elif scrublet:
        flags["scrublet_doublet"], score, thr = call_scrublet(
            rna, pre, expected_rate=scrublet_expected_rate, threshold=scrublet_threshold, seed=seed)
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
    method = protein_norm_method(protein_norm, has_empty=empty is not None, sample=sample)
    summary["protein_norm"] = method
    if method == "dsb":
        drops = select_empty_droplets(
            empty, kept.obs_names, empty_max_log10_rna=dsb["empty_max_log10_rna"],
            empty_log10_adt=dsb["empty_log10_adt"], min_empty=dsb["min_empty"], sample=sample)
        summary["dsb_empty_droplets"] = int(drops.n_obs)
        kept["prot"].layers["dsb"] = dsb_normalise(kept["prot"], drops, pseudocount=dsb["pseudocount"],
                                                   denoise=dsb["denoise"], seed=seed)
    kept.uns["protein_norm"] = method
    warning = check_enough_cells(summary, min_cells=min_cells, policy=on_too_few_cells)
    summary["dropped"] = warning is not None
    summary["warning"] = warning or ""
    return QCResult(kept=kept, flags=flags, summary=summary, thresholds=thresholds)


def call_scrublet(rna, pre: np.ndarray, *, expected_rate: float = 0.05,
                  threshold: float | str | None = "expected_rate", seed: int = 0):
    """Scrublet on the cells ``pre`` that passed the other filters; returns (flag, score, threshold).

    ``threshold``: a number; ``None`` for scrublet's automatic threshold (bimodality of the
    simulated doublets' scores; it under-calls in PBMC libraries of a few thousand cells); or
    ``"expected_rate"`` (default): the ``round(expected_rate * n)`` highest-scoring cells of the
    sample are called, as DoubletFinder does with its expected doublet number.
    """
    import anndata as ad
    import scanpy as sc

    sub = ad.AnnData(X=sp.csr_matrix(rna.X[pre]), obs=pd.DataFrame(index=rna.obs_names[pre]))
    mode = threshold
    by_rate = isinstance(mode, str)
    if by_rate and mode != "expected_rate":
        raise InputError(f"qc.scrublet_threshold must be a number, null or 'expected_rate', not {mode!r}")
    sc.pp.scrublet(
        sub,
        expected_doublet_rate=expected_rate,
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
        n_call = int(round(expected_rate * sub.n_obs))
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


__all__ = ["QCResult", "REASONS", "call_scrublet", "check_enough_cells", "mad_bounds", "qc_sample"]
