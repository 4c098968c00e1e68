"""Donor-level differential abundance of cell states between the groups of each contrast.

Cells are not replicates: every test here is on donors. For a state ``s`` with parent lineage ``P``
and donor ``d``, ``y_d`` = cells of ``s``, ``n_d`` = cells of ``P``; the model is a quasi-Poisson GLM

    log E[y_d] = log n_d + b0 + b1 * case_d + covariates_d,   Var[y_d] = phi * E[y_d],

so ``exp(b1)`` is the covariate-adjusted ratio of the state's share of its parent between case and
control donors (reported as ``log2fc``). ``phi`` is the Pearson dispersion (floored at 1), and the
Wald statistic is referred to a t distribution on the residual degrees of freedom, which keeps the
test calibrated with few donors. Benjamini-Hochberg FDR within each contrast.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from ..design import UNASSIGNED, Contrast, Design, bh_fdr, design_matrix

log = logging.getLogger(__name__)

COLUMNS = ["contrast", "complication", "denominator", "cell_state", "parent", "n_case", "n_control", "cells_case",
           "cells_control", "prop_case", "prop_control", "log2fc", "ci_low", "ci_high", "pvalue",
           "fdr", "testable", "reason"]


def state_counts(obs: pd.DataFrame, *, state_key: str = "cell_state", donor_key: str = "donor") -> pd.DataFrame:
    """Donor x state cell counts (Unassigned excluded)."""
    keep = obs[state_key].astype(str) != UNASSIGNED
    return pd.crosstab(obs.loc[keep, donor_key].astype(str), obs.loc[keep, state_key].astype(str))


def state_parents(obs: pd.DataFrame) -> dict[str, str]:
    """The lineage of each state (majority lineage of its cells)."""
    keep = obs["cell_state"].astype(str) != UNASSIGNED
    tab = pd.crosstab(obs.loc[keep, "cell_state"].astype(str), obs.loc[keep, "lineage"].astype(str))
    return tab.idxmax(axis=1).to_dict()


def quasi_poisson_fit(y: np.ndarray, n: np.ndarray, x: pd.DataFrame):
    """The Poisson GLM of counts ``y`` on ``x`` with offset ``log n`` (statsmodels, its warnings
    silenced) and its quasi-Poisson dispersion: the Pearson statistic over the residual degrees of
    freedom, floored at 1. Returns ``(fit, dispersion)``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.GLM(y, x, family=sm.families.Poisson(), offset=np.log(n)).fit()
    return fit, max(1.0, float(np.sum((y - fit.mu) ** 2 / fit.mu) / fit.df_resid))


def quasi_poisson_test(y: np.ndarray, n: np.ndarray, x: pd.DataFrame) -> dict:
    """Fit the quasi-Poisson GLM with offset ``log n``; return the ``case`` effect (natural log)."""
    y = np.asarray(y, float)
    n = np.asarray(n, float)
    case = x["case"].to_numpy() == 1
    note = ""
    if y[case].sum() == 0 or y[~case].sum() == 0:
        y, n = y + 0.5, n + 1.0
        note = "zero cells in one group: 0.5 added to every donor's count"
    fit, phi = quasi_poisson_fit(y, n, x)
    df_resid = fit.df_resid
    j = list(x.columns).index("case")
    beta = float(fit.params.iloc[j])
    se = float(np.sqrt(fit.cov_params().iloc[j, j] * phi))
    t = beta / se
    p = float(2 * stats.t.sf(abs(t), df_resid))
    q = stats.t.ppf(0.975, df_resid)
    return {"beta": beta, "se": se, "pvalue": p, "ci": (beta - q * se, beta + q * se),
            "dispersion": phi, "df": df_resid, "note": note}


