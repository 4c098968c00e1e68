"""Figures for the report: UMAPs, composition per donor, forest plots per complication."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ._io import atomic_path  # noqa: E402


def _save(fig, path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def umap_plot(obs: pd.DataFrame, umap: np.ndarray, key: str, path) -> None:
    """UMAP coloured by an obs column, legend outside."""
    fig, ax = plt.subplots(figsize=(7, 5.5))
    cats = obs[key].astype(str)
    levels = sorted(cats.unique())
    cmap = plt.get_cmap("tab20" if len(levels) > 10 else "tab10")
    for i, lev in enumerate(levels):
        m = (cats == lev).to_numpy()
        ax.scatter(umap[m, 0], umap[m, 1], s=2, color=cmap(i % cmap.N), label=lev, rasterized=True)
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_xlabel("UMAP1"), ax.set_ylabel("UMAP2"), ax.set_title(key)
    ax.legend(markerscale=5, fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left", frameon=False)
    _save(fig, path)


def composition_plot(counts: pd.DataFrame, donors: pd.DataFrame, complications: list[str], path) -> None:
    """Stacked bars of state shares per donor, donors grouped by complication status."""
    share = counts.div(counts.sum(1), axis=0)
    key = donors.reindex(share.index)[complications].astype(str).agg("/".join, axis=1)
    order = key.sort_values(kind="stable").index
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(order)), 5))
    bottom = np.zeros(len(order))
    cmap = plt.get_cmap("tab20")
    for i, state in enumerate(share.columns):
        vals = share.loc[order, state].to_numpy()
        ax.bar(range(len(order)), vals, bottom=bottom, color=cmap(i % 20), label=state, width=0.85)
        bottom += vals
    ax.set_xticks(range(len(order)), [f"{d}\n{key[d]}" for d in order], rotation=90, fontsize=6)
    ax.set_ylabel("share of cells")
    ax.set_title(f"composition per donor (grouped by {'/'.join(complications)})")
    ax.legend(fontsize=6, bbox_to_anchor=(1.01, 1), loc="upper left", frameon=False)
    _save(fig, path)


def forest_plot(table: pd.DataFrame, complication: str, path) -> None:
    """log2 fold change with 95% CI per state, one panel per contrast; hypotheses in red."""
    contrasts = list(dict.fromkeys(table["contrast"]))
    fig, axes = plt.subplots(1, len(contrasts), figsize=(4.5 * len(contrasts), 6), squeeze=False, sharey=True)
    states = sorted(table["cell_state"].unique())
    for ax, c in zip(axes[0], contrasts):
        sub = table[table["contrast"] == c].set_index("cell_state").reindex(states)
        y = np.arange(len(states))
        t = sub["testable"].fillna(False).astype(bool).to_numpy()
        hyp = (sub["hypothesis"] == "hypothesis").to_numpy()
        col = np.where(hyp, "crimson", "black")
        for i in np.flatnonzero(t):
            ax.plot([sub["ci_low"].iloc[i], sub["ci_high"].iloc[i]], [y[i], y[i]], color=col[i], lw=1)
            ax.plot(sub["log2fc"].iloc[i], y[i], "o", color=col[i], ms=4)
            if sub["fdr"].iloc[i] < 0.1:
                ax.text(sub["ci_high"].iloc[i], y[i], " *", va="center", color=col[i])
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(c, fontsize=9)
        ax.set_xlabel("log2 fold change of share in parent (95% CI)")
        ax.set_yticks(y, states, fontsize=7)
    fig.suptitle(f"{complication}: differential abundance per state (* FDR < 0.1; red = hypothesis)", fontsize=10)
    _save(fig, path)


def qc_plot(summary: pd.DataFrame, path) -> None:
    """Cells kept and removed per reason, per sample."""
    reasons = [c for c in summary.columns if c.startswith("removed_")]
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(summary)), 4.5))
    x = np.arange(len(summary))
    ax.bar(x, summary["cells_kept"], color="0.7", label="kept")
    bottom = summary["cells_kept"].to_numpy(float)
    cmap = plt.get_cmap("tab10")
    for i, r in enumerate(reasons):
        ax.bar(x, summary[r], bottom=bottom, color=cmap(i % 10), label=r.replace("removed_", ""))
        bottom += summary[r].to_numpy(float)
    ax.set_xticks(x, summary["sample"], rotation=90, fontsize=6)
    ax.set_ylabel("cells (a cell removed for several reasons counts in each)")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left", frameon=False)
    _save(fig, path)


def qc_sample_plot(flags: pd.DataFrame, thresholds: dict, sample: str, path) -> None:
    """One sample's QC metrics: histograms of kept and removed cells with the thresholds drawn."""
    panels = [
        ("log1p total RNA counts", np.log1p(flags["total_counts"]), thresholds.get("log1p_counts")),
        ("log1p genes detected", np.log1p(flags["n_genes"]),
         [np.log1p(v) for v in thresholds.get("genes", [])] or None),
        ("% mitochondrial", flags["pct_mito"], [thresholds.get("pct_mito_max")]),
        ("log1p total ADT counts", np.log1p(flags["adt_total"]), thresholds.get("log1p_adt")),
        ("log1p isotype-control counts", np.log1p(flags["adt_isotype"]), [thresholds.get("log1p_isotype_max")]),
        ("% haemoglobin / platelet genes", flags["pct_hb"] + flags["pct_platelet"],
         [thresholds.get("pct_hb_max")]),
    ]
    if "doublet_score" in flags:
        panels.append(("scrublet doublet score", flags["doublet_score"], [thresholds.get("scrublet_threshold")]))
    kept = flags["qc_pass"].to_numpy(bool)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.1 * len(panels), 3.0))
    for ax, (title, values, thr) in zip(axes, panels):
        v = np.asarray(values, dtype=float)
        finite = np.isfinite(v)
        bins = np.histogram_bin_edges(v[finite], bins=50) if finite.any() else 10
        ax.hist([v[finite & kept], v[finite & ~kept]], bins=bins, stacked=True, color=["0.6", "crimson"],
                label=["kept", "removed"])
        for t in thr or []:
            if t is not None and np.isfinite(t):
                ax.axvline(t, color="k", ls="--", lw=1)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, frameon=False)
    fig.suptitle(f"{sample}: {int(kept.sum())} of {len(kept)} cells kept", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def write_index(path, *, figures: list[str], tables: dict[str, str], warnings: list[str]) -> None:
    """A plain HTML page with the figures and the Markdown tables as preformatted text."""
    rel = Path(path).parent
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>sscsig report</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}pre{font-size:11px;"
             "white-space:pre-wrap}</style></head><body><h1>sscsig report</h1>"]
    for w in warnings:
        parts.append(f"<p style='color:#a00'><b>Warning:</b> {w}</p>")
    for f in figures:
        parts.append(f"<h2>{Path(f).stem}</h2><img src='{os.path.relpath(f, rel)}' style='max-width:100%'>")
    for name, md in tables.items():
        parts.append(f"<h2>complication {name}</h2><pre>{md}</pre>")
    parts.append("</body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts))
