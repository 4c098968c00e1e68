"""Figures for the report: QC, UMAPs, marker heatmap, composition per donor, forest plots, Milo
neighbourhoods, pseudobulk volcano plots, donor-level signature scores, integration metrics, the batch
check of the calls."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..io import atomic_path  # noqa: E402


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


def forest_plot(table: pd.DataFrame, complication: str, path, *, fdr: float = 0.1) -> None:
    """log2 fold change with 95% CI per state, one panel per contrast; hypotheses in red, states
    below ``fdr`` starred."""
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
            if sub["fdr"].iloc[i] < fdr:
                ax.text(sub["ci_high"].iloc[i], y[i], " *", va="center", color=col[i])
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(c, fontsize=9)
        ax.set_xlabel("log2 fold change of share in parent (95% CI)")
        ax.set_yticks(y, states, fontsize=7)
    fig.suptitle(f"{complication}: differential abundance per state (* FDR < {fdr:g}; red = hypothesis)",
                 fontsize=10)
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


def donor_groups(donors: pd.DataFrame, complications: list[str]) -> pd.Series:
    """A readable group per donor: ``HD``, or ``SSc`` plus its complications (``SSc SRC+ILD``)."""
    out = {}
    for d, row in donors.iterrows():
        comps = [c for c in complications if bool(row.get(c, False)) and str(row.get(c)).lower() != "false"]
        base = str(row.get("group", "")) or "donor"
        out[d] = base + (" " + "+".join(comps) if comps else "")
    return pd.Series(out)


def heatmap_plot(mean_rna: pd.DataFrame, mean_prot: pd.DataFrame, path) -> None:
    """States x (signature genes | proteins): per-column z-scores of the state means."""
    def z(df):
        return (df - df.mean()) / df.std().replace(0, 1)

    fig, axes = plt.subplots(1, 2, figsize=(0.22 * (mean_rna.shape[1] + mean_prot.shape[1]) + 5,
                                            0.3 * len(mean_rna) + 2),
                             gridspec_kw={"width_ratios": [max(mean_rna.shape[1], 1), max(mean_prot.shape[1], 1)]})
    for ax, df, title in ((axes[0], mean_rna, "signature genes (log-normalised)"),
                          (axes[1], mean_prot, "proteins (normalised ADT)")):
        im = ax.imshow(z(df).to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-2.5, vmax=2.5)
        ax.set_xticks(range(df.shape[1]), [c.replace("ADT_", "") for c in df.columns], rotation=90, fontsize=6)
        ax.set_yticks(range(len(df)), df.index, fontsize=7)
        ax.set_title(title, fontsize=9)
    axes[1].set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.5, label="z-score across states")
    _save(fig, path)


def milo_plot(nhoods: pd.DataFrame, path, *, fdr: float = 0.1) -> None:
    """Milo neighbourhoods per state (beeswarm-like strip), one panel per contrast; red: spatial FDR < fdr."""
    contrasts = list(dict.fromkeys(nhoods["contrast"])) if len(nhoods) else []
    fig, axes = plt.subplots(1, max(len(contrasts), 1), figsize=(4 * max(len(contrasts), 1), 6.5),
                             squeeze=False, sharey=True)
    states = sorted(nhoods["cell_state"].unique()) if len(nhoods) else []
    rng = np.random.default_rng(0)
    for ax, c in zip(axes[0], contrasts):
        sub = nhoods[nhoods["contrast"] == c]
        for i, st in enumerate(states):
            pts = sub[sub["cell_state"] == st]
            y = i + rng.uniform(-0.3, 0.3, len(pts))
            sig = (pts["SpatialFDR"] < fdr).to_numpy()
            ax.scatter(pts["logFC"][~sig], y[~sig], s=5, color="0.6", rasterized=True)
            ax.scatter(pts["logFC"][sig], y[sig], s=7, color="crimson", rasterized=True)
        ax.axvline(0, color="k", lw=0.7, ls="--")
        ax.set_title(f"{c} ({sub['design'].iloc[0] if len(sub) else ''})", fontsize=8)
        ax.set_xlabel("neighbourhood log2 fold change")
        ax.set_yticks(range(len(states)), states, fontsize=7)
    if not contrasts:
        axes[0][0].text(0.5, 0.5, "Milo not run (see log)", ha="center")
    fig.suptitle(f"Milo neighbourhoods by majority state (red: spatial FDR < {fdr})", fontsize=10)
    _save(fig, path)


def volcano_plot(de: pd.DataFrame, contrast: str, state: str, path, *, fdr: float = 0.1, label: int = 10) -> None:
    """Pseudobulk DE of one state and contrast: log2 fold change vs -log10 p, FDR hits in red."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sub = de[(de["contrast"] == contrast) & (de["cell_state"] == state)].dropna(subset=["pvalue"])
    if len(sub):
        y = -np.log10(sub["pvalue"].clip(lower=1e-300))
        sig = (sub["padj"] < fdr).to_numpy()
        ax.scatter(sub["log2FoldChange"][~sig], y[~sig], s=4, color="0.6", rasterized=True)
        ax.scatter(sub["log2FoldChange"][sig], y[sig], s=6, color="crimson", rasterized=True)
        for _, r in sub.assign(y=y).nsmallest(label, "pvalue").iterrows():
            ax.text(r["log2FoldChange"], r["y"], str(r["gene"]), fontsize=6)
        ax.set_title(f"{state}, {contrast}: {int(sig.sum())} of {len(sub)} genes at FDR < {fdr}", fontsize=9)
    else:
        ax.set_title(f"{state}, {contrast}: not testable (too few donors with cells)", fontsize=9)
    ax.set_xlabel("log2 fold change (case / control, adjusted)")
    ax.set_ylabel("-log10 p")
    _save(fig, path)


