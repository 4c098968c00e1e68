"""Do a state's calls follow the batches? The batch check of the cell-state calls.

The marker calls rest on each cell's measured genes and antibodies. A batch that measures a
programme's genes at another level (chemistry, lot, ambient RNA) moves cells into or out of the
states that programme defines, and the integration, which corrects the embedding, does not correct
the marker scores. On the second simulator with its batch effects doubled the pipeline called
CD14.ISG in 0.7%, 14.3%, 0.7% and 14.5% of the monocytes of its four batches (docs/annotation.md
"Programme background per batch"). Such calls enter every composition test as if they were biology.

:func:`batch_association` tests, per state, whether the donors' shares differ between batches beyond
what the design explains: the quasi-Poisson GLM of :mod:`._abundance` (``quasi_poisson_fit``; offset:
the donor's cells of the state's parent lineage) with the design columns (``group``, the
complications, the contrasts' other selector columns) as one-hot covariates, with and without the batch, compared by the
quasi-likelihood F test (deviance difference per batch degree of freedom over the full model's
Pearson dispersion, floored at 1; F on the residual degrees of freedom). Donors are the units; a
donor whose tested samples span several batches is left out of it. Benjamini-Hochberg over the
testable states.

What a flag means: the calls differ by batch, not that they are wrong. Batches can differ in their
donors beyond the design columns (sampling site, disease duration, treatment), and a batch effect on
the state itself (handling stress raising EGR1) is real in the cells and still technical. Where the
batches are confounded with the design (a batch of SRC donors only) the test cannot tell the two
apart and says so (``testable: false``).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats

from ..design import UNASSIGNED, bh_fdr
from ._abundance import quasi_poisson_fit

log = logging.getLogger(__name__)

BATCH_COLUMNS = ["cell_state", "parent", "n_donors", "n_batches", "cells", "share_per_batch", "f_statistic",
                 "df_batch", "df_resid", "dispersion", "pvalue", "fdr", "testable", "reason"]


def donor_batches(samples: pd.DataFrame, *, batch_key: str = "batch") -> pd.Series:
    """Each donor's batch among its samples that enter the group tests (``in_group_tests`` where the
    table has it); NaN for a donor whose samples span several batches.

    Parameters
    ----------
    samples
        The validated sample sheet (:attr:`sscsig.design.Design.samples`): ``donor``, ``batch_key``.
    batch_key
        The sheet's batch column.

    Returns
    -------
    pandas.Series
        Donor -> batch (str), indexed by donor.
    """
    s = samples
    if "in_group_tests" in s:
        s = s[s["in_group_tests"].astype(bool)]
    per = s.groupby(s["donor"].astype(str))[batch_key].agg(lambda b: sorted(set(b.astype(str))))
    return per.map(lambda b: b[0] if len(b) == 1 else np.nan)


def _ql_f_test(y: np.ndarray, n: np.ndarray, reduced: pd.DataFrame, full: pd.DataFrame) -> dict:
    """Quasi-likelihood F test of the columns ``full`` adds to ``reduced`` (Poisson GLMs with offset
    ``log n``; dispersion from the full model's Pearson residuals, floored at 1)."""
    fit_r, _ = quasi_poisson_fit(y, n, reduced)
    fit_f, phi = quasi_poisson_fit(y, n, full)
    df_b = full.shape[1] - reduced.shape[1]
    df_resid = float(fit_f.df_resid)
    f = max(0.0, float(fit_r.deviance - fit_f.deviance)) / df_b / phi
    return {"f_statistic": f, "df_batch": df_b, "df_resid": df_resid, "dispersion": phi,
            "pvalue": float(stats.f.sf(f, df_b, df_resid))}


def _one_hot(donors: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Intercept and each column one-hot (first level dropped), rows as ``donors``."""
    x = pd.DataFrame({"const": 1.0}, index=donors.index)
    for c in columns:
        x = x.join(pd.get_dummies(donors[c].astype(str), prefix=c, drop_first=True, dtype=float))
    return x


def batch_association(
    counts: pd.DataFrame, parents: dict[str, str], batches: pd.Series, donors: pd.DataFrame, *,
    columns: list[str] | tuple[str, ...] = (), min_parent_cells: int = 10, min_state_cells: int = 10,
    min_donors_per_batch: int = 2,
) -> pd.DataFrame:
    """Per state, whether its share of its parent lineage differs between batches beyond the design.

    See the module docstring for the model. A batch counts with at least ``min_donors_per_batch`` donors
    that have ``min_parent_cells`` cells of the parent; the others' donors are left out of that state's
    test.

    Parameters
    ----------
    counts
        Donor x state cell counts (:func:`sscsig.stats.state_counts`; Unassigned not among them).
    parents
        State -> parent lineage (:func:`sscsig.stats.state_parents`).
    batches
        Donor -> batch (:func:`donor_batches`); a donor with NaN is left out.
    donors
        The design's donor table (:attr:`sscsig.design.Design.donors`).
    columns
        Donor-table columns the batch effect is judged beyond (:func:`sscsig.design.design_columns`);
        one that the table lacks or that is constant is skipped, a missing value is a level of its own.
    min_parent_cells, min_state_cells
        Config ``abundance``: as the composition tests use them.
    min_donors_per_batch
        Donors a batch needs to enter a state's test.

    Returns
    -------
    pandas.DataFrame
        :data:`BATCH_COLUMNS`, one row per state (``share_per_batch``: the mean share of the donors of
        each batch, ``"run1: 0.012; run2: 0.143"``); an untestable state has a ``reason`` and no p-value.
    """
    cols = [c for c in columns if c in donors.columns and donors[c].astype(str).nunique() > 1]
    batch = batches.reindex(counts.index)
    rows = []
    for state in sorted(c for c in counts.columns if c != UNASSIGNED):
        parent = parents[state]
        siblings = [s for s in counts.columns if parents.get(s) == parent]
        n_parent = counts[siblings].sum(1)
        ok = batch.notna() & (n_parent >= min_parent_cells)
        sizes = batch[ok].value_counts()
        ok &= batch.isin(sizes.index[sizes >= min_donors_per_batch])
        y, n, b = counts.loc[ok, state], n_parent[ok], batch[ok].astype(str)
        share = (y / n).groupby(b).mean()
        row = {"cell_state": state, "parent": parent, "n_donors": int(ok.sum()), "n_batches": int(b.nunique()),
               "cells": int(y.sum()), "share_per_batch": "; ".join(f"{k}: {v:.3f}" for k, v in share.items()),
               "f_statistic": np.nan, "df_batch": np.nan, "df_resid": np.nan, "dispersion": np.nan,
               "pvalue": np.nan, "testable": False, "reason": ""}
        reduced = _one_hot(donors.reindex(y.index), cols)
        full = reduced.join(pd.get_dummies(b, prefix="batch", drop_first=True, dtype=float))
        if row["n_batches"] < 2:
            row["reason"] = (f"fewer than 2 batches with >= {min_donors_per_batch} donors of >= {min_parent_cells} "
                             f"{parent} cells")
        elif len(siblings) < 2:
            row["reason"] = f"the only state of {parent}"
        elif row["cells"] < min_state_cells:
            row["reason"] = f"too few cells of the state ({row['cells']} < {min_state_cells})"
        elif np.linalg.matrix_rank(full.to_numpy(float)) < full.shape[1]:
            row["reason"] = "batch confounded with the design (" + ", ".join(cols) + ")"
        elif len(y) - full.shape[1] < 2:
            row["reason"] = "fewer than 2 residual degrees of freedom"
        else:
            yy, nn = y.to_numpy(float), n.to_numpy(float)
            if yy.sum() == 0:
                yy, nn = yy + 0.5, nn + 1.0
            row.update(_ql_f_test(yy, nn, reduced, full), testable=True)
        rows.append(row)
    out = pd.DataFrame(rows, columns=[c for c in BATCH_COLUMNS if c != "fdr"])
    out["fdr"] = bh_fdr(out["pvalue"].where(out["testable"].astype(bool))) if len(out) else []
    return out[BATCH_COLUMNS]


def log_batch_check(batch: pd.DataFrame, *, fdr: float = 0.1, columns: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Say in the log how many states :func:`batch_association` could test and name each one at FDR <
    ``fdr`` (a warning with its shares per batch); returns the flagged states.

    Parameters
    ----------
    batch
        :func:`batch_association`'s table.
    fdr
        Config ``abundance.fdr``.
    columns
        The design columns the check adjusted for (named in the log).
    """
    testable = batch["testable"].astype(bool)
    flagged = batch[testable & (batch["fdr"] < fdr)]
    log.info("batch check: %d of %d states testable; %d follow the batches beyond %s (FDR < %s)",
             int(testable.sum()), len(batch), len(flagged), ", ".join(columns) or "nothing", fdr)
    for _, r in flagged.iterrows():
        log.warning("batch check: %s's share of %s differs between batches beyond the design (F %.1f, FDR %.2g; %s): "
                    "a batch that measures its markers at another level moves cells into or out of it; for a "
                    "programme substate (EGR1, ISG) in batches that each hold every group, "
                    "annotation.substate_group_key: batch fits its background per batch (docs/annotation.md "
                    "\"Calls that follow the batches\")", r["cell_state"], r["parent"],
                    r["f_statistic"], r["fdr"], r["share_per_batch"])
    return flagged["cell_state"].tolist()


def batch_warnings(table: pd.DataFrame, batch: pd.DataFrame, *, fdr: float = 0.1) -> list[str]:
    """Warnings for a complication's table: each state of it that is a hypothesis or significant in one
    of its contrasts (``fdr`` < ``fdr``) and whose calls follow the batches (:func:`batch_association`,
    ``fdr`` < ``fdr``).

    Parameters
    ----------
    table
        The complication's table (:func:`sscsig.report.complication_table`): ``cell_state``, ``fdr``
        and ``hypothesis`` (``"hypothesis"`` for a pre-specified state).
    batch
        The abundance rule's ``abundance/batch_association.tsv``.
    fdr
        Config ``abundance.fdr``.
    """
    if batch.empty or table.empty:
        return []
    hit = batch[batch["testable"].astype(str).str.lower().eq("true") & (batch["fdr"] < fdr)]
    sig = pd.to_numeric(table["fdr"], errors="coerce") < fdr
    hyp = table["hypothesis"].astype(str) == "hypothesis" if "hypothesis" in table else False
    wanted = set(table.loc[sig | hyp, "cell_state"].astype(str))
    out = []
    for _, r in hit[hit["cell_state"].isin(wanted)].iterrows():
        out.append(f"{r['cell_state']}: its share of {r['parent']} differs between batches beyond the design "
                   f"(F {r['f_statistic']:.1f}, FDR {r['fdr']:.2g}; {r['share_per_batch']}; "
                   "abundance/batch_association.tsv): a batch that measures its markers at another level "
                   "moves cells into or out of it; check its calls per batch, and for a programme substate "
                   "(EGR1, ISG) in batches that each hold every group consider annotation.substate_group_key: "
                   "batch (docs/annotation.md \"Calls that follow the batches\")")
    return out


__all__ = ["BATCH_COLUMNS", "batch_association", "batch_warnings", "donor_batches", "log_batch_check"]
