"""Score a demo run's tissue stages against the simulator's truth, and collect their time and memory.

Run the demo with tissue first (default scale: 27 donors x 800 blood cells, 10 tissue samples x 600
cells), then score it::

    printf 'demo:\\n  with_tissue: true\\n' > /tmp/tissue.yaml
    .venv/bin/snakemake --cores 2 --configfile config/config.yaml /tmp/tissue.yaml --config outdir=results/tissue_demo
    .venv/bin/python benchmarks/tissue.py results/tissue_demo --out benchmarks/tissue/results_default.tsv

Per tissue: cells whose truth is a blood state that were called immune, the share unmapped, the
state macro-F1 and accuracy of the mapped ones (against the truth; the reference labels are the
pipeline's own blood annotation, so annotation errors count), per-state F1 of the hypothesis states,
lineage accuracy, the share of tissue-only cells (macrophages, parenchyma) forced into a blood state;
for the trajectory tissue, the Spearman correlation of pseudotime with the truth, THBS1's FDR and
rank, and the blood entry state; for the lung, the CD8.TEM_T2ISG share in ILD and non-ILD lungs and
the share of those cells whose TCR clone is also in the donor's blood. The
rules' wall time and peak RSS come from the run's Snakemake benchmarks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import f1_score

from sscsig.demo import STATE_LINEAGE
from sscsig.io import read_cell_table

KEY_STATES = ["CD14.EGR1", "CD8.TEM_T2ISG"]


def score(results: Path) -> pd.DataFrame:
    truth = read_cell_table(results / "demo/truth/tissue_cells.tsv")
    rows = []
    for h5 in sorted((results / "tissue").glob("*.h5mu")):
        tissue = h5.stem
        if tissue.endswith("_mapped"):
            continue
        obs = md.read_h5mu(h5).obs
        d = obs.join(truth[["tissue_type", "cell_state", "pseudotime"]], rsuffix="_truth")
        blood = d[d["cell_state"].notna()]
        immune = blood[blood["tissue_type"] == "immune"]
        state = immune["blood_state"].astype(str)
        mapped = immune[state != "unmapped"]
        ms = mapped["blood_state"].astype(str)
        only = d[d["cell_state"].isna()]
        forced = only["blood_state"].notna() & ~only["blood_state"].astype(str).isin(["unmapped", "nan"])
        row = {"tissue": tissue, "cells": len(d), "blood_state_cells": len(blood),
               "called_immune": round(len(immune) / max(len(blood), 1), 4),
               "unmapped": round(float((state == "unmapped").mean()), 4),
               "state_macro_f1": round(f1_score(mapped["cell_state"], ms, average="macro"), 4),
               "state_accuracy": round(float((mapped["cell_state"] == ms).mean()), 4),
               "lineage_accuracy": round(float((mapped["blood_lineage"].astype(str)
                                               == mapped["cell_state"].map(STATE_LINEAGE)).mean()), 4),
               "tissue_only_cells": len(only), "tissue_only_forced": round(float(forced.mean()), 4)}
        for s in KEY_STATES:
            if (mapped["cell_state"] == s).sum() >= 5:
                row[f"f1_{s}"] = round(f1_score(mapped["cell_state"] == s, ms == s), 4)
        traj = results / f"tissue/trajectory_{tissue}.tsv"
        if traj.exists():
            c = d[d["pseudotime_truth"].notna() & d["pseudotime"].notna()]
            row["pseudotime_spearman"] = round(float(spearmanr(c["pseudotime"], c["pseudotime_truth"])[0]), 4)
            row["continuum_cells_on_path"] = round(len(c) / max(int(d["pseudotime_truth"].notna().sum()), 1), 4)
            tr = pd.read_csv(traj, sep="\t").set_index("gene")
            row["THBS1_fdr"], row["THBS1_rank"] = float(tr.loc["THBS1", "fdr"]), int(tr.loc["THBS1", "rank"])
            facts = json.loads((results / f"tissue/trajectory_{tissue}.json").read_text())
            row["entry"] = facts.get("entry")
            row["entry_enrichment"] = round(max(facts.get("entry_enrichment", {0: np.nan}).values()), 4)
        table = pd.read_csv(results / f"tables/tissue_{tissue}.tsv", sep="\t").set_index("state")
        if "CD8.TEM_T2ISG" in table.index and "share_ILD" in table:
            t2 = table.loc["CD8.TEM_T2ISG"]
            if t2["n_ILD"] > 0 and t2["n_no_ILD"] > 0:
                row["T2ISG_share_ILD"], row["T2ISG_share_no_ILD"] = round(t2["share_ILD"], 4), round(t2["share_no_ILD"], 4)
            if "tcr_shared_ILD" in t2:  # share of the T2ISG cells' clones also in the donor's blood
                row["T2ISG_tcr_shared_ILD"] = round(float(t2["tcr_shared_ILD"]), 4)
                row["T2ISG_tcr_shared_no_ILD"] = round(float(np.nan_to_num(t2["tcr_shared_no_ILD"])), 4)
        for rule in ("tissue_map", "tissue_trajectory", "tissue_clonotypes", "tissue_table", "tissue_figure"):
            b = results / f"benchmarks/{rule}/{tissue}.tsv"
            if b.exists():
                bench = pd.read_csv(b, sep="\t").iloc[0]
                row[f"{rule}_s"], row[f"{rule}_rss_mb"] = round(bench["s"], 1), round(bench["max_rss"], 0)
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a demo run's outdir (demo.with_tissue: true)")
    ap.add_argument("--out", type=Path, help="write the table here (TSV)")
    args = ap.parse_args()
    df = score(args.results)
    print(df.T.to_string())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
