"""Merge the per-sample QC'd libraries into one cohort MuData with the sample sheet in ``obs``."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd

from ..errors import InputError

log = logging.getLogger(__name__)


def merge_samples(
    samples: Mapping[str, md.MuData],
    sheet: pd.DataFrame,
    *,
    panel_policy: str = "intersection",
) -> tuple[md.MuData, dict]:
    """Concatenate samples; annotate cells with the sample-sheet columns.

    Parameters
    ----------
    samples
        ``sample id -> MuData`` from the QC stage.
    sheet
        Validated sample sheet (one row per sample; the design's ``samples.tsv``).
    panel_policy
        ``intersection``: keep proteins measured in every sample. ``union``: keep all, with counts of
        proteins a sample did not measure set to 0 and ``prot.obsm['protein_measured']`` False there.

    Returns
    -------
    The cohort MuData and a report of genes/proteins dropped or filled.
    """
    if not samples:
        raise InputError("no samples to merge (every sample was dropped by QC?)")
    rnas = {s: m["rna"] for s, m in samples.items()}
    prots = {s: m["prot"] for s, m in samples.items()}
    panels = {s: set(p.var_names) for s, p in prots.items()}
    common = set.intersection(*panels.values())
    everything = set.union(*panels.values())
    affected = sorted(everything - common)
    if panel_policy not in ("intersection", "union"):
        raise InputError(f"qc.panel_policy must be 'intersection' or 'union', not {panel_policy!r}")
    if panel_policy == "intersection":
        prot = ad.concat(prots, join="inner", index_unique=None)
    else:
        prot = ad.concat(prots, join="outer", index_unique=None, fill_value=0)
        measured = np.column_stack(
            [np.concatenate([[v in panels[s]] * p.n_obs for s, p in prots.items()]) for v in prot.var_names]
        )
        prot.obsm["protein_measured"] = pd.DataFrame(measured, index=prot.obs_names, columns=prot.var_names)
    first = next(iter(prots.values()))
    prot.var = first.var.reindex(prot.var_names).combine_first(
        pd.concat([p.var for p in prots.values()]).groupby(level=0).first().reindex(prot.var_names)
    )
    prot.var["isotype"] = prot.var["isotype"].astype(bool)
    gene_sets = [set(r.var_names) for r in rnas.values()]
    genes_dropped = len(set.union(*gene_sets) - set.intersection(*gene_sets))
    rna = ad.concat(rnas, join="inner", index_unique=None)
    if "clr" in prot.layers:
        del prot.layers["clr"]  # per-sample CLR; recomputed on the merged panel
    norms = {s: str(m.uns.get("protein_norm", "clr")) for s, m in samples.items()}
    with_dsb = [s for s, p in prots.items() if "dsb" in p.layers]
    if with_dsb and len(with_dsb) == len(prots):
        prot.layers["dsb"] = ad.concat({s: ad.AnnData(X=p.layers["dsb"], obs=p.obs[[]], var=p.var[[]])
                                        for s, p in prots.items()}, join="outer" if panel_policy == "union"
                                       else "inner", index_unique=None, fill_value=0)[:, prot.var_names].X
        cohort_norm = "dsb"
    else:
        prot.layers.pop("dsb", None)
        cohort_norm = "clr"
    obs = pd.concat([m.obs for m in samples.values()])
    mdata = md.MuData({"rna": rna, "prot": prot})
    sheet_cols = sheet.set_index("sample")
    cell_sample = obs.loc[mdata.obs_names, "sample"].astype(str)
    for col in obs.columns:
        mdata.obs[col] = obs.loc[mdata.obs_names, col].to_numpy()
    for col in sheet_cols.columns:
        if col in ("path", "raw_path"):
            continue
        mdata.obs[col] = sheet_cols.loc[cell_sample, col].to_numpy()
    for col in ("sample", "donor", "batch"):
        mdata.obs[col] = pd.Categorical(mdata.obs[col].astype(str))
    report = {"proteins_not_in_all_samples": affected, "panel_policy": panel_policy,
              "genes_not_in_all_samples": genes_dropped, "protein_norm": cohort_norm,
              "protein_norm_per_sample": norms}
    if with_dsb and cohort_norm != "dsb":
        report["protein_norm_note"] = (f"DSB was possible for {len(with_dsb)} of {len(prots)} samples only "
                                       "(raw_path missing for the others); CLR is used for the whole cohort")
    if affected:
        log.warning("proteins not measured in every sample (%s): %s", panel_policy, ", ".join(affected))
    mdata.uns["protein_norm"] = cohort_norm
    return mdata, report


def merge_qc_outputs(h5mu: Mapping[str, str | Path], summaries: list[str | Path], sheet: pd.DataFrame, *,
                     panel_policy: str = "intersection") -> tuple[md.MuData, dict]:
    """Merge the QC stage's files: samples its summary marks dropped are left out, and the report
    gains the dropped samples, their warnings and :func:`cohort_warnings`."""
    parsed = [json.loads(Path(p).read_text()) for p in summaries]
    dropped = {js["sample"] for js in parsed if js.get("dropped")}
    samples = {s: md.read_h5mu(p) for s, p in h5mu.items() if s not in dropped}
    mdata, report = merge_samples(samples, sheet, panel_policy=panel_policy)
    report["dropped_samples"] = sorted(dropped)
    report["sample_warnings"] = [js["warning"] for js in parsed if js.get("warning")]
    report["warnings"] = cohort_warnings(report)
    mdata.uns["merge_report"] = json.dumps(report)
    return mdata, report


def cohort_warnings(report: dict) -> list[str]:
    """The sentences of a merge report that a reader of the tables and the report must see."""
    out = []
    for w in report.get("sample_warnings", []):
        out.append(w)
    if report.get("proteins_not_in_all_samples"):
        prots = ", ".join(p.removeprefix("ADT_") for p in report["proteins_not_in_all_samples"])
        how = ("dropped from the cohort" if report.get("panel_policy") == "intersection"
               else "kept, marked unmeasured (0 counts) where absent")
        out.append(f"proteins not measured in every sample ({how}, qc.panel_policy = "
                   f"{report.get('panel_policy')}): {prots}")
    if report.get("protein_norm_note"):
        out.append(report["protein_norm_note"])
    return out
