"""Is a composition finding biology or sample handling? The handling-stress check.

Immediate-early and heat-shock genes (EGR1, FOS, JUN, IER2, DUSP1, NR4A1, HSPA1A, ...) rise when
blood waits before processing or cells are dissociated warm, the same genes that define a state
such as CD14.EGR1. Per cell, :func:`stress_scores` scores a published dissociation/stress gene set
(van den Brink et al., Nat Methods 2017; ``sscsig/data/stress_genes.tsv``) with
``scanpy.tl.score_genes``; :func:`sample_stress` shows it per sample and batch; and
:func:`stress_adjusted_tests` re-runs the donor-level composition test of every state with one more
covariate: the donor's mean stress score in the state's parent lineage outside the state (for
CD14.EGR1: the other monocytes). A state that rises because a donor's sample was stressed rises
with that covariate and loses its effect; a state that rises in patients whose other monocytes
are not stressed keeps it.

The adjustment needs stress to vary within the groups. When the cases' samples were all handled
one way and the controls' another (stress confounded with the group), no model can tell the two
apart: on the demo with stress planted in every SRC sample and no true effect, CD14.EGR1 stays
significant after adjustment (FDR 0.023), while the covariate differs between the groups by 12.4
standard deviations. So every test also reports that difference (``stress_diff``, cases minus
controls in pooled SDs, and ``stress_diff_pvalue``, two-sided Mann-Whitney), and
:func:`stress_warnings` flags a hypothesis whose groups differ in stress, not only one that loses
significance. Where stress and group are nearly collinear (variance inflation factor of the group,
``1 / (1 - r^2)`` with ``r`` their correlation over the test's donors, above ``max_vif``), the
adjusted test is not estimable and is reported as not testable instead of with a p-value.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..design import UNASSIGNED, Contrast, Design, bh_fdr
from ._abundance import test_contrast

log = logging.getLogger(__name__)

ADJUSTED_COLUMNS = ["contrast", "cell_state", "parent", "log2fc_stress_adj", "ci_low_stress_adj",
                    "ci_high_stress_adj", "pvalue_stress_adj", "fdr_stress_adj", "reason_stress_adj",
                    "stress_diff", "stress_diff_pvalue"]


def stress_scores(rna, genes: list[str], *, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Per-cell handling-stress score (``score_genes`` on log-normalised RNA) and the genes used."""
    from ._signatures import score_cells

    measured = set(rna.var_names)
    present = [g for g in genes if g in measured]
    if len(present) < 5:  # checked before scoring: score_genes would fail first, less clearly
        from ..errors import InputError

        raise InputError(f"stress check: only {len(present)} of the {len(genes)} stress genes are in the data")
    scores, _ = score_cells(rna, {"stress": {"genes": list(genes), "states": []}}, seed=seed, min_coverage=0.0)
    return scores["stress"].to_numpy(), present


def sample_stress(obs: pd.DataFrame, score: np.ndarray, *, lineage: str = "Mono", batch_key: str = "batch") -> pd.DataFrame:
    """Per sample: donor, batch, cells, mean stress score of all cells and of ``lineage`` cells."""
    df = pd.DataFrame({"sample": obs["sample"].astype(str).to_numpy(), "donor": obs["donor"].astype(str).to_numpy(),
                       "batch": obs[batch_key].astype(str).to_numpy() if batch_key in obs else "",
                       "lineage": obs["lineage"].astype(str).to_numpy(), "score": score})
    g = df.groupby("sample", sort=False)
    out = g.agg(donor=("donor", "first"), batch=("batch", "first"), n_cells=("score", "size"),
                stress_all=("score", "mean"))
    sub = df[df["lineage"] == lineage].groupby("sample")["score"].agg(["size", "mean"])
    out[f"n_{lineage}"] = sub["size"].reindex(out.index).fillna(0).astype(int)
    out[f"stress_{lineage}"] = sub["mean"].reindex(out.index)
    return out.reset_index()


def parent_stress(obs: pd.DataFrame, score: np.ndarray, parents: dict[str, str]) -> pd.DataFrame:
    """Donor x state: the donor's mean stress score over the cells of the state's parent lineage
    that are not of the state (NaN where there are none)."""
    state = obs["cell_state"].astype(str).to_numpy()
    donor = obs["donor"].astype(str).to_numpy()
    lineage_of = pd.Series(parents)
    cell_parent = lineage_of.reindex(state).to_numpy()
    out = {}
    for s, p in parents.items():
        m = (cell_parent == p) & (state != s)
        out[s] = pd.Series(score[m]).groupby(donor[m]).mean()
    return pd.DataFrame(out)


def stress_difference(stress: pd.Series, groups: pd.Series) -> tuple[float, float]:
    """Cases minus controls of a donor-level stress covariate: the difference of the means in pooled
    standard deviations and the two-sided Mann-Whitney p-value (exact for small groups). NaN when
    a group has fewer than two donors with a value."""
    from scipy.stats import mannwhitneyu

    g = groups.reindex(stress.index)
    a, b = stress[(g == 1) & stress.notna()], stress[(g == 0) & stress.notna()]
    if len(a) < 2 or len(b) < 2:
        return np.nan, np.nan
    sd = np.sqrt(((len(a) - 1) * a.var() + (len(b) - 1) * b.var()) / (len(a) + len(b) - 2))
    d = (a.mean() - b.mean()) / sd if sd > 0 else np.nan
    return float(d), float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def group_vif(stress: pd.Series, groups: pd.Series) -> float:
    """Variance inflation factor of the case/control indicator given the stress covariate,
    ``1 / (1 - r^2)`` (``r``: their correlation over the donors with both); NaN below 3 donors."""
    g = groups.reindex(stress.index)
    ok = stress.notna() & g.notna()
    if ok.sum() < 3 or stress[ok].std() == 0 or g[ok].std() == 0:
        return np.nan
    r = np.corrcoef(stress[ok].astype(float), g[ok].astype(float))[0, 1]
    return float(1 / max(1 - r * r, 1e-12))


