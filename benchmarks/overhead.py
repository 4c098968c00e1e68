"""Overhead of sscsig's rules over the bare library calls they wrap (run by hand on a finished run).

    python benchmarks/overhead.py RESULTS [--out TSV] [--rerun STAGE ...] [--configfile RUN.yaml]

Rules that ran side by side with others in the pipeline (milo, pseudobulk, signatures,
integration_metrics) shared the cores there; ``--rerun`` runs them again alone first
(``--configfile``: the extra config the run was made with, e.g. its ``demo.cells_per_donor``).

For each non-training stage below, a fresh Python process makes the same library calls a user
would write by hand on the same input (the file the rule reads, whole, with mudata / muon, then
scanpy / scvi-tools / pertpy / decoupler / PyDESeq2 / statsmodels / scib-metrics, no sscsig), and its wall time is compared with the rule's
Snakemake benchmark (``RESULTS/benchmarks/<rule>.tsv``): ratio = rule / bare.

* ``milo``: per contrast, 1,000 cells per donor, kNN on the latent space, pertpy Milo
  (make_nhoods, count_nhoods, da_nhoods with the PyDESeq2 solver, design ``~age + condition``).
* ``pseudobulk`` (first contrast): decoupler pseudobulk per donor and state, PyDESeq2 per state.
* ``signatures``: ``scanpy.tl.score_genes`` per signature, donor means per state, OLS per contrast.
* ``qc`` (one sample, ``--sample``): read the 10x h5 with muon, scanpy QC metrics, CLR, scrublet,
  filter, write the h5mu.
* ``merge``: read every QC'd sample, ``mudata.concat``, write the cohort.
* ``integrate`` (non-training part): normalise, batch-aware Seurat-v3 HVGs, PCA of RNA and of
  protein, totalVI set-up, latent and denoised protein, neighbours, Leiden per resolution, UMAP,
  write. totalVI's training time is subtracted from both sides (the rule's from
  ``uns['integration']``, the bare run trains 2 epochs and times them).
* ``annotate``: ``scanpy.tl.score_genes`` for every RNA module of ``config/markers.yaml``, Leiden
  within each lineage, write the h5mu (the rule adds the z-scores, graph smoothing and gating).
* ``integration_metrics``: Harmony on both PC blocks, muon's WNN graph, and the scib-metrics
  calls on 5,000 cells for four embeddings.
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
def cohort(name="annotated"):
    return md.read_h5mu(f"{R}/cohort/{name}.h5mu")
"""
ANNOTATED = COMMON + """
m = cohort()
obs = m.obs
"""