def test_contrast(
    counts: pd.DataFrame,
    parents: dict[str, str],
    donors: pd.DataFrame,
    contrast: Contrast,
    *,
    min_donors_per_group: int = 3,
    min_parent_cells: int = 10,
    min_state_cells: int = 10,
    denominator: str = "parent",
) -> pd.DataFrame:
    """All states of one contrast (see module docstring). Untestable states get a reason, no p-value.

    Parameters
    ----------
    counts
        Donor x state cell counts (:func:`state_counts`).
    parents
        State -> parent lineage (:func:`state_parents`).
    donors
        The design's donor table (covariates).
    contrast
        The contrast's groups and covariates.
    min_donors_per_group, min_parent_cells, min_state_cells
        Config ``abundance``: donors count when they have ``min_parent_cells`` cells of the parent;
        a state is tested with ``min_donors_per_group`` such donors per group and ``min_state_cells``
        cells of the state.
    denominator
        ``parent`` tests the state's share of its parent lineage (offset = parent cells), ``all`` its
        share of all of the donor's annotated cells.
    """
    if denominator not in ("parent", "all"):
        raise ValueError(f"denominator must be 'parent' or 'all', not {denominator!r}")
    name, covariates = contrast.name, list(contrast.covariates)
    group = contrast.groups.reindex(counts.index)
    in_contrast = group.notna()
    rows = []
    for state in sorted(counts.columns):
        parent = parents[state]
        siblings = [s for s in counts.columns if denominator == "all" or parents[s] == parent]
        n_parent = counts[siblings].sum(1)
        ok = in_contrast & (n_parent >= min_parent_cells)
        g = group[ok]
        y = counts.loc[ok, state]
        n = n_parent[ok]
        share = y / n
        row = {
            "contrast": name, "complication": contrast.complication, "denominator": denominator,
            "cell_state": state,
            "parent": parent, "n_case": int((g == 1).sum()), "n_control": int((g == 0).sum()),
            "cells_case": int(y[g == 1].sum()), "cells_control": int(y[g == 0].sum()),
            "prop_case": float(share[g == 1].mean()) if (g == 1).any() else np.nan,
            "prop_control": float(share[g == 0].mean()) if (g == 0).any() else np.nan,
            "log2fc": np.nan, "ci_low": np.nan, "ci_high": np.nan, "pvalue": np.nan,
            "testable": False, "reason": "",
        }
        x = design_matrix(donors.loc[g.index], g, covariates, name) if len(g) else None
        reason = []
        if row["n_case"] < min_donors_per_group or row["n_control"] < min_donors_per_group:
            reason.append(
                f"too few donors ({row['n_case']} case, {row['n_control']} control with >= "
                f"{min_parent_cells} {parent if denominator == 'parent' else 'annotated'} cells; "
                f"minimum {min_donors_per_group} per group)"
            )
        elif y.sum() < min_state_cells:
            reason.append(f"too few cells of the state ({int(y.sum())} < {min_state_cells})")
        elif np.linalg.matrix_rank(x.to_numpy(float)) < x.shape[1]:
            reason.append("design not estimable: case status confounded with covariates " + ", ".join(covariates))
        elif len(g) - x.shape[1] < 2:
            reason.append("fewer than 2 residual degrees of freedom")
        if reason:
            row["reason"] = "; ".join(reason)
        else:
            res = quasi_poisson_test(y.to_numpy(), n.to_numpy(), x)
            row.update(
                log2fc=res["beta"] / np.log(2), ci_low=res["ci"][0] / np.log(2),
                ci_high=res["ci"][1] / np.log(2), pvalue=res["pvalue"], testable=True,
                reason=res["note"],
            )
        rows.append(row)
    out = pd.DataFrame(rows)
    out["fdr"] = bh_fdr(out["pvalue"].where(out["testable"].astype(bool)))
    return out[COLUMNS]


def differential_abundance(
    obs: pd.DataFrame, design: Design, *, min_donors_per_group: int = 3, min_parent_cells: int = 10,
    min_state_cells: int = 10,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every contrast of the design, each state's share of its parent and of all cells.

    The keyword options are config ``abundance`` (see :func:`test_contrast`). Returns (donor x
    state counts, results of all contrasts stacked).
    """
    counts = state_counts(obs)
    parents = state_parents(obs)
    donors = design.donors.reindex(counts.index)
    results = [test_contrast(counts, parents, donors, c, min_donors_per_group=min_donors_per_group,
                             min_parent_cells=min_parent_cells, min_state_cells=min_state_cells, denominator=d)
               for c in design.contrasts.values() for d in ("parent", "all")]
    return counts, pd.concat(results, ignore_index=True)
