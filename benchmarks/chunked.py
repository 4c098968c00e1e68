"""Peak memory of the pseudobulk, integrate and annotate stages at up to a million cells, without running
the pipeline at that size.

    python benchmarks/chunked.py RESULTS [--stage pseudobulk] --tiles 12 27 48 [--modes disk memory decoupler]
    python benchmarks/chunked.py RESULTS --stage integrate --tiles 12 48 [--epochs 1] [--modes disk memory]
    python benchmarks/chunked.py RESULTS --stage annotate --tiles 12 48
    python benchmarks/chunked.py RESULTS --stage signatures --tiles 12 48

``RESULTS`` is a finished run (``make demo`` writes ``results/``). The stage's input
(``cohort/annotated.h5mu`` for pseudobulk, ``cohort/merged.h5mu`` for integrate,
``cohort/integrated.h5mu`` for annotate) is tiled ``T`` times into ``RESULTS/../tiled_<input>_T.h5mu``
(cells renamed; the same donors, samples, batches and states, so every pseudobulk sum is ``T`` times
the demo's). The RNA matrices the stage reads are written one tile at a time; the others are written
empty. Each run is a fresh
process under ``/usr/bin/time -v`` (peak RSS of the process; PyDESeq2's worker processes hold only
donor x gene sums).

pseudobulk, by mode:

* ``disk``: what the rule runs: :func:`sscsig.io.backed_matrix` + ``run_pseudobulk(cells=...)``,
  the counts summed ``pseudobulk.chunk_cells`` cells at a time, then every PyDESeq2 fit and protein test.
* ``memory``: the same calls with the counts read whole first (a user calling the library on an
  in-memory AnnData).
* ``decoupler``: the earlier rule's aggregation only: the counts read whole, subset to the cells in
  the tests, ``decoupler.pp.pseudobulk(mode="sum")``. Skipped above ``--max-gib`` of expected memory.

annotate (the marker method, as the rule runs it): ``cohort/integrated.h5mu`` tiled with its
embeddings and graphs, read without the raw counts, :func:`sscsig.annotate.annotate`,
:func:`sscsig.annotate.subcluster` and the write (the counts copied through), the output then deleted.

signatures (as the rule runs it): ``cohort/annotated.h5mu`` tiled with its log-normalised RNA (and the
counts, so the file is the rule's real input size), the cells in the tests read whole,
:func:`sscsig.stats.score_cells`, the donor means and the tests.

integrate: :func:`sscsig.integrate.integrate` on the tiled merged cohort with the config's options and
``--epochs`` totalVI epochs (the memory of training does not grow with epochs); the rule's
clustering, UMAP and write are not included. ``disk``: as the rule runs it (the cohort read without
the RNA counts, which stay on disk: :func:`sscsig.io.backed_matrix`); ``memory``: the whole cohort
read with ``mudata.read_h5mu`` first (a user calling the library on an in-memory MuData).

Writes ``--out`` (default ``benchmarks/chunked_<stage>.tsv``): stage, tiles, cells, mode, wall s,
peak RSS MB, what was computed.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from anndata.io import read_elem, write_elem

RULE = """
import sys, numpy as np, yaml
from sscsig.design import Design
from sscsig.io import backed_matrix, read_modality, read_obs
from sscsig.protein import normalised_protein
from sscsig.stats import run_pseudobulk
h5, d, mode, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
design = Design.read(donors=f"{d}/donors.tsv", groups=f"{d}/groups.tsv", contrasts=f"{d}/contrasts.tsv",
                     samples=f"{d}/samples.tsv")
obs = read_obs(h5)
keep = design.cells_in_tests(obs)
if mode == "decoupler":
    import anndata as ad, decoupler as dc
    rna = read_modality(h5, "rna", x="layers/counts")
    a = ad.AnnData(rna.X[keep], obs=obs.loc[keep, ["donor", "cell_state"]].astype(str), var=rna.var)
    print(dc.pp.pseudobulk(a, sample_col="donor", groups_col="cell_state", mode="sum", skip_checks=True).shape)
    sys.exit()
prot, names, _ = normalised_protein(read_modality(h5, "prot", x=None, layers=("dsb", "clr")))
genes = read_modality(h5, "rna", x=None).var_names
kw = dict(cells=keep, chunk_cells=chunk, n_jobs=2)
if mode == "memory":
    g, p, s = run_pseudobulk(read_modality(h5, "rna", x="layers/counts").X, genes, obs, prot, names, design, **kw)
else:
    with backed_matrix(h5, "rna", "layers/counts") as counts:
        g, p, s = run_pseudobulk(counts, genes, obs, prot, names, design, **kw)
print(len(g), "gene tests,", int((g["padj"] < 0.1).sum()), "at FDR < 0.1")
"""


INTEGRATE = """
import sys, time, torch, yaml, mudata as md
from sscsig.config import validate_config
from sscsig.integrate import integrate
from sscsig.io import backed_matrix, read_h5mu
torch.set_num_threads(2)
cfg = validate_config(yaml.safe_load(open("config/config.yaml")))
p = {k: v for k, v in cfg["integration"].items() if k not in ("compare", "gpu")}
p["totalvi"] = dict(p["totalvi"], max_epochs=int(sys.argv[2]))
h5, mode = sys.argv[1], sys.argv[3]
t = time.time()
if mode == "memory":
    m = md.read_h5mu(h5)
    integrate(m, **p, seed=cfg["seed"])