BARE = {
    "milo": ANNOTATED + r"""
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
    "pseudobulk": ANNOTATED + r"""
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
    "signatures": ANNOTATED + r"""
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
    "qc": COMMON + r"""
import muon as mu, scanpy as sc
sample = sys.argv[2]
m = mu.read_10x_h5(f"{R}/demo/{sample}/filtered_feature_bc_matrix.h5")
rna, prot = m["rna"], m["prot"]
rna.var["mt"] = rna.var_names.str.startswith("MT-")
sc.pp.calculate_qc_metrics(rna, qc_vars=["mt"], inplace=True, percent_top=None)
sc.pp.calculate_qc_metrics(prot, inplace=True, percent_top=None)
prot.layers["counts"] = prot.X.copy()
mu.prot.pp.clr(prot, axis=1)
sc.pp.scrublet(rna, expected_doublet_rate=0.05, random_state=0, use_approx_neighbors=False)
def mad_ok(x, n=5):
    med = np.median(x); mad = np.median(np.abs(x - med)) * 1.4826
    return (x > med - n * mad) & (x < med + n * mad)
keep = (mad_ok(np.log1p(rna.obs["total_counts"])) & mad_ok(np.log1p(rna.obs["n_genes_by_counts"]))
        & (rna.obs["pct_counts_mt"] < 20) & ~rna.obs["predicted_doublet"].astype(bool)
        & mad_ok(np.log1p(prot.obs["total_counts"]))).to_numpy()
m = m[keep].copy()
m.write(f"{R}/bare_qc.h5mu")
""",
    "merge": COMMON + r"""
import glob, os
paths = sorted(p for p in glob.glob(f"{R}/qc/*.h5mu"))
samples = {os.path.basename(p)[:-5]: md.read_h5mu(p) for p in paths}
m = md.concat(samples, label="sample", index_unique="_")
m.write(f"{R}/bare_merged.h5mu")
""",
    "integrate": COMMON + r"""
import time, muon as mu, scanpy as sc, scvi
scvi.settings.seed = 0
m = cohort("merged")
rna, prot = m["rna"], m["prot"]
rna.layers["counts"] = rna.X.copy()
sc.pp.normalize_total(rna, target_sum=1e4); sc.pp.log1p(rna)
rna.obs["batch"] = m.obs["batch"].astype(str).to_numpy()
sc.pp.highly_variable_genes(rna, flavor="seurat_v3", n_top_genes=2000, layer="counts", batch_key="batch")
sc.pp.pca(rna, n_comps=30, mask_var="highly_variable", random_state=0)
prot.layers["counts"] = prot.X.toarray() if hasattr(prot.X, "toarray") else prot.X.copy()  # totalVI: dense
mu.prot.pp.clr(prot, axis=1)
p = prot.copy(); sc.pp.scale(p); sc.pp.pca(p, n_comps=15, random_state=0); prot.obsm["X_pca"] = p.obsm["X_pca"]
sub = md.MuData({"rna": rna[:, rna.var["highly_variable"].to_numpy()].copy(), "prot": prot.copy()})
scvi.model.TOTALVI.setup_mudata(sub, rna_layer="counts", protein_layer="counts", batch_key="batch",
                                modalities={"rna_layer": "rna", "protein_layer": "prot", "batch_key": "rna"})
model = scvi.model.TOTALVI(sub, n_latent=20)
t0 = time.time()
model.train(max_epochs=2, accelerator="cpu", devices=1, batch_size=256, enable_progress_bar=False)
print("TRAIN_SECONDS", time.time() - t0)
rna.obsm["X_totalvi"] = model.get_latent_representation()
_, den = model.get_normalized_expression(n_samples=10, return_mean=True,
    transform_batch=sorted(rna.obs["batch"].unique()), gene_list=[str(sub["rna"].var_names[0])],
    include_protein_background=False, return_numpy=True)
prot.layers["totalvi_denoised"] = np.asarray(den, dtype=np.float32)
sc.pp.neighbors(rna, use_rep="X_totalvi", n_neighbors=15, random_state=0)
for res in (0.5, 1.0):
    sc.tl.leiden(rna, resolution=res, flavor="igraph", n_iterations=2, random_state=0, key_added=f"leiden_{res}")
sc.tl.umap(rna, min_dist=0.3, random_state=0)
m.update()
m.write(f"{R}/bare_integrated.h5mu")
""",
    "annotate": COMMON + r"""
import scanpy as sc
m = cohort("integrated")
rna = m["rna"]
markers = yaml.safe_load(open("config/markers.yaml"))
modules = set()
def walk(d):
    for comp in d.values():
        for kind in ("rna_pos", "rna_neg"):
            if comp.get(kind):
                modules.add(tuple(sorted(comp[kind])))
        walk(comp.get("substates") or {})
walk(markers["lineages"])
for states in markers["states"].values():
    walk(states)
for i, genes in enumerate(sorted(modules)):
    present = [g for g in genes if g in rna.var_names]
    if present:
        sc.tl.score_genes(rna, present, random_state=0, score_name=f"module_{i}")
import h5py
from anndata.io import read_elem
with h5py.File(f"{R}/cohort/annotated.h5mu", "r") as f:  # the rule's lineage calls, obs only
    lineage = read_elem(f["obs"])["lineage"].astype("category")
rna.obs["lineage"] = pd.Categorical(lineage.astype(str).to_numpy())
rna.obsp["connectivities"], rna.obsp["distances"] = m.obsp["connectivities"], m.obsp["distances"]
rna.uns["neighbors"] = {"connectivities_key": "connectivities", "distances_key": "distances", "params": {"method": "umap"}}
sc.tl.leiden(rna, resolution=0.5, flavor="igraph", n_iterations=2, random_state=0, key_added="sub",
             restrict_to=("lineage", list(rna.obs["lineage"].cat.categories)))
m.update()
m.write(f"{R}/bare_annotated.h5mu")
""",
    "integration_metrics": COMMON + r"""
import anndata as ad, harmonypy, muon as mu, scanpy as sc, scib_metrics
from scib_metrics.nearest_neighbors import NeighborsResults
from sklearn.neighbors import NearestNeighbors
m = cohort()
rng = np.random.default_rng(0)
pick = np.sort(rng.choice(m.n_obs, min(5000, m.n_obs), replace=False))
b = m.obs["batch"].astype(str).to_numpy()[pick]; c = m.obs["cell_state"].astype(str).to_numpy()[pick]
r, q = m.obsm["X_pca_rna"][pick], m.obsm["X_pca_prot"][pick]
meta = pd.DataFrame({"batch": b})
def harm(x):
    z = np.asarray(harmonypy.run_harmony(x.astype(np.float64), meta, "batch", random_state=0).Z_corr)
    return z if z.shape[0] == len(x) else z.T
hr, hq = harm(r), harm(q)
mods = {}
for name, x in (("rna", hr), ("prot", hq)):
    a = ad.AnnData(obs=pd.DataFrame(index=[str(i) for i in range(len(pick))]), obsm={"X_rep": x.astype(np.float32)})
    sc.pp.neighbors(a, use_rep="X_rep", n_neighbors=20, random_state=0); mods[name] = a
w = md.MuData(mods); mu.pp.neighbors(w, n_neighbors=20, key_added="wnn", random_state=0)
def unit(*xs):
    return np.hstack([x / np.sqrt(x.var(0).sum()) for x in xs]).astype(np.float32)
embs = {"totalVI": m.obsm["X_integrated"][pick], "WNN": unit(hr, hq), "Harmony": unit(hr, hq), "PCA": unit(r, q)}
for name, e in embs.items():
    d, i = NearestNeighbors(n_neighbors=31).fit(e).kneighbors(e)
    scib_metrics.silhouette_batch(e, c, b); scib_metrics.ilisi_knn(NeighborsResults(indices=i[:, 1:], distances=d[:, 1:]), b)
    scib_metrics.silhouette_label(e, c); scib_metrics.nmi_ari_cluster_labels_kmeans(e, c)
""",
}


def bare_time(stage: str, results: Path, sample: str) -> float:
    """Wall time of the bare script in a fresh process (totalVI training time subtracted)."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", BARE[stage], str(results), sample], capture_output=True, text=True)
    wall = time.time() - t0
    for f in results.glob("bare_*.h5mu"):
        f.unlink()
    if proc.returncode:
        raise SystemExit(f"{stage}: {proc.stderr[-2000:]}")
    train = [float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("TRAIN_SECONDS")]
    return wall - sum(train)


