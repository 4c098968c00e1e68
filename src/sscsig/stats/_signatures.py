"""Donor-level gene-signature scores in their cell states, tested between the groups of each contrast.

Per cell, ``scanpy.tl.score_genes``' score (mean log-expression of the signature minus a matched
control set; :class:`sscsig.scoring.ModuleScorer`, which computes the gene means once); per donor,
the mean over the cells of the signature's states; per contrast, an ordinary least-squares model
``score ~ case + covariates`` over donors (t test of ``case``), BH FDR within the contrast.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import statsmodels.api as sm

from ..design import Design, bh_fdr, design_matrix
from ..errors import InputError

log = logging.getLogger(__name__)


def score_cells(rna, signatures: dict[str, dict], *, seed: int, min_coverage: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-cell scores (cells x signatures) and gene coverage per signature."""
    from ..scoring import ModuleScorer

    scorer = ModuleScorer(rna.X, rna.var_names)  # score_genes' scores; the gene means computed once
    scores, cover = {}, []
    for name, sig in signatures.items():
        present = [g for g in sig["genes"] if g in rna.var_names]
        frac = len(present) / len(sig["genes"])
        cover.append({"signature": name, "genes": len(sig["genes"]), "present": len(present),
                      "coverage": frac, "absent": " ".join(g for g in sig["genes"] if g not in rna.var_names)})
        if frac < min_coverage:
            raise InputError(
                f"signature {name!r}: only {len(present)}/{len(sig['genes'])} genes are in the data "
                f"(coverage {frac:.0%} < signature_params.min_gene_coverage {min_coverage:.0%})"
            )
        if frac < 1:
            log.warning("signature %s: %d of %d genes absent from the data (%s); scored on the rest",
                        name, len(sig["genes"]) - len(present), len(sig["genes"]),
                        ", ".join(g for g in sig["genes"] if g not in rna.var_names))
        scores[name] = scorer.score(present, random_state=seed)
    return pd.DataFrame(scores, index=rna.obs_names), pd.DataFrame(cover)


def donor_scores(obs: pd.DataFrame, cell_scores: pd.DataFrame, signatures: dict, *, min_cells: int) -> pd.DataFrame:
    """Long table: donor, signature, n_cells, score (mean over the signature's states' cells)."""
    rows = []
    for name, sig in signatures.items():
        in_states = obs["cell_state"].astype(str).isin(sig["states"]).to_numpy()
        df = pd.DataFrame({"donor": obs["donor"].astype(str).to_numpy()[in_states],
                           "s": cell_scores[name].to_numpy()[in_states]})
        agg = df.groupby("donor")["s"].agg(["size", "mean"])
        for donor, r in agg.iterrows():
            rows.append({"donor": donor, "signature": name, "states": ";".join(sig["states"]),
                         "n_cells": int(r["size"]),
                         "score": float(r["mean"]) if r["size"] >= min_cells else np.nan})
    return pd.DataFrame(rows)


def test_signatures(scores: pd.DataFrame, design: Design, *, min_donors_per_group: int = 3,
                    min_cells_per_donor: int = 5) -> pd.DataFrame:
    """Per contrast and signature: effect (case - control, adjusted), 95% CI, p, FDR.

    ``scores``: :func:`donor_scores` (donors below ``min_cells_per_donor`` cells have no score);
    a signature is tested with ``min_donors_per_group`` scored donors per group (config
    ``signature_params``).
    """
    donors = design.donors
    out = []
    for c in design.contrasts.values():
        cname, group = c.name, c.groups
        rows = []
        for sig, sub in scores.groupby("signature", sort=False):
            s = sub.set_index("donor")["score"].reindex(donors.index)
            ok = group.notna() & s.notna()
            g = group[ok]
            row = {"contrast": cname, "complication": c.complication, "signature": sig,
                   "states": sub["states"].iloc[0], "n_case": int((g == 1).sum()),
                   "n_control": int((g == 0).sum()), "effect": np.nan, "ci_low": np.nan,
                   "ci_high": np.nan, "pvalue": np.nan, "testable": False, "reason": ""}
            if row["n_case"] < min_donors_per_group or row["n_control"] < min_donors_per_group:
                row["reason"] = (f"too few donors with >= {min_cells_per_donor} cells "
                                 f"({row['n_case']} case, {row['n_control']} control)")
            else:
                x = design_matrix(donors.loc[g.index], g, list(c.covariates), cname)
                if np.linalg.matrix_rank(x.to_numpy(float)) < x.shape[1] or len(g) - x.shape[1] < 2:
                    row["reason"] = "design not estimable"
                else:
                    fit = sm.OLS(s[ok].to_numpy(float), x).fit()
                    ci = fit.conf_int().loc["case"]
                    row.update(effect=float(fit.params["case"]), ci_low=float(ci[0]), ci_high=float(ci[1]),
                               pvalue=float(fit.pvalues["case"]), testable=True)
            rows.append(row)
        res = pd.DataFrame(rows)
        res["fdr"] = bh_fdr(res["pvalue"].where(res["testable"].astype(bool)))
        out.append(res)
    return pd.concat(out, ignore_index=True)