else:
    m = read_h5mu(h5, skip=("mod/rna/X",))
    with backed_matrix(h5, "rna", "X") as counts:
        integrate(m, **p, seed=cfg["seed"], counts=counts)
print(f"read + integrate() {time.time() - t:.0f} s, {m.uns['integration']['totalvi']['train_seconds']:.0f} s training")
"""


ANNOTATE = """
import sys, time, yaml
from sscsig.annotate import annotate, load_markers, subcluster
from sscsig.config import validate_config
from sscsig.io import read_h5mu, write_h5mu
cfg = validate_config(yaml.safe_load(open("config/config.yaml")))
p = {k: v for k, v in cfg["annotation"].items() if k not in ("markers", "method", "reference")}
h5, out = sys.argv[1], sys.argv[2]
t = time.time()
skip = ("mod/rna/layers/counts",)
m = read_h5mu(h5, skip=skip)
annotate(m, load_markers(cfg["annotation"]["markers"]), **p, seed=cfg["seed"])
subcluster(m, seed=cfg["seed"])
write_h5mu(m, out, passthrough=h5, elements=skip)
print(f"read + annotate() + subcluster() + write {time.time() - t:.0f} s, {m.obs['cell_state'].nunique()} states")
"""

SIGNATURES = """
import sys, time, yaml
from sscsig.config import resolve_signatures, validate_config
from sscsig.design import Design
from sscsig.io import read_modality, read_obs
from sscsig.stats import donor_scores, score_cells, test_signatures
cfg = validate_config(yaml.safe_load(open("config/config.yaml")))
sigs, sp = resolve_signatures(cfg["signatures"]), cfg["signature_params"]
h5, d = sys.argv[1], sys.argv[2]
t = time.time()
design = Design.read(donors=f"{d}/donors.tsv", groups=f"{d}/groups.tsv", contrasts=f"{d}/contrasts.tsv",
                     samples=f"{d}/samples.tsv")
obs = read_obs(h5)
keep = design.cells_in_tests(obs)
cell_scores, _ = score_cells(read_modality(h5, "rna", cells=keep), sigs, seed=cfg["seed"], min_coverage=sp["min_gene_coverage"])
scores = donor_scores(obs[keep], cell_scores, sigs, min_cells=sp["min_cells_per_donor"])
tests = test_signatures(scores, design, min_donors_per_group=sp["min_donors_per_group"],
                        min_cells_per_donor=sp["min_cells_per_donor"])
