"""Annotation of a demo cohort by each method, with half of the donors' true labels as the reference
(issue 16: "for each method" on the demo truth).

    python benchmarks/annotation_split.py RESULTS_DIR TRUTH_TSV --markers config/markers.yaml [--out DIR]

``RESULTS_DIR/cohort/integrated.h5mu`` is a run of the pipeline on a demo cohort (any catalogue:
``demo.states: core`` or ``study``) and ``TRUTH_TSV`` its simulator truth (``truth/cells.tsv``). The
donors are split in two, alternately in sorted order (14 / 13 of the study's 27). The reference is the
first half's true singlets with their true labels (RNA and antibody counts, the same file format a user
gives ``annotation.reference.path``); the query is the second half, annotated by

- ``markers``: the marker file (config defaults of ``annotation``), on the cohort's own graph;
- ``reference``: :func:`sscsig.annotate.annotate_by_reference` (totalVI reference + scArches surgery +
  the lineage / state logistic regressions, the config's defaults); ``reference (knn)``: the same
  mapping's kNN votes (``classifier: knn``, scored from ``obs['cell_state_knn']``);
- ``both``: the reference's lineages, the marker file's states within them.

``markers`` and ``both`` refine the states as the defaults do (``annotation.refine``, docs/annotation.md "Refining
the calls"; the lineages are the marker file's, resp. the reference's); ``markers, no refine`` and
``both, no refine`` leave the marker calls as they are.

Scored on the query's true singlets of good quality with :func:`sscsig.annotate.annotation_vs_truth`
(for ``reference`` also the calibration of its probabilities: ``ece_lineage``, ``ece_cell_state``).
Writes ``DIR/summary.tsv`` (one row per method) and ``DIR/per_label.tsv``. Seeded (config ``seed`` 0):
the same input gives the same table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def split_donors(donors) -> tuple[list[str], list[str]]:
    """Sorted donors, alternately reference / query."""
    d = sorted(set(map(str, donors)))
    return d[0::2], d[1::2]


def main(argv=None) -> int:
    import yaml

    from sscsig.annotate import annotate, annotate_by_reference, annotation_vs_truth, load_markers, marker_options
    from sscsig.config import validate_config
    from sscsig.io import read_cell_table

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("truth", type=Path)
    ap.add_argument("--markers", type=Path, default=ROOT / "config/markers.yaml")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    out = a.out or a.results / "annotation_split"
    out.mkdir(parents=True, exist_ok=True)
    cfg = validate_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    ann, refcfg = cfg["annotation"], cfg["annotation"]["reference"]
    opts = marker_options(ann)  # refine: set by each row below
    opts.pop("refine")
    mdata = md.read_h5mu(a.results / "cohort/integrated.h5mu")
    truth = read_cell_table(a.truth)
    t = truth.loc[mdata.obs_names]
    ref_donors, query_donors = split_donors(mdata.obs["donor"])
    donor = mdata.obs["donor"].astype(str)
    good = (~t["is_doublet"] & ~t["is_low_quality"]).to_numpy()
    in_ref = donor.isin(ref_donors).to_numpy() & good
    counts = lambda m: m.layers["counts"] if "counts" in m.layers else m.X  # noqa: E731
    ref_obs = pd.DataFrame({"cell_state": t["cell_state"].to_numpy()[in_ref], "lineage": t["lineage"].to_numpy()[in_ref],
                            "batch": mdata.obs["batch"].astype(str).to_numpy()[in_ref]}, index=mdata.obs_names[in_ref])
    ref = ad.AnnData(counts(mdata["rna"])[in_ref], obs=ref_obs, var=pd.DataFrame(index=mdata["rna"].var_names))
    prot = mdata["prot"]
    ref_prot = ad.AnnData(counts(prot)[in_ref], obs=ref_obs[[]], var=prot.var.copy())
    query = mdata[donor.isin(query_donors).to_numpy()].copy()
    print(f"reference: {len(ref_donors)} donors, {ref.n_obs} cells, {ref_obs['cell_state'].nunique()} states; "
          f"query: {len(query_donors)} donors, {query.n_obs} cells", flush=True)
    markers = load_markers(a.markers)
    rows, tables, mapped = [], [], None
    for method in ("markers", "markers, no refine", "reference", "reference (knn)", "both", "both, no refine"):
        q = query.copy()
        t0 = time.time()
        base, refine = method.split(",")[0], not method.endswith("no refine")
        if base == "reference":
            annotate_by_reference(q, ref, ref_prot, query_batch_key="batch", seed=cfg["seed"],
                                  **{k: refcfg[k] for k in ("min_probability", "novelty_quantile", "classifier",
                                                            "classifier_genes", "classifier_c")})
            mapped = q.obs[["lineage", "lineage_confidence", "lineage_knn", "cell_state_knn"]].copy()
        if method == "reference (knn)":
            q.obs["lineage"], q.obs["cell_state"] = mapped["lineage_knn"], mapped["cell_state_knn"]
        if base == "both":  # the reference's lineages (the mapping above, not trained again)
            annotate(q, markers, **opts, seed=cfg["seed"], lineage=mapped["lineage"].astype(str).to_numpy(),
                     lineage_confidence=mapped["lineage_confidence"].to_numpy(), refine=refine)
        elif base == "markers":
            annotate(q, markers, **opts, seed=cfg["seed"], refine=refine)
        summary, table = annotation_vs_truth(q.obs, a.truth, calibration=method == "reference")
        unassigned = float((q.obs["cell_state"].astype(str) == "Unassigned").mean())
        rows.append({"method": method, **{k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()},
                     "share_unassigned": round(unassigned, 4), "seconds": round(time.time() - t0)})
        tables.append(table.assign(method=method))
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    pd.DataFrame(rows).to_csv(out / "summary.tsv", sep="\t", index=False)
    pd.concat(tables).to_csv(out / "per_label.tsv", sep="\t", index=False, float_format="%.3f")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
