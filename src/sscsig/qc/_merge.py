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
from ..protein import (ADT_PREFIX, MEASURED_DROPPED, MISSING_KEPT, panel_plan, panel_sentences, rename_sentences,
                       same_antibody_names)

log = logging.getLogger(__name__)


def merge_samples(
    samples: Mapping[str, md.MuData],
    sheet: pd.DataFrame,
    *,
    panel_policy: str = "intersection",
    panel_min_fraction: float = 0.5,
) -> tuple[md.MuData, dict]:
    """Concatenate samples; annotate cells with the sample-sheet columns.

    Parameters
    ----------
    samples
        ``sample id -> MuData`` from the QC stage.
    sheet
        Validated sample sheet (one row per sample; the design's ``samples.tsv``).
    panel_policy, panel_min_fraction
        Antibodies the samples' panels do not share (:func:`sscsig.protein.panel_plan`):
        ``intersection`` keeps those every sample measured; ``majority`` those measured in at least
        ``panel_min_fraction`` of the samples, ``union`` all. A kept antibody a sample lacks is 0 in
        its counts, NaN in its normalised layers and ``prot.obsm['protein_measured']`` False there;
        ``prot.var['measured_in_all']`` marks the antibodies every sample has. An antibody a later
        sample spells otherwise (``HLA.DR`` for ``HLA-DR``, ``CD3_PROT`` for ``CD3``) takes the first
        sample's spelling first (:func:`sscsig.protein.same_antibody_names`), with a warning.

    Returns
    -------
    The cohort MuData and a report: genes/proteins dropped or missing, per sample
    (``panel_by_sample``) and per antibody (``panel``, :func:`panel_plan`'s table); the antibodies
    renamed per sample (``antibodies_renamed``).
    """
    if not samples:
        raise InputError("no samples to merge (every sample was dropped by QC?)")
    rnas = {s: m["rna"] for s, m in samples.items()}
    prots = {s: m["prot"] for s, m in samples.items()}
    renamed = same_antibody_names({s: [str(a) for a in p.var["antibody"]] for s, p in prots.items()
                                   if "antibody" in p.var})
    for s, names in renamed.items():
        if names:  # said with the panel's other warnings (report["panel_warnings"])
            p = prots[s].copy()
            p.var_names = [ADT_PREFIX + names[str(a)] if str(a) in names else v
                           for v, a in zip(p.var_names, p.var["antibody"])]
            p.var["antibody"] = [names.get(str(a), str(a)) for a in p.var["antibody"]]
            prots[s] = p
    plan = panel_plan({s: list(p.var_names) for s, p in prots.items()}, policy=panel_policy,
                      min_fraction=panel_min_fraction)
    # each antibody's annotation (target name, isotype, ...) from the first sample that gives it
    var_all = pd.concat([p.var for p in prots.values()]).groupby(level=0, sort=False).first()
    names = var_all["antibody"] if all("antibody" in p.var for p in prots.values()) else pd.Series(dtype=str)
    plan.insert(0, "target", [str(names.get(a, a)) for a in plan.index])
    kept = plan.index[plan["kept"].to_numpy(bool)]
    if len(kept) == 0:
        raise InputError(f"qc.panel_policy {panel_policy}: no antibody is kept (the samples' panels share none)")
    affected = sorted(plan.index[plan["n_samples"] < len(prots)])
    prots = {s: p[:, kept.intersection(p.var_names, sort=False)] for s, p in prots.items()}
    prot = ad.concat(prots, join="outer", index_unique=None, fill_value=0)[:, list(kept)].copy()
    measured = np.concatenate([np.isin(kept, p.var_names)[None, :].repeat(p.n_obs, 0) for p in prots.values()])
    prot.var["n_samples_measured"] = plan.loc[kept, "n_samples"].to_numpy(int)
    prot.var["measured_in_all"] = prot.var["n_samples_measured"].to_numpy() == len(prots)
    if not prot.var["measured_in_all"].any():
        raise InputError(f"qc.panel_policy {panel_policy}: no antibody is measured in every sample; "
                         "the embedding needs at least one shared antibody")
    if not measured.all():
        prot.obsm["protein_measured"] = pd.DataFrame(measured, index=prot.obs_names, columns=prot.var_names)
    prot.var = prot.var.join(var_all.reindex(prot.var_names).drop(columns=["n_samples_measured", "measured_in_all"],
                                                                   errors="ignore"))
    prot.var["isotype"] = prot.var["isotype"].astype(bool)
    gene_sets = [set(r.var_names) for r in rnas.values()]
    genes_dropped = len(set.union(*gene_sets) - set.intersection(*gene_sets))
    rna = ad.concat(rnas, join="inner", index_unique=None)
    if "clr" in prot.layers:
        del prot.layers["clr"]  # per-sample CLR; recomputed on the merged panel
    norms = {s: str(m.uns.get("protein_norm", "clr")) for s, m in samples.items()}
    with_dsb = [s for s, p in prots.items() if "dsb" in p.layers]
    if with_dsb and len(with_dsb) == len(prots):
        dsb = ad.concat({s: ad.AnnData(X=np.asarray(p.layers["dsb"], dtype=np.float32), obs=p.obs[[]], var=p.var[[]])
                         for s, p in prots.items()}, join="outer", index_unique=None)[:, prot.var_names].X
        dsb = np.asarray(dsb, dtype=np.float32)
        dsb[~measured] = np.nan  # unmeasured, not 0 (0 is a DSB value: the background)
        prot.layers["dsb"] = dsb
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
    by_sample = {s: {"dropped": [a for a in plan.index if plan.at[a, s] == MEASURED_DROPPED],
                     "missing": [a for a in plan.index if plan.at[a, s] == MISSING_KEPT]}
                 for s in prots}
    report = {"proteins_not_in_all_samples": affected, "panel_policy": panel_policy,
              "antibodies_renamed": {s: v for s, v in renamed.items() if v},
              "panel_min_fraction": panel_min_fraction,
              "panel_by_sample": {s: v for s, v in by_sample.items() if v["dropped"] or v["missing"]},
              "panel": plan.reset_index().to_dict(orient="records"),
              "genes_not_in_all_samples": genes_dropped, "protein_norm": cohort_norm,
              "protein_norm_per_sample": norms}
    if with_dsb and cohort_norm != "dsb":
        report["protein_norm_note"] = (f"DSB was possible for {len(with_dsb)} of {len(prots)} samples only "
                                       "(raw_path missing for the others); CLR is used for the whole cohort")
    report["panel_warnings"] = rename_sentences(renamed) + list(panel_sentences(plan.drop(columns="target"),
                                                                               policy=panel_policy).values())
    for w in report["panel_warnings"]:
        log.warning("%s", w)
    mdata.uns["protein_norm"] = cohort_norm
    return mdata, report


def merge_qc_outputs(h5mu: Mapping[str, str | Path], summaries: list[str | Path], sheet: pd.DataFrame, *,
                     panel_policy: str = "intersection", panel_min_fraction: float = 0.5) -> tuple[md.MuData, dict]:
    """Merge the QC stage's files: samples its summary marks dropped are left out, and the report
    gains the dropped samples, their warnings and :func:`cohort_warnings`."""
    parsed = [json.loads(Path(p).read_text()) for p in summaries]
    dropped = {js["sample"] for js in parsed if js.get("dropped")}
    samples = {s: md.read_h5mu(p) for s, p in h5mu.items() if s not in dropped}
    mdata, report = merge_samples(samples, sheet, panel_policy=panel_policy, panel_min_fraction=panel_min_fraction)
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
    out.extend(report.get("panel_warnings", []))
    if report.get("protein_norm_note"):
        out.append(report["protein_norm_note"])
    return out
