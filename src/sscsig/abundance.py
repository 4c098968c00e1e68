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
from statsmodels.stats.multitest import multipletests

from .annotate import UNASSIGNED
from .ingest import InputError

log = logging.getLogger(__name__)

DEFAULT_ABUNDANCE = {"min_donors_per_group": 3, "min_parent_cells": 10, "min_state_cells": 10}

COLUMNS = ["contrast", "complication", "denominator", "cell_state", "parent", "n_case", "n_control", "cells_case",
           "cells_control", "prop_case", "prop_control", "log2fc", "ci_low", "ci_high", "pvalue",
           "fdr", "testable", "reason"]


def donor_table(sheet: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per donor with the requested sample-sheet columns; conflicting values are an error."""
    missing = [c for c in columns if c not in sheet.columns]
    if missing:
        raise InputError(f"sample sheet has no column(s) {missing}")
    rows = {}
    for donor, sub in sheet.groupby("donor", sort=True):
        row = {}
        for c in columns:
            vals = sub[c].dropna().unique()
            if len(vals) > 1:
                raise InputError(
                    f"donor {donor!r} has conflicting values in column {c!r} across its samples: "
                    f"{list(vals)} (samples {list(sub['sample'])})"
                )
            row[c] = vals[0] if len(vals) else np.nan
        rows[donor] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def state_counts(obs: pd.DataFrame, *, state_key: str = "cell_state", donor_key: str = "donor") -> pd.DataFrame:
    """Donor x state cell counts (Unassigned excluded)."""
    keep = obs[state_key].astype(str) != UNASSIGNED
    return pd.crosstab(obs.loc[keep, donor_key].astype(str), obs.loc[keep, state_key].astype(str))


def state_parents(obs: pd.DataFrame) -> dict[str, str]:
    """The lineage of each state (majority lineage of its cells)."""
    keep = obs["cell_state"].astype(str) != UNASSIGNED
    tab = pd.crosstab(obs.loc[keep, "cell_state"].astype(str), obs.loc[keep, "lineage"].astype(str))
    return tab.idxmax(axis=1).to_dict()


def _matches(donors: pd.DataFrame, spec: dict, contrast: str, side: str) -> pd.Series:
    mask = pd.Series(True, index=donors.index)
    for col, val in spec.items():
        if col not in donors.columns:
            raise InputError(f"contrast {contrast!r}: {side} refers to unknown sample-sheet column {col!r}")
        values = donors[col]
        wanted = val if isinstance(val, list) else [val]
        if not any(_equal(values, w).any() for w in wanted):
            present = sorted(map(str, values.dropna().unique()))
            raise InputError(
                f"contrast {contrast!r}: {side} value {val!r} never occurs in column {col!r} "
                f"(values present: {present})"
            )
        mask &= np.logical_or.reduce([_equal(values, w) for w in wanted])
    return mask


def _as_bool(v) -> bool | None:
    text = str(v).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return None


def _equal(values: pd.Series, wanted) -> pd.Series:
    if isinstance(wanted, bool):
        return values.map(lambda v: _as_bool(v) is wanted).astype(bool)
    return values.astype(str) == str(wanted)


def contrast_groups(donors: pd.DataFrame, name: str, spec: dict) -> pd.Series:
    """``1`` case, ``0`` control, NaN neither, per donor; checks that groups do not overlap."""
    case = _matches(donors, spec["case"], name, "case")
    control = _matches(donors, spec["control"], name, "control")
    both = donors.index[case & control]
    if len(both):
        raise InputError(f"contrast {name!r}: donors {list(both)} match both case and control")
    out = pd.Series(np.nan, index=donors.index)
    out[case] = 1.0
    out[control] = 0.0
    return out


def design_matrix(donors: pd.DataFrame, group: pd.Series, covariates: list[str], contrast: str) -> pd.DataFrame:
    """Intercept, ``case`` and covariates (numeric centred; categorical one-hot, first level dropped)."""
    x = pd.DataFrame({"const": 1.0, "case": group}, index=donors.index)
    for cov in covariates:
        if cov not in donors.columns:
            raise InputError(f"contrast {contrast!r}: covariate {cov!r} is not a sample-sheet column")
        col = donors[cov]
        if col.isna().any():
            bad = list(col.index[col.isna()])
            raise InputError(f"contrast {contrast!r}: covariate {cov!r} is missing (NaN) for donors {bad}")
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all():
            x[cov] = num - num.mean()
        else:
            dummies = pd.get_dummies(col.astype(str), prefix=cov, drop_first=True, dtype=float)
            x = x.join(dummies)
    return x


def quasi_poisson_test(y: np.ndarray, n: np.ndarray, x: pd.DataFrame) -> dict:
    """Fit the quasi-Poisson GLM with offset ``log n``; return the ``case`` effect (natural log)."""
    y = np.asarray(y, float)
    n = np.asarray(n, float)
    case = x["case"].to_numpy() == 1
    note = ""
    if y[case].sum() == 0 or y[~case].sum() == 0:
        y, n = y + 0.5, n + 1.0
        note = "zero cells in one group: 0.5 added to every donor's count"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sm.GLM(y, x, family=sm.families.Poisson(), offset=np.log(n))
        fit = model.fit()
    df_resid = fit.df_resid
    mu = fit.mu
    phi = max(1.0, float(np.sum((y - mu) ** 2 / mu) / df_resid))
    j = list(x.columns).index("case")
    beta = float(fit.params.iloc[j])
    se = float(np.sqrt(fit.cov_params().iloc[j, j] * phi))
    t = beta / se
    p = float(2 * stats.t.sf(abs(t), df_resid))
    q = stats.t.ppf(0.975, df_resid)
    return {"beta": beta, "se": se, "pvalue": p, "ci": (beta - q * se, beta + q * se),
            "dispersion": phi, "df": df_resid, "note": note}


def add_fdr(results: pd.DataFrame) -> pd.DataFrame:
    """Benjamini-Hochberg ``fdr`` over the testable rows; untestable rows get NaN."""
    results["fdr"] = np.nan
    t = results["testable"].to_numpy(bool)
    if t.any():
        results.loc[t, "fdr"] = multipletests(results.loc[t, "pvalue"], method="fdr_bh")[1]
    return results


def test_contrast(
    counts: pd.DataFrame,
    parents: dict[str, str],
    donors: pd.DataFrame,
    name: str,
    spec: dict,
    *,
    params: dict | None = None,
    denominator: str = "parent",
) -> pd.DataFrame:
    """All states of one contrast (see module docstring). Untestable states get a reason, no p-value.

    ``denominator``: ``parent`` tests the state's share of its parent lineage (offset = parent cells),
    ``all`` its share of all of the donor's annotated cells.
    """
    p = {**DEFAULT_ABUNDANCE, **(params or {})}
    if denominator not in ("parent", "all"):
        raise ValueError(f"denominator must be 'parent' or 'all', not {denominator!r}")
    group = contrast_groups(donors, name, spec).reindex(counts.index)
    in_contrast = group.notna()
    covariates = list(spec.get("covariates", []))
    rows = []
    for state in sorted(counts.columns):
        parent = parents[state]
        siblings = [s for s in counts.columns if denominator == "all" or parents[s] == parent]
        n_parent = counts[siblings].sum(1)
        ok = in_contrast & (n_parent >= p["min_parent_cells"])
        g = group[ok]
        y = counts.loc[ok, state]
        n = n_parent[ok]
        share = y / n
        row = {
            "contrast": name, "complication": spec.get("complication", ""), "denominator": denominator,
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
        if row["n_case"] < p["min_donors_per_group"] or row["n_control"] < p["min_donors_per_group"]:
            reason.append(
                f"too few donors ({row['n_case']} case, {row['n_control']} control with >= "
                f"{p['min_parent_cells']} {parent if denominator == 'parent' else 'annotated'} cells; "
                f"minimum {p['min_donors_per_group']} per group)"
            )
        elif y.sum() < p["min_state_cells"]:
            reason.append(f"too few cells of the state ({int(y.sum())} < {p['min_state_cells']})")
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
    return add_fdr(pd.DataFrame(rows))[COLUMNS]


def differential_abundance(
    obs: pd.DataFrame, sheet: pd.DataFrame, contrasts: dict, *, params: dict | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every contrast. Returns (donor x state counts, results of all contrasts stacked)."""
    counts = state_counts(obs)
    parents = state_parents(obs)
    needed = set()
    for spec in contrasts.values():
        needed |= set(spec["case"]) | set(spec["control"]) | set(spec.get("covariates", []))
    donors = donor_table(sheet, sorted(needed))
    donors = donors.reindex(counts.index)
    results = [test_contrast(counts, parents, donors, name, spec, params=params, denominator=d)
               for name, spec in contrasts.items() for d in ("parent", "all")]
    return counts, pd.concat(results, ignore_index=True)
