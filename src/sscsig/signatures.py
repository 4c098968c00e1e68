"""Donor-level gene-signature scores in their cell states, tested between the groups of each contrast.

Per cell, ``scanpy.tl.score_genes`` (mean log-expression of the signature minus a matched control
set); per donor, the mean over the cells of the signature's states; per contrast, an ordinary
least-squares model ``score ~ case + covariates`` over donors (t test of ``case``), BH FDR within
the contrast.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm

from .abundance import add_fdr, contrast_groups, design_matrix, donor_table
from .ingest import InputError

log = logging.getLogger(__name__)

DEFAULT_SIGNATURES = {"min_cells_per_donor": 5, "min_gene_coverage": 0.5, "min_donors_per_group": 3}


def read_gene_sets(path: str | Path) -> dict[str, list[str]]:
    """Gene sets from a TSV: ``name<TAB>gene gene ...`` per line, ``#`` comments."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, genes = line.partition("\t")
        out[name.strip()] = genes.split()
    return out


def resolve_gene_set_file(path: str | Path, *, base_dir: str | Path = ".") -> Path:
    """A gene-set file: the path as given, else a file shipped in ``sscsig/data`` of that base name."""
    p = Path(base_dir) / path
    if p.exists():
        return p
    from importlib import resources

    shipped = resources.files("sscsig") / "data" / Path(path).name
    if not shipped.is_file():
        raise InputError(f"gene set file {p} not found (nor shipped with sscsig)")
    return Path(str(shipped))


def resolve_signatures(spec: dict, *, base_dir: str | Path = ".") -> dict[str, dict]:
    """Config ``signatures`` -> ``{name: {genes, states}}``; ``gene_set`` entries read from ``gene_set_file``."""
    out = {}
    for name, sig in spec.items():
        genes = list(sig.get("genes") or [])
        if sig.get("gene_set"):
            try:
                path = resolve_gene_set_file(sig["gene_set_file"], base_dir=base_dir)
            except InputError as exc:
                raise InputError(f"signature {name!r}: {exc}") from None
            sets = read_gene_sets(path)
            if sig["gene_set"] not in sets:
                raise InputError(f"signature {name!r}: gene set {sig['gene_set']!r} not in {path}")
            genes += sets[sig["gene_set"]]
        if not genes:
            raise InputError(f"signature {name!r}: empty gene list")
        if not sig.get("states"):
            raise InputError(f"signature {name!r}: no cell states to score it in")
        out[name] = {"genes": list(dict.fromkeys(genes)), "states": list(sig["states"])}
    return out


def score_cells(rna, signatures: dict[str, dict], *, seed: int, min_coverage: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-cell scores (cells x signatures) and gene coverage per signature."""
    import anndata as ad
    import scanpy as sc

    tmp = ad.AnnData(X=rna.X, obs=pd.DataFrame(index=rna.obs_names), var=pd.DataFrame(index=rna.var_names))
    scores, cover = {}, []
    for name, sig in signatures.items():
        present = [g for g in sig["genes"] if g in tmp.var_names]
        frac = len(present) / len(sig["genes"])
        cover.append({"signature": name, "genes": len(sig["genes"]), "present": len(present),
                      "coverage": frac, "absent": " ".join(g for g in sig["genes"] if g not in tmp.var_names)})
        if frac < min_coverage:
            raise InputError(
                f"signature {name!r}: only {len(present)}/{len(sig['genes'])} genes are in the data "
                f"(coverage {frac:.0%} < signatures_min_gene_coverage {min_coverage:.0%})"
            )
        if frac < 1:
            log.warning("signature %s: %d of %d genes absent from the data (%s); scored on the rest",
                        name, len(sig["genes"]) - len(present), len(sig["genes"]),
                        ", ".join(g for g in sig["genes"] if g not in tmp.var_names))
        sc.tl.score_genes(tmp, present, random_state=seed, score_name="s")
        scores[name] = tmp.obs["s"].to_numpy()
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


def test_signatures(scores: pd.DataFrame, sheet: pd.DataFrame, contrasts: dict, *,
                    params: dict | None = None) -> pd.DataFrame:
    """Per contrast and signature: effect (case - control, adjusted), 95% CI, p, FDR."""
    p = {**DEFAULT_SIGNATURES, **(params or {})}
    needed = set()
    for spec in contrasts.values():
        needed |= set(spec["case"]) | set(spec["control"]) | set(spec.get("covariates", []))
    donors = donor_table(sheet, sorted(needed))
    out = []
    for cname, spec in contrasts.items():
        group = contrast_groups(donors, cname, spec)
        rows = []
        for sig, sub in scores.groupby("signature", sort=False):
            s = sub.set_index("donor")["score"].reindex(donors.index)
            ok = group.notna() & s.notna()
            g = group[ok]
            row = {"contrast": cname, "complication": spec.get("complication", ""), "signature": sig,
                   "states": sub["states"].iloc[0], "n_case": int((g == 1).sum()),
                   "n_control": int((g == 0).sum()), "effect": np.nan, "ci_low": np.nan,
                   "ci_high": np.nan, "pvalue": np.nan, "testable": False, "reason": ""}
            if row["n_case"] < p["min_donors_per_group"] or row["n_control"] < p["min_donors_per_group"]:
                row["reason"] = (f"too few donors with >= {p['min_cells_per_donor']} cells "
                                 f"({row['n_case']} case, {row['n_control']} control)")
            else:
                x = design_matrix(donors.loc[g.index], g, list(spec.get("covariates", [])), cname)
                if np.linalg.matrix_rank(x.to_numpy(float)) < x.shape[1] or len(g) - x.shape[1] < 2:
                    row["reason"] = "design not estimable"
                else:
                    fit = sm.OLS(s[ok].to_numpy(float), x).fit()
                    ci = fit.conf_int().loc["case"]
                    row.update(effect=float(fit.params["case"]), ci_low=float(ci[0]), ci_high=float(ci[1]),
                               pvalue=float(fit.pvalues["case"]), testable=True)
            rows.append(row)
        out.append(add_fdr(pd.DataFrame(rows)))
    return pd.concat(out, ignore_index=True)
