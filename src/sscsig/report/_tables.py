"""Per-complication signature tables: one row per cell state and contrast of the complication."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..io import atomic_path, write_tsv

TABLE_COLUMNS = ["cell_state", "parent", "contrast", "n_case", "n_control", "prop_case",
                 "prop_control", "log2fc", "ci_low", "ci_high", "pvalue", "fdr", "testable",
                 "hypothesis", "reason", "cells_case", "cells_control", "prop_all_case",
                 "prop_all_control", "log2fc_all", "fdr_all", "milo_nhoods", "milo_frac_sig",
                 "milo_logfc", "de_genes_tested", "de_genes_fdr01", "de_top_up", "de_top_down",
                 "prot_top_up", "prot_top_down", "signature", "signature_effect", "signature_fdr",
                 "log2fc_stress_adj", "fdr_stress_adj", "stress_diff", "stress_diff_pvalue"]
KEY = ["contrast", "cell_state"]


def complication_table(
    *,
    abundance: pd.DataFrame,
    signature_tests: pd.DataFrame,
    complication: str,
    contrast_order: list[str],
    hypotheses: list[dict],
    milo: pd.DataFrame | None = None,
    de_summary: pd.DataFrame | None = None,
    stress: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows of the contrasts whose ``complication`` is ``complication``.

    ``hypothesis`` is ``hypothesis`` for the pre-specified (complication, state) pairs and
    ``discovery`` otherwise. Each state carries the signature scored in it (column ``states`` of
    ``signature_tests``) with the smallest p-value in that contrast. Rows are ordered by contrast
    (config order), then testable first, FDR, p-value.
    """
    ab = abundance[abundance["complication"] == complication]
    if "denominator" in ab:
        every = ab[ab["denominator"] == "all"].set_index(KEY)
        ab = ab[ab["denominator"] == "parent"].copy()
        ab = ab.join(every[["prop_case", "prop_control", "log2fc", "fdr"]].add_suffix("_all")
                     .rename(columns={"prop_case_all": "prop_all_case", "prop_control_all": "prop_all_control"}),
                     on=KEY)
    else:
        ab = ab.copy()
    for extra in (milo, de_summary, stress):
        if extra is not None and len(extra):
            ab = ab.join(extra.set_index(KEY), on=KEY)
    for col in TABLE_COLUMNS:
        if col not in ab:
            ab[col] = np.nan
    pre = {h["cell_state"] for h in hypotheses if h["complication"] == complication}
    ab["hypothesis"] = np.where(ab["cell_state"].isin(pre), "hypothesis", "discovery")
    ab["signature"] = ""
    ab["signature_effect"] = np.nan
    ab["signature_fdr"] = np.nan
    sig = signature_tests[signature_tests["complication"] == complication]
    scored_in = sig.drop_duplicates("signature").set_index("signature")["states"].str.split(";")
    for i, row in ab.iterrows():
        names = [n for n, states in scored_in.items() if row["cell_state"] in states]
        cand = sig[(sig["contrast"] == row["contrast"]) & sig["signature"].isin(names) & sig["testable"]]
        if len(cand):
            best = cand.sort_values("pvalue").iloc[0]
            ab.loc[i, ["signature", "signature_effect", "signature_fdr"]] = (
                best["signature"], best["effect"], best["fdr"])
    order = {c: k for k, c in enumerate(contrast_order)}
    ab["_c"] = ab["contrast"].map(order)
    ab["_t"] = ~ab["testable"].astype(bool)
    ab = ab.sort_values(["_c", "_t", "fdr", "pvalue", "cell_state"], na_position="last")
    return ab[TABLE_COLUMNS].reset_index(drop=True)