def signature_plot(scores: pd.DataFrame, groups: pd.Series, path) -> None:
    """Donor-level signature scores (one point per donor) by donor group, one panel per signature."""
    sigs = list(dict.fromkeys(scores["signature"]))
    order = sorted(groups.unique())
    fig, axes = plt.subplots(1, max(len(sigs), 1), figsize=(3.6 * max(len(sigs), 1), 4), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, name in zip(axes[0], sigs):
        sub = scores[scores["signature"] == name].dropna(subset=["score"])
        g = groups.reindex(sub["donor"]).to_numpy()
        for i, lev in enumerate(order):
            v = sub["score"].to_numpy()[g == lev]
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=14, color=plt.get_cmap("tab10")(i % 10))
            if len(v):
                ax.plot([i - 0.25, i + 0.25], [np.median(v)] * 2, color="k", lw=1.2)
        ax.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{name}\n({sub['states'].iloc[0] if len(sub) else ''})", fontsize=8)
        ax.set_ylabel("donor mean score")
    fig.suptitle("signature scores per donor (points = donors, bars = medians)", fontsize=10)
    _save(fig, path)


def metrics_plot(metrics: pd.DataFrame, path) -> None:
    """Integration metrics per embedding: batch mixing (left) and biology conserved (right)."""
    groups = [("batch mixing", ["batch_asw", "ilisi"]), ("biology conserved", ["celltype_asw", "ari", "nmi"])]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    w = 0.8 / max(len(metrics), 1)
    for ax, (title, cols) in zip(axes, groups):
        for i, (_, r) in enumerate(metrics.iterrows()):
            ax.bar(np.arange(len(cols)) + i * w, [r[c] for c in cols], width=w, label=r["embedding"])
        ax.set_xticks(np.arange(len(cols)) + w * (len(metrics) - 1) / 2, cols)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("score (higher is better)")
    axes[1].legend(fontsize=7, frameon=False)
    _save(fig, path)