def stress_adjusted_tests(counts: pd.DataFrame, parents: dict[str, str], design: Design,
                          covariate: pd.DataFrame, *, min_donors_per_group: int = 3, min_parent_cells: int = 10,
                          min_state_cells: int = 10, max_vif: float = 10.0) -> pd.DataFrame:
    """The composition test of every state (share of its parent, :func:`test_contrast`) with the
    donors' stress covariate (``covariate``: donor x state, :func:`parent_stress`) added to each
    contrast's covariates; BH FDR within the contrast. Donors without a covariate value leave the test.
    Each row also carries :func:`stress_difference` of the covariate between the contrast's groups
    (``stress_diff``, ``stress_diff_pvalue``); where :func:`group_vif` exceeds ``max_vif`` the
    adjusted test is not testable (stress collinear with the group)."""
    rows = []
    for c in design.contrasts.values():
        res = []
        for s in sorted(counts.columns):
            if s == UNASSIGNED or s not in parents:
                continue
            siblings = [t for t in counts.columns if parents.get(t) == parents[s]]
            stress = covariate[s].reindex(counts.index) if s in covariate else pd.Series(np.nan, index=counts.index)
            donors = design.donors.reindex(counts.index).assign(stress_covariate=stress)
            groups = c.groups.reindex(counts.index).where(stress.notna())
            adj = Contrast(name=c.name, complication=c.complication, covariates=(*c.covariates, "stress_covariate"),
                           groups=groups)
            t = test_contrast(counts[siblings], parents, donors, adj, min_donors_per_group=min_donors_per_group,
                              min_parent_cells=min_parent_cells, min_state_cells=min_state_cells)
            row = t[t["cell_state"] == s].iloc[0].copy()
            row["stress_diff"], row["stress_diff_pvalue"] = stress_difference(stress, groups)
            vif = group_vif(stress, groups)
            if row["testable"] and vif > max_vif:
                row[["log2fc", "ci_low", "ci_high", "pvalue"]] = np.nan
                row["testable"] = False
                row["reason"] = (f"not estimable: the stress covariate is collinear with the group (VIF {vif:.0f} > "
                                 f"{max_vif:g})")
            res.append(row)
        tab = pd.DataFrame(res)
        if len(tab):
            tab["fdr"] = bh_fdr(tab["pvalue"].where(tab["testable"].astype(bool)))
            rows.append(tab)
    if not rows:
        return pd.DataFrame(columns=ADJUSTED_COLUMNS)
    tab = pd.concat(rows, ignore_index=True)
    return pd.DataFrame({"contrast": tab["contrast"], "cell_state": tab["cell_state"], "parent": tab["parent"],
                         "log2fc_stress_adj": tab["log2fc"], "ci_low_stress_adj": tab["ci_low"],
                         "ci_high_stress_adj": tab["ci_high"], "pvalue_stress_adj": tab["pvalue"],
                         "fdr_stress_adj": tab["fdr"], "reason_stress_adj": tab["reason"],
                         "stress_diff": tab["stress_diff"], "stress_diff_pvalue": tab["stress_diff_pvalue"]}
                        )[ADJUSTED_COLUMNS]


def stress_warnings(table: pd.DataFrame, *, fdr: float = 0.1, confounding_pvalue: float = 0.05) -> list[str]:
    """A sentence for every hypothesis row of a complication table that is significant (FDR <
    ``fdr``) and either is not after the stress adjustment, or whose cases and controls differ in
    the stress covariate (``stress_diff_pvalue`` < ``confounding_pvalue``: handling confounded with
    the group, which the adjusted model cannot undo)."""
    out = []
    if "fdr_stress_adj" not in table:
        return out
    for _, r in table[table["hypothesis"] == "hypothesis"].iterrows():
        if not r["fdr"] < fdr:
            continue
        where = f"the donors' handling-stress score in {r['parent']} outside the state"
        if r.get("stress_diff_pvalue", np.nan) < confounding_pvalue:  # confounded: says more than "lost"
            adjusted = (f"the stress-adjusted test (FDR {r['fdr_stress_adj']:.2g}) cannot separate the two"
                        if pd.notna(r["fdr_stress_adj"]) else
                        "the stress-adjusted test is not estimable (stress collinear with the group)")
            out.append(f"{r['cell_state']} in {r['contrast']} (FDR {r['fdr']:.2g}): {where} differs between cases "
                       f"and controls ({r['stress_diff']:+.1f} SD, Mann-Whitney p {r['stress_diff_pvalue']:.2g}); "
                       f"handling is confounded with the group and {adjusted}: the finding may reflect sample "
                       "handling, not biology")
        elif not r["fdr_stress_adj"] < fdr:
            out.append(f"{r['cell_state']} in {r['contrast']} (FDR {r['fdr']:.2g}) is not significant once {where} "
                       f"is in the model (FDR {r['fdr_stress_adj']:.2g}): the finding may reflect sample "
                       "handling, not biology")
    return out


__all__ = ["ADJUSTED_COLUMNS", "group_vif", "parent_stress", "sample_stress", "stress_adjusted_tests", "stress_difference",
           "stress_scores", "stress_warnings"]