print(f"read + score_cells() + donor means + tests {time.time() - t:.0f} s, {len(tests)} tests")
"""


def tile(src: Path, dst: Path, tiles: int, big, *, graphs: bool = False) -> int:
    """Write ``src`` ``tiles`` times over (cells renamed) into ``dst``; return its cells.

    ``big`` (CSR elements such as ``mod/rna/layers/counts``) are written one tile at a time, so the
    file may be larger than this machine's memory; the protein matrices are tiled in memory (they are
    small); the other RNA matrices are written empty. ``obsm``, ``obsp`` and ``uns`` are left out
    unless ``graphs`` (annotate reads them): then each embedding is repeated and each cell graph is
    block-diagonal (every tile's cells are neighbours within their tile).
    """
    import anndata as ad
    import mudata as md
    import scipy.sparse as sp

    big = (big,) if isinstance(big, str) else tuple(big)
    if dst.exists():
        with h5py.File(dst, "r") as f:
            return int(f[big[0]].attrs["shape"][0])
    m = md.read_h5mu(src)
    n = m.n_obs
    names = pd.Index([f"{c}-t{t}" for t in range(tiles) for c in m.obs_names])

    def rep(x):
        if x is None:
            return None
        return sp.vstack([x] * tiles, format="csr") if sp.issparse(x) else np.tile(np.asarray(x), (tiles, 1))

    mods = {}
    for k, a in m.mod.items():
        empty = sp.csr_matrix((n * tiles, a.n_vars), dtype=np.float32)
        layers = {name: empty if k == "rna" else rep(v) for name, v in a.layers.items()}
        x = empty if k == "rna" else rep(a.X)
        obs = pd.concat([a.obs] * tiles)
        obs.index = names
        mods[k] = ad.AnnData(X=x, obs=obs, var=a.var, layers=layers, uns=dict(a.uns) if graphs else None)
    out = md.MuData(mods)
    obs = pd.concat([m.obs] * tiles)
    obs.index = names
    out.obs = obs
    if graphs:
        for k, v in m.obsm.items():
            if k not in out.mod:
                out.obsm[k] = rep(v)
        for k, v in m.obsp.items():
            out.obsp[k] = sp.block_diag([v] * tiles, format="csr").astype(v.dtype)
        out.uns.update(m.uns)
    part = dst.with_suffix(".part")
    out.write_h5mu(part)
    del out, mods
    for e in big:
        with h5py.File(src, "r") as f, h5py.File(part, "r+") as g:
            c = f[e]
            data, indices, indptr = c["data"][()], c["indices"][()], c["indptr"][()].astype(np.int64)
            attrs = dict(g[e].attrs)
            del g[e]
            grp = g.create_group(e)
            grp.attrs.update(attrs)
            nnz = len(data)
            d = grp.create_dataset("data", (nnz * tiles,), dtype=data.dtype)
            i = grp.create_dataset("indices", (nnz * tiles,), dtype=indices.dtype)
            ptr = np.concatenate([indptr[:-1] + t * nnz for t in range(tiles)] + [[nnz * tiles]])
            # int32 while it fits, as anndata writes it: int64 offsets make scipy widen the indices too
            grp.create_dataset("indptr", data=ptr.astype(np.int32 if nnz * tiles < 2**31 else np.int64))
            for t in range(tiles):
                d[t * nnz:(t + 1) * nnz] = data
                i[t * nnz:(t + 1) * nnz] = indices
                print(f"{e}: tile {t + 1}/{tiles}", file=sys.stderr, flush=True)
    part.rename(dst)
    return n * tiles


def timed(code: str, *args) -> tuple[float, float, str]:
    """Run ``code`` in a fresh Python under ``/usr/bin/time -v``: wall s, peak RSS MB, last line printed."""
    t = time.time()
    r = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", code, *map(str, args)],
                       capture_output=True, text=True)
    wall = time.time() - t
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) / 1024
    if r.returncode:  # e.g. killed by the kernel's OOM killer: a result too, kept in the table
        print(r.stderr[-3000:], file=sys.stderr)
        return wall, rss, f"failed: {r.stderr.strip().splitlines()[0][:200]}"
    return wall, rss, r.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--stage", choices=["pseudobulk", "integrate", "annotate", "signatures"], default="pseudobulk")
    ap.add_argument("--tiles", type=int, nargs="+", default=[12, 27, 48])
    ap.add_argument("--modes", nargs="+", default=["disk", "memory", "decoupler"],
                    choices=["disk", "memory", "decoupler"])
    ap.add_argument("--chunk-cells", type=int, default=50_000)
    ap.add_argument("--epochs", type=int, default=1, help="integrate: totalVI epochs (memory does not grow with them)")
    ap.add_argument("--max-gib", type=float, default=20, help="skip a whole-matrix mode expected above this")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    out = a.out or Path(__file__).with_name(f"chunked_{a.stage}.tsv")
    rows = []
    for tiles in a.tiles:
        if a.stage == "integrate":
            h5 = a.results.parent / f"tiled_merged_{tiles}.h5mu"
            cells = tile(a.results / "cohort" / "merged.h5mu", h5, tiles, "mod/rna/X")
            jobs = [(mode, lambda mode=mode: timed(INTEGRATE, h5, a.epochs, mode)) for mode in a.modes
                    if mode in ("disk", "memory")]
        elif a.stage == "annotate":
            h5 = a.results.parent / f"tiled_integrated_{tiles}.h5mu"
            cells = tile(a.results / "cohort" / "integrated.h5mu", h5, tiles, ("mod/rna/X", "mod/rna/layers/counts"),
                         graphs=True)
            written = h5.with_name(f"tiled_annotated_out_{tiles}.h5mu")
            jobs = [("disk", lambda: timed(ANNOTATE, h5, written))]
        elif a.stage == "signatures":
            h5 = a.results.parent / f"tiled_annotated_x_{tiles}.h5mu"
            cells = tile(a.results / "cohort" / "annotated.h5mu", h5, tiles, ("mod/rna/X", "mod/rna/layers/counts"))
            jobs = [("disk", lambda: timed(SIGNATURES, h5, a.results / "design"))]
        else:
            h5 = a.results.parent / f"tiled_annotated_{tiles}.h5mu"
            cells = tile(a.results / "cohort" / "annotated.h5mu", h5, tiles, "mod/rna/layers/counts")
            nnz_gb = h5py.File(h5, "r")["mod/rna/layers/counts/data"].shape[0] * 8 / 2**30
            jobs = []
            for mode in a.modes:
                need = {"disk": 0, "memory": 1.5 * nnz_gb, "decoupler": 3 * nnz_gb}[mode]
                if need > a.max_gib:
                    print(f"{tiles} tiles, {mode}: skipped (~{need:.0f} GiB expected)", flush=True)
                    continue
                jobs.append((mode, lambda mode=mode: timed(RULE, h5, a.results / "design", mode, a.chunk_cells)))
        for mode, job in jobs:
            wall, rss, what = job()
            rows.append({"stage": a.stage, "tiles": tiles, "cells": cells, "mode": mode, "wall_s": round(wall, 1),
                         "peak_rss_mb": round(rss), "result": what})
            print(rows[-1], flush=True)
            pd.DataFrame(rows).to_csv(out, sep="\t", index=False)
            if a.stage == "annotate":
                written.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