def cohort_figures(annotated, counts_tsv, scores_tsv, donors: pd.DataFrame, out: dict[str, str], *,
                   complications: list[str], signatures: dict[str, dict]) -> None:
    """The cohort's figures from its files: UMAPs (``out['umap_<key>']`` for cell state, lineage,
    batch, group and each complication), the marker heatmap (signature genes and proteins per
    state), composition per donor and donor-level signature scores.

    ``donors``: the design's donor table; ``signatures``: resolved definitions (name -> genes, states).
    """
    from ..io import read_elems, read_modality
    from ..protein import normalised_protein

    groups = donor_groups(donors, complications)
    obs, umap = read_elems(annotated, "obs", "obsm/X_umap")
    obs["donor_group"] = groups.reindex(obs["donor"].astype(str)).to_numpy()
    for key in ("cell_state", "lineage", "batch", "group", *complications):
        col = "donor_group" if key in complications else key
        umap_plot(obs.assign(**{key: obs[col].astype(str)}) if col in obs else obs, umap, key, out[f"umap_{key}"])
    states = obs["cell_state"].astype(str)
    rna = read_modality(annotated, "rna")
    prot = read_modality(annotated, "prot", x=None, layers=("dsb", "clr"))
    genes = [g for g in dict.fromkeys(g for s in signatures.values() for g in s["genes"]) if g in rna.var_names]
    x = rna[:, genes].X
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    mean_rna = pd.DataFrame(x, columns=genes).groupby(states.to_numpy()).mean()
    prot_values, prot_names, _ = normalised_protein(prot)
    mean_prot = pd.DataFrame(prot_values, columns=prot_names).groupby(states.to_numpy()).mean()
    heatmap_plot(mean_rna, mean_prot.reindex(mean_rna.index), out["heatmap"])
    counts = pd.read_csv(counts_tsv, sep="\t", index_col=0)
    composition_plot(counts, donors, complications, out["composition"])
    signature_plot(pd.read_csv(scores_tsv, sep="\t"), groups, out["signatures"])


def stats_figures(tables: dict[str, str], milo_nhoods, de_genes: dict[str, str],
                  hypotheses: list[tuple[str, str]], out: dict[str, str], *, abundance_fdr: float = 0.1,
                  milo_fdr: float = 0.1, de_fdr: float = 0.1) -> None:
    """Forest plot per complication (``out['forest_<complication>']``), Milo neighbourhoods
    (``out['milo']``), a volcano plot per (contrast, state) hypothesis (``out['volcano_<c>_<s>']``)."""
    for comp, path in tables.items():
        forest_plot(pd.read_csv(path, sep="\t"), comp, out[f"forest_{comp}"], fdr=abundance_fdr)
    try:
        nh = pd.read_csv(milo_nhoods, sep="\t")
    except pd.errors.EmptyDataError:
        nh = pd.DataFrame(columns=["contrast", "cell_state", "logFC", "SpatialFDR", "design"])
    milo_plot(nh, out["milo"], fdr=milo_fdr)
    for contrast, state in hypotheses:
        de = pd.read_csv(de_genes[contrast], sep="\t")
        volcano_plot(de, contrast, state, out[f"volcano_{contrast}_{state}"], fdr=de_fdr)


def biomarker_roc_plot(predictions: pd.DataFrame, metrics: pd.DataFrame, complication: str, path) -> None:
    """Out-of-fold ROC curves per contrast: the signature model and the covariates-only baseline."""
    from sklearn.metrics import roc_curve

    contrasts = list(dict.fromkeys(metrics["contrast"])) or [""]
    fig, axes = plt.subplots(1, len(contrasts), figsize=(4.2 * len(contrasts), 4.2), squeeze=False)
    for ax, c in zip(axes[0], contrasts):
        for kind, colour in (("signature", "crimson"), ("baseline", "0.4")):
            sub = predictions[(predictions["contrast"] == c) & (predictions["model"] == kind)]
            m = metrics[(metrics["contrast"] == c) & (metrics["model"] == kind)]
            if len(sub) and sub["truth"].nunique() == 2 and len(m):
                fpr, tpr, _ = roc_curve(sub["truth"], sub["probability"])
                r = m.iloc[0]
                ax.step(fpr, tpr, where="post", color=colour,
                        label=f"{kind}: AUC {r['auc']:.2f} [{r['auc_ci_low']:.2f}, {r['auc_ci_high']:.2f}], "
                              f"p = {r['perm_pvalue']:.3g}")
        ax.plot([0, 1], [0, 1], ls="--", color="0.8", lw=0.8)
        n = metrics[metrics["contrast"] == c]
        title = f"{c} ({int(n['n_case'].iloc[0])} vs {int(n['n_control'].iloc[0])} donors)" if len(n) else c
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.legend(fontsize=6.5, loc="lower right", frameon=False)
    fig.suptitle(f"{complication}: out-of-fold risk, nested cross-validation", fontsize=10)
    _save(fig, path)


