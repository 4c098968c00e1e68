"""totalVI vs WNN (and Harmony): wall time and peak memory of the integrate step (run by hand).

    python benchmarks/integration.py --cells 20000 100000 --methods totalvi wnn --work /tmp/bench_int \
        --out benchmarks/integration.tsv

For each size a demo cohort of 27 donors is simulated (``sscsig simulate``), its samples are merged
without QC, and each method runs what rule ``integrate`` runs (``sscsig.integrate.integrate`` +
``cluster``: integration + neighbours + Leiden + UMAP, 2 threads) in a fresh process; wall time and the child's peak RSS are recorded with the
totalVI epochs. ``--merged PATH`` benchmarks an existing merged.h5mu instead of simulating (only
that path, unless ``--cells`` is given too).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

CHILD = """
import json, sys, yaml
import mudata as md, torch
from sscsig.config import validate_config
from sscsig.integrate import cluster, integrate
from sscsig.io import write_h5mu
cfg = validate_config(yaml.safe_load(open('config/config.yaml')))
opts = {k: v for k, v in cfg['integration'].items() if k not in ('compare', 'gpu')}
opts['method'] = sys.argv[3]
torch.set_num_threads(2)
m = md.read_h5mu(sys.argv[1])
integrate(m, **opts, seed=cfg['seed'])
cluster(m, **cfg['clustering'], seed=cfg['seed'])
write_h5mu(m, sys.argv[2])
uns = md.read_h5mu(sys.argv[2], backed='r').uns['integration']
print('FACTS', json.dumps({k: (dict(v) if hasattr(v, 'keys') else v) for k, v in uns.items()}, default=str))
"""


def merged_cohort(cells: int, work: Path, seed: int = 0) -> Path:
    import mudata as md

    from sscsig.demo import DemoParams, simulate_cohort
    from sscsig.io import read_sample
    from sscsig.qc import merge_samples

    md.set_options(pull_on_update=False)
    out = work / f"cohort_{cells}"
    merged = out / "merged.h5mu"
    if merged.exists():
        return merged
    sheet = simulate_cohort(out, DemoParams(seed=seed, cells_per_donor=max(1, round(cells / 27))))
    samples = {s: read_sample(out / p, sample=s) for s, p in zip(sheet["sample"], sheet["path"])}
    mdata, _ = merge_samples(samples, sheet)
    mdata.write(merged)
    return merged


def run(merged: Path, method: str, out: Path) -> dict:
    log = out.with_suffix(".log")
    t0 = time.time()
    with open(log, "w") as fh:
        # GNU time reports the child's own peak RSS (ru_maxrss of a process forked from this big
        # Python process would start at this process's high-water mark)
        status = subprocess.call(["/usr/bin/time", "-f", "MAXRSS_KB %M", sys.executable, "-c", CHILD,
                                  str(merged), str(out), method], stdout=fh, stderr=subprocess.STDOUT,
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.time() - t0
    text = log.read_text()
    if status:
        raise SystemExit(text[-3000:])
    facts = json.loads(next(line for line in text.splitlines() if line.startswith("FACTS"))[6:])
    rss_kb = int(next(line for line in text.splitlines() if line.startswith("MAXRSS_KB")).split()[1])
    tv = facts.get("totalvi") if isinstance(facts.get("totalvi"), dict) else {}
    return {"method": method, "wall_s": round(wall, 1), "peak_rss_mb": round(rss_kb / 1024),
            "epochs": tv.get("epochs_trained"), "train_s": tv.get("train_seconds")}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, nargs="*", default=None,
                    help="demo sizes to simulate (default 20000 100000; none when --merged is given)")
    ap.add_argument("--merged", type=Path, nargs="*", default=[])
    ap.add_argument("--methods", nargs="+", default=["totalvi", "wnn"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/sscsig_bench_integration"))
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    cells = a.cells if a.cells is not None else ([] if a.merged else [20000, 100000])
    inputs = [*a.merged, *(merged_cohort(c, a.work) for c in cells)]
    rows = []
    for merged in inputs:
        import mudata as md

        n = md.read_h5mu(merged, backed="r").n_obs
        for method in a.methods:
            r = {"cells": n, **run(merged, method, a.work / f"int_{n}_{method}.h5mu")}
            print(r, flush=True)
            rows.append(r)
    table = pd.DataFrame(rows)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(table.to_string(index=False))
    if a.out:
        table.to_csv(a.out, sep="\t", index=False)