def read_complication_inputs(abundance_tsv, signature_tsv, *, milo_states=None, de_summaries=(), stress=()) -> dict:
    """The stage outputs a complication table joins, read from their files (keyword arguments of
    :func:`complication_table`: ``abundance``, ``signature_tests``, ``milo``, ``de_summary``,
    ``stress``: the stress-adjusted tests, when the stress check ran)."""
    ab = pd.read_csv(abundance_tsv, sep="\t", keep_default_na=True)
    ab["reason"] = ab["reason"].fillna("")
    de = None
    if de_summaries:
        de = pd.concat([pd.read_csv(p, sep="\t", keep_default_na=False, na_values=[""])
                        for p in de_summaries]).drop(columns=["de_reason"])
    st = pd.concat([pd.read_csv(p, sep="\t")[["contrast", "cell_state", "log2fc_stress_adj", "fdr_stress_adj",
                                                   "stress_diff", "stress_diff_pvalue"]]
                    for p in stress]) if stress else None
    return {"abundance": ab, "signature_tests": pd.read_csv(signature_tsv, sep="\t"),
            "milo": pd.read_csv(milo_states, sep="\t") if milo_states else None, "de_summary": de, "stress": st}


def separation_warnings(table: pd.DataFrame, separation: pd.DataFrame, *, fdr: float = 0.1) -> list[str]:
    """A sentence for every state of a complication table whose composition test is significant (FDR <
    ``fdr``) and whose calls do not stand out from the rest of their lineage on the state's own
    antibodies (``separation``: the annotate rule's ``cohort/state_separation.tsv``, ``stands_out``
    false). The marker scores are relative within a lineage, so such calls are a segment of a continuum
    or a state the cohort may lack, and the state's share is then a threshold's output (docs/annotation.md
    "States the cohort lacks"). States without antibodies to judge them by (empty ``stands_out``) get none."""
    flat = separation[separation["stands_out"].astype(str).str.lower() == "false"].drop_duplicates("state")
    flat = flat.set_index("state")
    out = []
    for _, r in table.iterrows():
        if not r["fdr"] < fdr or r["cell_state"] not in flat.index:
            continue
        s = flat.loc[r["cell_state"]]
        out.append(f"{r['cell_state']} in {r['contrast']} (FDR {r['fdr']:.2g}): its calls do not stand out from the "
                   f"rest of {s['lineage']} on its own antibodies ({s['antibody_separation']} robust SDs; "
                   "cohort/state_separation.tsv), so they are a segment of a continuum or a state the cohort may "
                   "lack, and its share is a threshold's output")
    return out


