"""Build ``src/sscsig/data/genes_pbmc10k.tsv``, the simulator's gene universe.

Run once by a developer (needs ../shared/data); the output is committed. Source: 10x Genomics
pbmc_10k_protein_v3 (CC-BY-4.0), 200-cell subset shipped with scvi-tools test data (BSD-3).
Columns: ``symbol`` (HGNC symbol as in Cell Ranger's GRCh38 reference), ``ensembl_like_id`` (a
stable placeholder id, since the subset has no Ensembl ids), ``mean_umi`` (mean UMIs per cell over the
200 PBMCs, the simulator's background profile).
"""

from pathlib import Path
import sys

import mudata as md
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from sscsig.demo._states import program_genes  # noqa: E402

N_TOP = 2400
src = Path(__file__).resolve().parents[2] / "shared/data/pbmc10k_protein_v3_200cells_scvi.h5mu"
rna = md.read_h5mu(src)["rna"]
mean = np.asarray(rna.X.mean(0)).ravel()
names = np.asarray(rna.var_names)
df = pd.DataFrame({"symbol": names, "mean_umi": mean}).drop_duplicates("symbol")
mt = df.symbol.str.startswith("MT-")
keep = set(df.loc[~mt].nlargest(N_TOP, "mean_umi").symbol) | set(df.loc[mt].symbol)
missing = [g for g in program_genes() if g not in set(df.symbol)]
if missing:
    raise SystemExit(f"program genes absent from the source: {missing}")
keep |= set(program_genes())
out = df[df.symbol.isin(keep)].copy()
out["mean_umi"] = out["mean_umi"].clip(lower=0.002).round(5)
out.insert(1, "ensembl_like_id", [f"SIMG{i:06d}" for i in range(len(out))])
dest = Path(__file__).resolve().parents[1] / "src/sscsig/data/genes_pbmc10k.tsv"
out.to_csv(dest, sep="\t", index=False)
print(f"{len(out)} genes -> {dest}")
