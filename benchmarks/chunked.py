"""Peak memory of the pseudobulk rule at up to a million cells, without running the pipeline at that size.

    python benchmarks/chunked.py RESULTS --tiles 12 27 48 [--modes disk memory decoupler] [--out TSV]

``RESULTS`` is a finished run (``make demo`` writes ``results/``). Its ``cohort/annotated.h5mu`` is
tiled ``T`` times into ``RESULTS/../chunked_T.h5mu`` (cells renamed; the same donors, samples and
states, so every sum is ``T`` times the demo's): only what the rule reads (``obs``, the RNA counts,
written one tile at a time, and the normalised protein layers). Each mode then runs in a fresh
process under ``/usr/bin/time -v`` (peak RSS of the process; the PyDESeq2 worker processes hold only
donor x gene sums):

* ``disk``: what the rule runs: :func:`sscsig.io.backed_matrix` + ``run_pseudobulk(cells=...)``,
  the counts summed ``pseudobulk.chunk_cells`` cells at a time, then every PyDESeq2 fit and protein test.
* ``memory``: the same calls with the counts read whole first (a user calling the library on an
  in-memory AnnData).
* ``decoupler``: the earlier rule's aggregation only: the counts read whole, subset to the cells in
  the tests, ``decoupler.pp.pseudobulk(mode="sum")``. Skipped above 20 GiB of expected memory.

Writes ``--out`` (default ``benchmarks/chunked.tsv``): tiles, cells, mode, wall s, peak RSS MB.
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


def tile(src: Path, dst: Path, tiles: int) -> int:
    """Write ``src``'s obs, RNA counts and protein layers ``tiles`` times over into ``dst``; its cells."""
    if dst.exists():
        with h5py.File(dst, "r") as f:
            return int(f["mod/rna/layers/counts"].attrs["shape"][0])
    part = dst.with_suffix(".part")
    with h5py.File(src, "r") as f, h5py.File(part, "w") as g:
        obs = read_elem(f["obs"])
        n = len(obs)
        names = [f"{c}-t{t}" for t in range(tiles) for c in obs.index]
        big = pd.concat([obs] * tiles)
        big.index = pd.Index(names)
        write_elem(g, "obs", big)
        for mod in ("rna", "prot"):
            write_elem(g, f"mod/{mod}/obs", pd.DataFrame(index=big.index))
            write_elem(g, f"mod/{mod}/var", read_elem(f[f"mod/{mod}/var"]))
        for layer in ("dsb", "clr"):
            if f"mod/prot/layers/{layer}" in f:
                write_elem(g, f"mod/prot/layers/{layer}", np.tile(f[f"mod/prot/layers/{layer}"][()], (tiles, 1)))
        c = f["mod/rna/layers/counts"]
        data, indices, indptr = c["data"][()], c["indices"][()], c["indptr"][()].astype(np.int64)
        out = g.create_group("mod/rna/layers/counts")
        out.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0",
                          "shape": (n * tiles, int(c.attrs["shape"][1]))})
        nnz = len(data)
        d = out.create_dataset("data", (nnz * tiles,), dtype=data.dtype)
        i = out.create_dataset("indices", (nnz * tiles,), dtype=indices.dtype)
        p = np.concatenate([indptr[:-1] + t * nnz for t in range(tiles)] + [[nnz * tiles]])
        out.create_dataset("indptr", data=p)
        for t in range(tiles):  # one tile at a time: the file may be larger than this machine's memory
            d[t * nnz:(t + 1) * nnz] = data
            i[t * nnz:(t + 1) * nnz] = indices
            print(f"tile {t + 1}/{tiles}", file=sys.stderr, flush=True)
    part.rename(dst)
    return n * tiles


def run(h5: Path, design: Path, mode: str, chunk: int) -> tuple[float, float, str]:
    t = time.time()
    r = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-c", RULE, str(h5), str(design), mode, str(chunk)],
                       capture_output=True, text=True)
    wall = time.time() - t
    if r.returncode:
        raise SystemExit(f"{mode} on {h5} failed:\n{r.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) / 1024
    return wall, rss, r.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--tiles", type=int, nargs="+", default=[12, 27, 48])
    ap.add_argument("--modes", nargs="+", default=["disk", "memory", "decoupler"],
                    choices=["disk", "memory", "decoupler"])
    ap.add_argument("--chunk-cells", type=int, default=50_000)
    ap.add_argument("--max-gib", type=float, default=20, help="skip a whole-matrix mode expected above this")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("chunked.tsv"))
    a = ap.parse_args()
    rows = []
    for tiles in a.tiles:
        h5 = a.results.parent / f"chunked_{tiles}.h5mu"
        cells = tile(a.results / "cohort" / "annotated.h5mu", h5, tiles)
        nnz_gb = h5py.File(h5, "r")["mod/rna/layers/counts/data"].shape[0] * 8 / 2**30
        for mode in a.modes:
            need = {"disk": 0, "memory": 1.5 * nnz_gb, "decoupler": 3 * nnz_gb}[mode]
            if need > a.max_gib:
                print(f"{tiles} tiles, {mode}: skipped (~{need:.0f} GiB expected)", flush=True)
                continue
            wall, rss, what = run(h5, a.results / "design", mode, a.chunk_cells)
            rows.append({"tiles": tiles, "cells": cells, "mode": mode, "wall_s": round(wall, 1),
                         "peak_rss_mb": round(rss), "result": what})
            print(rows[-1], flush=True)
            pd.DataFrame(rows).to_csv(a.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