def biomarker_pca_plot(pca: pd.DataFrame, loadings: pd.DataFrame, complication: str, path, *, top: int = 6) -> None:
    """Donors on the first two principal components of their compositions, coloured by status;
    the states with the largest loadings as arrows."""
    fig, ax = plt.subplots(figsize=(6, 5))
    if {"PC1", "PC2"} <= set(pca.columns):
        status = pca[complication].astype(str) if complication in pca else pd.Series("donor", index=pca.index)
        for i, lev in enumerate(sorted(status.unique())):
            m = (status == lev).to_numpy()
            ax.scatter(pca.loc[m, "PC1"], pca.loc[m, "PC2"], s=30, color=plt.get_cmap("tab10")(i),
                       label=f"{complication} {lev}")
        ld = loadings.set_index("state").drop(index="explained_variance_ratio", errors="ignore")
        ev = loadings.set_index("state").loc["explained_variance_ratio"] if "explained_variance_ratio" in \
            set(loadings["state"]) else None
        scale = float(np.abs(pca[["PC1", "PC2"]].to_numpy()).max())
        for state in (ld["PC1"] ** 2 + ld["PC2"] ** 2).sort_values(ascending=False).index[:top]:
            ax.arrow(0, 0, ld.loc[state, "PC1"] * scale, ld.loc[state, "PC2"] * scale, color="0.5", width=0.005,
                     head_width=0.05 * scale / 3)
            ax.text(ld.loc[state, "PC1"] * scale * 1.08, ld.loc[state, "PC2"] * scale * 1.08, state, fontsize=6)
        if ev is not None:
            ax.set_xlabel(f"PC1 ({100 * ev['PC1']:.0f}%)")
            ax.set_ylabel(f"PC2 ({100 * ev['PC2']:.0f}%)")
        ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"donors' state compositions ({complication})", fontsize=9)
    _save(fig, path)


def stress_plot(samples: pd.DataFrame, donors: pd.DataFrame, complications: list[str], path, *,
                lineage: str = "Mono") -> None:
    """Per-sample mean handling-stress score in ``lineage`` cells, by batch and by complication status."""
    col = f"stress_{lineage}" if f"stress_{lineage}" in samples else "stress_all"
    keys = ["batch", *complications]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.8), sharey=True, squeeze=False)
    rng = np.random.default_rng(0)
    for ax, key in zip(axes[0], keys):
        if key == "batch":
            grp = samples["batch"].astype(str)
        else:
            grp = donors.reindex(samples["donor"].astype(str))[key].astype(str).set_axis(samples.index) \
                if key in donors else pd.Series("?", index=samples.index)
        levels = sorted(grp.unique())
        for i, lev in enumerate(levels):
            v = samples.loc[grp == lev, col].to_numpy(float)
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=14, color=plt.get_cmap("tab10")(i % 10))
            if len(v):
                ax.plot([i - 0.25, i + 0.25], [np.nanmedian(v)] * 2, color="k", lw=1.2)
        ax.set_xticks(range(len(levels)), levels, rotation=45, ha="right", fontsize=7)
        ax.set_title(key, fontsize=9)
    axes[0][0].set_ylabel(f"mean stress score ({lineage} cells)")
    fig.suptitle("handling / dissociation stress per sample (van den Brink 2017 genes)", fontsize=10)
    _save(fig, path)