def rule_time(stage: str, results: Path, sample: str) -> float:
    """The rule's wall time from its Snakemake benchmark file(s), on the same work as the bare run."""
    bench = results / "benchmarks"
    files = sorted(bench.glob(f"{stage}.tsv")) or sorted((bench / stage).glob("*.tsv"))
    if stage == "pseudobulk":  # the first contrast of the config, as the bare run
        import yaml

        first = next(iter(yaml.safe_load(Path("config/config.yaml").read_text())["contrasts"]))
        files = [bench / "pseudobulk" / f"{first}.tsv"]
    if stage == "qc":
        files = [bench / "qc" / f"{sample}.tsv"]
    wall = float(sum(pd.read_csv(f, sep="\t")["s"].iloc[0] for f in files))
    if stage == "integrate":  # minus totalVI's training, as recorded by the rule
        import h5py
        from anndata.io import read_elem

        with h5py.File(results / "cohort" / "integrated.h5mu", "r") as f:
            facts = read_elem(f["uns/integration"])
        wall -= float(facts.get("totalvi", {}).get("train_seconds", 0.0))
    return wall


def rerun_alone(stage: str, results: Path, configfile: Path | None) -> None:
    """Run the stage's rule again on an otherwise idle machine (in the pipeline, rules that do not
    depend on each other share the cores), so that its benchmark file times it alone."""
    cores = "2" if stage == "integrate" else "1"  # one job at a time (only integrate is multi-threaded)
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--cores", cores, "--configfile", "config/config.yaml",
           *([str(configfile)] if configfile else []), "--config", f"outdir={results}",
           "--forcerun", stage, "--until", stage, "--rerun-triggers", "mtime", "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{stage}: re-run failed: {proc.stderr[-2000:]}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--stages", nargs="+", default=list(BARE))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--sample", default="SSc01_PBMC", help="the sample the qc stage is timed on")
    ap.add_argument("--rerun", nargs="*", default=[], metavar="STAGE",
                    help="re-run these rules alone first (those that shared the cores in the pipeline)")
    ap.add_argument("--configfile", type=Path, help="the run's extra config (e.g. its demo size), for --rerun")
    a = ap.parse_args()
    rows = []
    for stage in a.stages:
        try:
            if stage in a.rerun:
                rerun_alone(stage, a.results, a.configfile)
            bare = bare_time(stage, a.results, a.sample)
        except SystemExit as err:  # report the stage and go on with the others
            print(err, file=sys.stderr, flush=True)
            continue
        rule = rule_time(stage, a.results, a.sample)
        rows.append({"stage": stage, "rule_s": round(rule, 1), "bare_s": round(bare, 1),
                     "ratio": round(rule / bare, 2)})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    if a.out:
        table.to_csv(a.out, sep="\t", index=False)