def to_markdown(table: pd.DataFrame, *, complication: str, warnings: list[str] | None = None,
                milo_fdr: float = 0.1, de_fdr: float = 0.1) -> str:
    """A readable rendering: per contrast, the testable states by FDR, then the untestable ones.
    ``milo_fdr`` / ``de_fdr``: the thresholds of the Milo and pseudobulk columns (config)."""
    lines = [f"# Complication {complication}", ""]
    for w in warnings or []:
        lines.append(f"> **Warning:** {w}")
    if warnings:
        lines.append("")
    lines.append("Share of each state within its parent lineage, donor-level quasi-Poisson GLM "
                 "(log2 fold change of the share, case vs control, adjusted for the contrast's "
                 "covariates); BH FDR within the contrast. `hypothesis` rows were pre-specified. "
                 "*all cells*: the same test of the share of all cells. *stress-adjusted*: the same test "
                 "with the donors' handling-stress score in the parent lineage outside the state as a "
                 "covariate, and how far that score differs between cases and controls (SD, Mann-Whitney p). "
                 "*Milo*: weighted mean log fold "
                 "change of the state's neighbourhoods (share of its memberships in neighbourhoods at "
                 f"spatial FDR < {milo_fdr:g}). *DE*: pseudobulk PyDESeq2, genes at FDR < {de_fdr:g} and "
                 "the top ones up / down; proteins likewise (OLS on donor means).")
    for contrast, sub in table.groupby("contrast", sort=False):
        lines += ["", f"## {contrast} ({int(sub['n_case'].max())} case vs {int(sub['n_control'].max())} control donors)", "",
                  "| state | parent | case % | control % | log2FC [95% CI] | p | FDR | all cells log2FC (FDR) "
                  "| stress-adjusted log2FC (FDR); stress cases - controls | Milo logFC (sig) | DE genes: n (up / down) | proteins up / down "
                  "| signature (effect, FDR) | |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for _, r in sub.iterrows():
            if r["testable"]:
                fc = f"{r['log2fc']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
                p, q = f"{r['pvalue']:.2g}", f"{r['fdr']:.2g}"
            else:
                fc, p, q = "not testable", "", ""
            sig = f"{r['signature']} ({r['signature_effect']:.3f}, {r['signature_fdr']:.2g})" if r["signature"] else ""
            mark = "**hypothesis**" if r["hypothesis"] == "hypothesis" else ""
            every = (f"{r['log2fc_all']:.2f} ({r['fdr_all']:.2g})" if pd.notna(r.get("log2fc_all")) else "")
            stress = (f"{r['log2fc_stress_adj']:.2f} ({r['fdr_stress_adj']:.2g})"
                      if pd.notna(r.get("log2fc_stress_adj")) else "")
            if pd.notna(r.get("stress_diff")):
                stress = (f"{stress or 'not estimable'}; stress {r['stress_diff']:+.1f} SD "
                          f"(p {r['stress_diff_pvalue']:.2g})")
            milo = (f"{r['milo_logfc']:.2f} ({r['milo_frac_sig']:.0%})" if pd.notna(r.get("milo_logfc")) else "")
            de = ""
            if pd.notna(r.get("de_genes_fdr01")):
                de = f"{int(r['de_genes_fdr01'])} of {int(r['de_genes_tested'])}"
                ups, downs = _text(r.get("de_top_up")), _text(r.get("de_top_down"))
                if ups or downs:
                    de += f" ({ups or '-'} / {downs or '-'})"
            prot = ""
            if _text(r.get("prot_top_up")) or _text(r.get("prot_top_down")):
                prot = f"{_text(r.get('prot_top_up')) or '-'} / {_text(r.get('prot_top_down')) or '-'}"
            lines.append(f"| {r['cell_state']} | {r['parent']} | {100 * r['prop_case']:.2f} | "
                         f"{100 * r['prop_control']:.2f} | {fc} | {p} | {q} | {every} | {stress} | {milo} | {de} | "
                         f"{prot} | {sig} | {mark} |")
        untestable = sub[~sub["testable"].astype(bool)]
        for _, r in untestable.iterrows():
            lines.append(f"\n- {r['cell_state']}: {r['reason']}")
    return "\n".join(lines) + "\n"


def _text(v) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).replace("ADT_", "")


def write_table(table: pd.DataFrame, tsv_path, md_text: str, md_path, config: dict,
                *, warnings: list[str] | None = None) -> None:
    """TSV (machine-readable), Markdown beside it, and ``<tsv>.provenance.json`` (with the warnings)."""
    write_tsv(table, tsv_path, config=config, step="tables", extra={"warnings": list(warnings or [])})
    with atomic_path(md_path) as tmp:
        tmp.write_text(md_text)


def table_html(table: pd.DataFrame, complication: str, path, *, warnings: list[str] | None = None) -> None:
    """A complication table as a standalone HTML page (a report item); hypothesis rows highlighted."""
    cols = list(table.columns)

    def cell(v) -> str:
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.3g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        f"<tr class='{html.escape(str(r['hypothesis']))}'>" + "".join(f"<td>{cell(r[c])}</td>" for c in cols) + "</tr>"
        for _, r in table.iterrows())
    warn = "".join(f"<p class='warning'><b>Warning:</b> {html.escape(w)}</p>" for w in warnings or [])
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(complication)}</title><style>"
            "body{font-family:sans-serif}table{border-collapse:collapse;font-size:11px}"
            "td,th{border:1px solid #ccc;padding:2px 4px}tr.hypothesis{background:#fee}"
            ".warning{color:#a00}</style></head>"
            f"<body><h1>Complication {html.escape(complication)}</h1>{warn}"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text(page)