def batch_plot(check: pd.DataFrame, counts: pd.DataFrame, batches: pd.Series, path, *, fdr: float = 0.1,
               top: int = 6) -> None:
    """The donors' shares of the ``top`` states the batch check of the calls ranks first (smallest p
    among the testable ones; :func:`sscsig.stats.batch_association`), one panel each, donors by batch
    with the batch's median; a state flagged at ``fdr`` has its title in red.

    Parameters
    ----------
    check
        The abundance rule's ``abundance/batch_association.tsv``.
    counts
        Donor x state counts (``abundance/donor_state_counts.tsv``).
    batches
        Donor -> batch (:func:`sscsig.stats.donor_batches`).
    path
        The PNG to write.
    fdr, top
        Config ``abundance.fdr``; how many states to show.
    """
    tested = check[check["testable"].astype(str).str.lower() == "true"].sort_values(["pvalue", "cell_state"]).head(top)
    n = max(1, len(tested))
    fig, axes = plt.subplots(1, n, figsize=(2.8 * n + 0.6, 3.8), squeeze=False, layout="constrained")
    if tested.empty:
        axes[0][0].text(0.5, 0.5, "no state testable against the batches\n(abundance/batch_association.tsv)",
                        ha="center", va="center", fontsize=9)
        axes[0][0].set_axis_off()
    rng = np.random.default_rng(0)
    parent = check.set_index("cell_state")["parent"]
    batch = batches.reindex(counts.index)
    for ax, (_, r) in zip(axes[0], tested.iterrows()):
        siblings = [s for s in counts.columns if parent.get(s) == r["parent"]]
        share = (counts[r["cell_state"]] / counts[siblings].sum(1).replace(0, np.nan)).dropna()
        grp = batch.reindex(share.index).dropna().astype(str)
        levels = sorted(grp.unique())
        for i, lev in enumerate(levels):
            v = share[grp.index[grp == lev]].to_numpy(float)
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(v)), v, s=12, color=plt.get_cmap("tab10")(i % 10))
            ax.plot([i - 0.25, i + 0.25], [np.median(v)] * 2, color="k", lw=1.2)
        ax.set_xticks(range(len(levels)), levels, rotation=45, ha="right", fontsize=7)
        flagged = r["fdr"] < fdr
        ax.set_title(f"{r['cell_state']}\nFDR {r['fdr']:.2g}", fontsize=9, color="tab:red" if flagged else "k")
        ax.set_ylabel(f"share of {r['parent']}", fontsize=8)
    fig.suptitle("do the calls follow the batches? donors' shares by batch "
                 f"(red: differs beyond the design at FDR < {fdr})", fontsize=10)
    _save(fig, path)


def longitudinal_plot(table: pd.DataFrame, path) -> None:
    """Per donor sampled more than once: the hypothesis states' shares (left) and the biomarker
    models' risk (right) over time; the sample in the group tests marked."""
    donors = list(dict.fromkeys(table["donor"])) if len(table) else []
    fig, axes = plt.subplots(max(len(donors), 1), 2, figsize=(9, 3.2 * max(len(donors), 1)), squeeze=False)
    shares = [c for c in table.columns if c.startswith("share:")]
    risks = [c for c in table.columns if c.startswith("risk:")]
    for row, d in zip(axes, donors):
        sub = table[table["donor"] == d]
        x = sub["time"].to_numpy(float) if "time" in sub else np.arange(len(sub))
        for ax, cols, ylabel in ((row[0], shares, "share of parent lineage"), (row[1], risks, "risk (probability)")):
            for c in cols:
                ax.plot(x, sub[c], "o-", label=c.split(":", 1)[1])
            base = sub["in_training"].astype(bool).to_numpy()
            for c in cols:
                ax.scatter(x[base], sub[c].to_numpy()[base], s=90, facecolors="none", edgecolors="k")
            ax.set_xticks(x, [f"{t}\n({v:g} d)" if "time" in sub else str(t)
                              for t, v in zip(sub["timepoint"], x)], fontsize=7)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.legend(fontsize=7, frameon=False)
        row[0].set_title(f"{d}: states over time (circled: the sample in the group tests)", fontsize=9)
        row[1].set_title(f"{d}: biomarker risk over time", fontsize=9)
    if not donors:
        axes[0][0].text(0.5, 0.5, "no donor sampled more than once", ha="center")
    _save(fig, path)


