"""Overhead of sscsig's rules over the bare library calls they wrap (run by hand on a finished run).

    python benchmarks/overhead.py RESULTS [--out TSV]

For each non-training stage below, a fresh Python process makes the same library calls a user
would write by hand on the same input (read the annotated h5mu with mudata, then scanpy / pertpy /
decoupler / PyDESeq2 / statsmodels, no sscsig), and its wall time is compared with the rule's
Snakemake benchmark (``RESULTS/benchmarks/<rule>.tsv``): ratio = rule / bare.

* ``milo``: per contrast, 1,000 cells per donor, kNN on the latent space, pertpy Milo
  (make_nhoods, count_nhoods, da_nhoods with the PyDESeq2 solver, design ``~age + condition``).
* ``pseudobulk`` (first contrast): decoupler pseudobulk per donor and state, PyDESeq2 per state.
* ``signatures``: ``scanpy.tl.score_genes`` per signature, donor means per state, OLS per contrast.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

COMMON = r"""
import sys, warnings, yaml, numpy as np, pandas as pd, mudata as md
warnings.simplefilter("ignore")
md.set_options(pull_on_update=False)
R = sys.argv[1]
cfg = yaml.safe_load(open("config/config.yaml"))
sheet = pd.read_csv(f"{R}/demo/samples.tsv", sep="\t")
donors = sheet.drop_duplicates("donor").set_index("donor")
def groups(spec):
    def sel(d):
        m = pd.Series(True, index=donors.index)
        for k, v in d.items():
            col = donors[k].astype(str).str.lower() if isinstance(v, bool) else donors[k]
            m &= col == (str(v).lower() if isinstance(v, bool) else v)
        return m
    g = pd.Series(np.nan, index=donors.index)
    g[sel(spec["control"])] = 0
    g[sel(spec["case"])] = 1
    return g.dropna()
m = md.read_h5mu(f"{R}/cohort/annotated.h5mu")
obs = m.obs
"""

BARE = {
    "milo": COMMON + r"""
import anndata as ad, scanpy as sc, pertpy as pt
rng = np.random.default_rng(0)
for name, spec in cfg["contrasts"].items():
    g = groups(spec)
    keep = obs["donor"].astype(str).isin(g.index).to_numpy()
    idx = np.flatnonzero(keep)
    d = obs["donor"].astype(str).to_numpy()[idx]
    pick = np.sort(np.concatenate([rng.permutation(idx[d == x])[:1000] for x in np.unique(d)]))
    a = ad.AnnData(obs=obs.iloc[pick][["donor", "cell_state"]].astype(str), obsm={"X": m.obsm["X_integrated"][pick]})
    a.obs["age"] = donors.loc[a.obs["donor"], "age"].to_numpy()
    a.obs["condition"] = np.where(g.loc[a.obs["donor"]].to_numpy() == 1, "1_case", "0_control")
    sc.pp.neighbors(a, use_rep="X", n_neighbors=int(np.clip(5 * len(g), 30, 100)), random_state=0)
    milo = pt.tl.Milo(); mm = milo.load(a)
    milo.make_nhoods(mm["rna"], prop=0.1, seed=0)
    mm = milo.count_nhoods(mm, sample_col="donor")
    milo.da_nhoods(mm, design="~age + condition", solver="pydeseq2")
""",
    "pseudobulk": COMMON + r"""
import anndata as ad, decoupler as dc
from pydeseq2.dds import DeseqDataSet
from pydeseq2.ds import DeseqStats
from pydeseq2.default_inference import DefaultInference
name, spec = next(iter(cfg["contrasts"].items()))
g = groups(spec)
rna = m["rna"]
a = ad.AnnData(X=rna.layers["counts"], obs=obs[["donor", "cell_state"]].astype(str))
pb = dc.pp.pseudobulk(a, sample_col="donor", groups_col="cell_state", mode="sum")
for state in pb.obs["cell_state"].unique():
    s = pb[(pb.obs["cell_state"] == state).to_numpy() & pb.obs["donor"].isin(g.index).to_numpy()
           & (pb.obs["psbulk_cells"] >= 10).to_numpy()]
    cond = g.loc[s.obs["donor"]]
    if min((cond == 1).sum(), (cond == 0).sum()) < 3:
        continue
    x = np.asarray(s.X.toarray() if hasattr(s.X, "toarray") else s.X)
    genes = ((x >= 10).sum(0) >= 3)
    if genes.sum() < 10:
        continue
    meta = pd.DataFrame({"age": donors.loc[s.obs["donor"], "age"].to_numpy(),
                         "condition": np.where(cond.to_numpy() == 1, "1_case", "0_control")}, index=s.obs_names)
    inf = DefaultInference(n_cpus=1)
    dds = DeseqDataSet(counts=pd.DataFrame(x[:, genes].astype(int), index=s.obs_names),
                       metadata=meta, design="~age + condition", refit_cooks=True, inference=inf, quiet=True)
    dds.deseq2()
    st = DeseqStats(dds, contrast=["condition", "1_case", "0_control"], inference=inf, quiet=True)
    st.summary()
""",
    "signatures": COMMON + r"""
import scanpy as sc, statsmodels.formula.api as smf
rna = m["rna"]
for sname, sig in cfg["signatures"].items():
    genes = sig.get("genes") or []
    if not genes:
        for line in open("src/sscsig/data/genesets.tsv"):
            if line.startswith(sig["gene_set"] + "\t"):
                genes = line.split("\t")[1].split()
    sc.tl.score_genes(rna, [x for x in genes if x in rna.var_names], random_state=0, score_name=sname)
    cells = obs["cell_state"].isin(sig["states"]).to_numpy()
    per = pd.DataFrame({"donor": obs["donor"].astype(str).to_numpy()[cells],
                        "s": rna.obs[sname].to_numpy()[cells]}).groupby("donor")["s"].mean()
    for name, spec in cfg["contrasts"].items():
        g = groups(spec)
        df = pd.DataFrame({"s": per.reindex(g.index), "c": g, "age": donors.loc[g.index, "age"]}).dropna()
        smf.ols("s ~ age + c", df).fit()
""",
}


def bare_time(stage: str, results: Path) -> float:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", BARE[stage], str(results)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{stage}: {proc.stderr[-2000:]}")
    return time.time() - t0


def rule_time(stage: str, results: Path) -> float:
    files = sorted((results / "benchmarks").glob(f"{stage}.tsv")) or sorted((results / "benchmarks" / stage).glob("*.tsv"))
    if stage == "pseudobulk":  # the first contrast of the config, as the bare run
        import yaml

        first = next(iter(yaml.safe_load(Path("config/config.yaml").read_text())["contrasts"]))
        files = [results / "benchmarks" / "pseudobulk" / f"{first}.tsv"]
    return float(sum(pd.read_csv(f, sep="\t")["s"].iloc[0] for f in files))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--stages", nargs="+", default=list(BARE))
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    rows = []
    for stage in a.stages:
        bare, rule = bare_time(stage, a.results), rule_time(stage, a.results)
        rows.append({"stage": stage, "rule_s": round(rule, 1), "bare_s": round(bare, 1),
                     "ratio": round(rule / bare, 2)})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if a.out:
        table.to_csv(a.out, sep="\t", index=False)
