"""sscsig's WNN path side by side with Seurat 4.3's (the reference study's toolchain); run by hand.

    python benchmarks/peers/peers.py --merged results/cohort/merged.h5mu \
        [--truth results/demo/truth/cells.tsv] [--work /tmp/peers] [--out benchmarks/peers/results.tsv]

Needs R with Seurat 4.3 (Debian: ``apt-get install r-cran-seurat``); Harmony rows need the R package
``harmony`` and are skipped without it. One merged matrix (a run's ``cohort/merged.h5mu``: QC'd
cells, raw RNA + protein counts), one machine, one run, each tool in a fresh process under GNU
time (wall time, peak RSS of the process tree's largest process):

- ``seurat``: ``seurat_wnn.R`` — LogNormalize, 2,000 HVG, ScaleData, 30 PCs; ADT CLR (margin 2),
  ScaleData, 15 PCs; FindMultiModalNeighbors; FindClusters (Louvain, resolutions 0.5 and 1.0);
  RunUMAP. Without batch correction, and with Harmony per modality when installed.
- ``sscsig``: what rule ``integrate`` runs with ``integration.method: wnn`` (``integrate`` +
  ``cluster``: log-normalise, 2,000 seurat_v3 HVG, 30 RNA PCs, the normalised protein's 15 PCs,
  muon WNN, Leiden at 0.5 and 1.0, UMAP), without batch correction (``batch_key`` absent) and with
  Harmony per modality (the default).

Exporting the matrix for R (Matrix Market) is not timed. Clusterings are compared by ARI (Seurat's
vs sscsig's at the same resolution and batch handling; each against the demo's true states when
``--truth`` is given, on the true singlets).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

SSCSIG_CHILD = """
import sys, time, yaml
import mudata as md, torch
from sscsig.config import validate_config
from sscsig.integrate import cluster, integrate
cfg = validate_config(yaml.safe_load(open('config/config.yaml')))
torch.set_num_threads(2)
t = time.time()
m = md.read_h5mu(sys.argv[1])
print(f"STEP read {time.time() - t:.1f}", flush=True); t = time.time()
integrate(m, method='wnn', batch_key=sys.argv[3], n_hvg=2000, n_pcs_rna=30, n_pcs_prot=15, seed=cfg['seed'])
print(f"STEP integrate {time.time() - t:.1f}", flush=True); t = time.time()
cluster(m, **{**cfg['clustering'], 'resolutions': [0.5, 1.0]}, seed=cfg['seed'])
print(f"STEP cluster_umap {time.time() - t:.1f}", flush=True)
m.obs[['leiden_0.5', 'leiden_1.0']].rename_axis('cell').to_csv(sys.argv[2], sep='\\t')
"""


def export_for_r(merged: Path, out: Path) -> None:
    """The merged RNA and protein counts as Matrix Market (features x cells) + names + batch."""
    import mudata as md
    import scipy.io
    import scipy.sparse as sp

    if (out / "batch.txt").exists():
        return
    out.mkdir(parents=True, exist_ok=True)
    m = md.read_h5mu(merged)
    rna, prot = m["rna"], m["prot"]
    counts = rna.layers["counts"] if "counts" in rna.layers else rna.X
    scipy.io.mmwrite(out / "rna.mtx", sp.csc_matrix(counts).T.tocoo())
    pc = prot.layers["counts"] if "counts" in prot.layers else prot.X
    scipy.io.mmwrite(out / "adt.mtx", sp.csc_matrix(pc).T.tocoo())
    (out / "genes.txt").write_text("\n".join(map(str, rna.var_names)) + "\n")
    (out / "proteins.txt").write_text("\n".join(str(p).replace("_", "-") for p in prot.var_names) + "\n")
    (out / "cells.txt").write_text("\n".join(map(str, m.obs_names)) + "\n")
    (out / "batch.txt").write_text("\n".join(m.obs["batch"].astype(str)) + "\n")


def timed(cmd: list[str], log: Path, cwd: Path = ROOT) -> dict:
    t0 = time.time()
    with open(log, "w") as fh:
        status = subprocess.call(["/usr/bin/time", "-f", "MAXRSS_KB %M", *cmd], stdout=fh, stderr=subprocess.STDOUT,
                                 cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "2",
                                               "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"})
    wall = time.time() - t0
    text = log.read_text()
    if status:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{text[-3000:]}")
    steps = {ln.split()[1]: float(ln.split()[2]) for ln in text.splitlines() if ln.startswith("STEP ")}
    rss = int(next(ln for ln in text.splitlines() if ln.startswith("MAXRSS_KB")).split()[1])
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(rss / 1024), "steps": steps}


def have_r_package(name: str) -> bool:
    return subprocess.call(["Rscript", "-e", f"quit(status = !requireNamespace('{name}', quietly = TRUE))"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def main(argv=None) -> int:
    from sklearn.metrics import adjusted_rand_score

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--merged", type=Path, required=True)
    ap.add_argument("--truth", type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/sscsig_peers"))
    ap.add_argument("--out", type=Path, default=HERE / "results.tsv")
    a = ap.parse_args(argv)
    if not have_r_package("Seurat"):
        raise SystemExit("peers: R package Seurat not found (apt-get install r-cran-seurat)")
    a.work.mkdir(parents=True, exist_ok=True)
    export = a.work / "export"
    export_for_r(a.merged, export)
    n_cells = sum(1 for _ in open(export / "cells.txt"))
    runs = [("seurat", "none"), ("sscsig", "none"), ("sscsig", "harmony")]
    if have_r_package("harmony"):
        runs.insert(1, ("seurat", "harmony"))
    rows, clusters = [], {}
    for tool, correction in runs:
        tag = f"{tool}_{correction}"
        tsv = a.work / f"{tag}_clusters.tsv"
        if tool == "seurat":
            cmd = ["Rscript", str(HERE / "seurat_wnn.R"), str(export), str(tsv), correction]
        else:
            cmd = [sys.executable, "-c", SSCSIG_CHILD, str(a.merged), str(tsv),
                   "batch" if correction == "harmony" else "__no_batch__"]
        r = timed(cmd, a.work / f"{tag}.log")
        print(tag, r, flush=True)
        c = pd.read_csv(tsv, sep="\t", index_col=0).astype(str)
        c.columns = ["res_0.5", "res_1.0"]
        clusters[tag] = c
        rows.append({"cells": n_cells, "tool": tool, "batch_correction": correction, "wall_s": r["wall_s"],
                     "peak_rss_mb": r["peak_rss_mb"],
                     "steps": "; ".join(f"{k} {v:.0f}s" for k, v in r["steps"].items()),
                     "clusters_res_1.0": c["res_1.0"].nunique()})
    table = pd.DataFrame(rows)
    truth = None
    if a.truth:
        from sscsig.io import read_cell_table

        t = read_cell_table(a.truth)
        truth = t[~t["is_doublet"] & ~t["is_low_quality"]]["cell_state"]
    for i, row in table.iterrows():
        tag = f"{row['tool']}_{row['batch_correction']}"
        peer = f"seurat_{row['batch_correction']}"
        c = clusters[tag]
        if peer in clusters and peer != tag:
            other = clusters[peer].reindex(c.index)
            table.loc[i, "ari_vs_seurat_same_correction"] = round(adjusted_rand_score(other["res_1.0"], c["res_1.0"]), 3)
        if truth is not None:
            common = c.index.intersection(truth.index)
            table.loc[i, "ari_vs_truth_res_1.0"] = round(adjusted_rand_score(truth[common], c.loc[common, "res_1.0"]), 3)
            table.loc[i, "ari_vs_truth_res_0.5"] = round(adjusted_rand_score(truth[common], c.loc[common, "res_0.5"]), 3)
    seurat = table[table.tool == "seurat"].set_index("batch_correction")
    for i, row in table.iterrows():
        if row["batch_correction"] in seurat.index:
            table.loc[i, "speed_vs_seurat"] = round(seurat.loc[row["batch_correction"], "wall_s"] / row["wall_s"], 2)
    table["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(a.out, sep="\t", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