def tissue_plot(tissue_obs: pd.DataFrame, tissue_latent: np.ndarray, blood_obs: pd.DataFrame,
                blood_latent: np.ndarray, expression: pd.DataFrame, donor_shares: pd.DataFrame, path, *,
                tissue: str, donor_groups: pd.Series | None = None, max_blood_cells: int = 5000,
                seed: int = 0) -> None:
    """One tissue in three panels: UMAP of blood and tissue cells in the mapping's latent space
    (tissue cells coloured by tissue type / blood state, blood grey); expression of the reported
    genes along pseudotime (when computed); per-donor tissue vs blood share of each blood state.

    ``expression``: tissue cells x genes (log1p CP10k) for the pseudotime panel; ``donor_groups``:
    a label per donor (e.g. ``ILD`` / ``no ILD``) that colours the share panel.
    """
    import anndata as ad
    import scanpy as sc

    from ..neighbors import knn_transformer

    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(blood_obs), min(max_blood_cells, len(blood_obs)), replace=False))
    mapped = np.isfinite(tissue_latent).all(1)
    z = np.vstack([blood_latent[keep], tissue_latent[mapped]]).astype(np.float32)
    # exact neighbours and scanpy's UMAP: half the time of umap-learn's own (approximate) neighbours
    proxy = ad.AnnData(obsm={"X_latent": z}, shape=(len(z), 0))
    sc.pp.neighbors(proxy, use_rep="X_latent", n_neighbors=min(15, len(z) - 1), transformer=knn_transformer(len(z)),
                    random_state=seed)
    sc.tl.umap(proxy, min_dist=0.3, random_state=seed)
    emb = proxy.obsm["X_umap"]
    nb = len(keep)
    fig, axes = plt.subplots(1, 3, figsize=(21, 5.5), gridspec_kw={"wspace": 0.6})
    ax = axes[0]
    ax.scatter(emb[:nb, 0], emb[:nb, 1], s=2, color="0.85", label="blood", rasterized=True)
    t = tissue_obs[mapped]
    lab = np.where(t["tissue_type"].astype(str) == "immune", t["blood_state"].astype(str), t["tissue_type"].astype(str))
    levels = pd.Series(lab).value_counts().index[:19]
    cmap = plt.get_cmap("tab20")
    for i, lev in enumerate(levels):
        m = lab == lev
        ax.scatter(emb[nb:][m, 0], emb[nb:][m, 1], s=4, color=cmap(i), label=f"{tissue}: {lev}", rasterized=True)
    ax.set_xticks([]), ax.set_yticks([]), ax.set_title(f"{tissue} cells on the blood cohort (mapping latent space)")
    ax.legend(markerscale=3, fontsize=6, bbox_to_anchor=(1.0, 1), loc="upper left", frameon=False)
    ax = axes[1]
    pt = tissue_obs["pseudotime"] if "pseudotime" in tissue_obs else pd.Series(np.nan, index=tissue_obs.index)
    ok = np.isfinite(pt.to_numpy(float))
    if ok.any() and expression.shape[1]:
        order = np.argsort(pt.to_numpy(float)[ok])
        for j, g in enumerate(expression.columns):
            y = expression[g].to_numpy(float)[ok][order]
            x = pt.to_numpy(float)[ok][order]
            ax.scatter(x, y, s=3, alpha=0.3, color=cmap(2 * j))
            w = max(5, len(x) // 20)
            ax.plot(x, pd.Series(y).rolling(w, center=True, min_periods=1).mean(), color=cmap(2 * j), lw=2, label=g)
        ax.set_xlabel("pseudotime (blood monocyte -> tissue macrophage)"), ax.set_ylabel("log1p CP10k")
        ax.legend(frameon=False)
    else:
        ax.text(0.5, 0.5, "no trajectory for this tissue", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title("genes along pseudotime")
    ax = axes[2]
    sh = donor_shares[donor_shares["kind"] == "blood_state"].copy()
    groups = donor_groups.reindex(sh["donor"]).fillna("").to_numpy() if donor_groups is not None else np.full(len(sh), "")
    for j, gname in enumerate(sorted(set(groups))):
        m = groups == gname
        ax.scatter(sh["blood_share"].to_numpy()[m] + 1e-3, sh["tissue_share"].to_numpy()[m] + 1e-3, s=14,
                   color=cmap(2 * j), label=gname or "donors")
    top = sh.groupby("state")["tissue_share"].mean().sort_values(ascending=False).index[:6]
    for s in top:
        r = sh[sh["state"] == s][["blood_share", "tissue_share"]].mean()
        ax.annotate(s, (r["blood_share"] + 1e-3, r["tissue_share"] + 1e-3), fontsize=7)
    lim = [1e-3, 1.0]
    ax.plot(lim, lim, color="0.6", lw=0.8, ls="--")
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("share of the donor's blood cells"), ax.set_ylabel(f"share of the donor's {tissue} immune cells")
    ax.set_title("per donor and blood state: tissue vs blood"), ax.legend(frameon=False, fontsize=7)
    _save(fig, path)
