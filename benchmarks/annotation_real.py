"""Annotation accuracy on real, labelled CITE-seq data (issue 16's harness; run by hand).

    python benchmarks/annotation_real.py [--shared ../shared/data] [--out benchmarks/annotation_real]

Data sets scored (from ``../shared/data``; see its README for sources and licences):

- ``pbmc10k_protein_v3_200cells_scvi.h5mu``: 200 PBMCs of 10x's pbmc_10k_protein_v3 (14 antibodies),
  with SingleR main and fine labels (via tagtango). SingleR is itself a prediction from RNA, so
  this is agreement with an independent RNA-only annotator, not ground truth.

Each is run through the pipeline's own functions (``integrate`` with ``wnn`` and with ``totalvi``,
``cluster``, ``annotate`` with ``config/markers.yaml`` and the schema's annotation defaults).
Scores: lineage macro-F1 over the reference labels with at least ``--min-cells`` cells (smaller ones
are listed, not averaged), per-class precision/recall/F1, the confusion matrix, the share of cells
Unassigned, and a state-level score on the reference's fine labels that name one of the
pipeline's states. Label harmonisation (below) is explicit: SingleR has no DC, MAIT or gd T label.

Writes ``summary.tsv``, ``per_class.tsv`` and ``confusion_<data>_<method>.tsv`` under ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

# pipeline lineage -> SingleR main label it agrees with
LINEAGE_TO_SINGLER = {"CD4_T": "CD4+ T-cells", "CD8_T": "CD8+ T-cells", "Mono": "Monocytes", "DC": "Monocytes",
                      "NK": "NK cells", "B": "B-cells"}
# SingleR fine label -> the pipeline states it names (labels not listed are not scored at state level)
SINGLER_FINE_TO_STATES = {
    "CD4+ Tcm": {"CD4.TCM"}, "CD4+ Tem": {"CD4.TEM"}, "Tregs": {"Treg"},
    "CD8+ Tcm": {"CD8.TCM"}, "CD8+ Tem": {"CD8.TEM", "CD8.TEM_T2ISG", "CD8.CTL"},
    "naive B-cells": {"B.Naive"}, "Memory B-cells": {"B.Memory"}, "Class-switched memory B-cells": {"B.Memory"},
}


def _run(m, method: str, cfg: dict, seed: int):
    from sscsig.annotate import annotate, load_markers
    from sscsig.integrate import cluster, integrate

    integrate(m, method=method, totalvi={"max_epochs": 100}, seed=seed)
    cluster(m, resolutions=[1.0], seed=seed)
    opts = {k: v for k, v in cfg["annotation"].items() if k in
            ("smoothing", "min_confidence", "min_genes_per_module", "substate_robust_z", "protein_layer")}
    opts["protein_layer"] = "clr"  # no empty droplets in these fixtures: DSB is not available
    report = annotate(m, load_markers(ROOT / "config/markers.yaml"), **opts, seed=seed)
    return m.obs["lineage"].astype(str).to_numpy(), m.obs["cell_state"].astype(str).to_numpy(), report


def score_pbmc10k(path: Path, *, methods, cfg: dict, seed: int, min_cells: int):
    import anndata as ad
    import h5py

    from sscsig.annotate import annotation_f1
    from sscsig.io import read_sample

    with h5py.File(path, "r") as f:
        obs = ad.io.read_elem(f["obs"])
    labelled = obs["celltype_main_singler"].notna().to_numpy()  # one cell has no SingleR label
    main = obs["celltype_main_singler"].astype(str).to_numpy()[labelled]
    fine = obs["celltype_fine_singler"].astype(str).to_numpy()[labelled]
    rows, classes, confusions = [], [], {}
    for method in methods:
        m = read_sample(path, sample="pbmc10k")
        lin, state, report = _run(m, method, cfg, seed)
        lin, state = lin[labelled], state[labelled]
        pred = np.array([LINEAGE_TO_SINGLER.get(x, x) for x in lin], dtype=object)
        table, overall = annotation_f1(pred, main)
        big = table[table.n_true >= min_cells]
        fine_ok = np.array([f in SINGLER_FINE_TO_STATES for f in fine])
        state_hit = np.array([s in SINGLER_FINE_TO_STATES.get(f, set()) for s, f in zip(state, fine)])
        rows.append({"data": "pbmc10k_200", "reference": "SingleR main (RNA)", "method": method,
                     "n_cells": len(main), "lineage_macro_f1": round(float(big.f1.mean()), 3),
                     "lineage_accuracy": round(overall["accuracy"], 3),
                     "classes_averaged": ",".join(big.label),
                     "unassigned_share": round(float((lin == "Unassigned").mean()), 3),
                     "state_agreement_on_specific_fine_labels": round(float(state_hit[fine_ok].mean()), 3),
                     "n_specific_fine": int(fine_ok.sum()),
                     "missing_markers": len(report["missing_markers"])})
        classes.append(table.assign(data="pbmc10k_200", method=method))
        confusions[f"pbmc10k_200_{method}"] = pd.crosstab(pd.Series(lin, name="sscsig lineage"),
                                                          pd.Series(main, name="SingleR main"))
        confusions[f"pbmc10k_200_{method}_states"] = pd.crosstab(pd.Series(state, name="sscsig state"),
                                                                 pd.Series(fine, name="SingleR fine"))
    return rows, classes, confusions


def main(argv=None) -> int:
    import yaml

    from sscsig.config import validate_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "annotation_real")
    ap.add_argument("--methods", nargs="+", default=["wnn", "totalvi"])
    ap.add_argument("--min-cells", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    path = a.shared / "pbmc10k_protein_v3_200cells_scvi.h5mu"
    if not path.exists():
        raise SystemExit(f"annotation_real: {path} not found (the shared real-data fixtures)")
    cfg = validate_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    rows, classes, confusions = score_pbmc10k(path, methods=a.methods, cfg=cfg, seed=a.seed,
                                             min_cells=a.min_cells)
    a.out.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame(rows)
    summary.to_csv(a.out / "summary.tsv", sep="\t", index=False)
    pd.concat(classes).to_csv(a.out / "per_class.tsv", sep="\t", index=False, float_format="%.3f")
    for name, c in confusions.items():
        c.to_csv(a.out / f"confusion_{name}.tsv", sep="\t")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.drop(columns=["classes_averaged"]))
        for name, c in confusions.items():
            if not name.endswith("_states"):
                print(name), print(c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
