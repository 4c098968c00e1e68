"""Collect the Snakemake benchmark files of a run into one table (run by hand, not in CI).

    python benchmarks/collect.py results            # prints a Markdown table per rule
    bash benchmarks/run.sh 2000 /tmp/bench2k        # simulate + run at 2,000 cells/donor, then collect
"""

import platform
import sys
from pathlib import Path

import pandas as pd


def collect(outdir: str) -> pd.DataFrame:
    rows = []
    for f in sorted(Path(outdir, "benchmarks").rglob("*.tsv")):
        df = pd.read_csv(f, sep="\t")
        rule = f.parent.name if f.parent.name != "benchmarks" else f.stem
        rows.append({"rule": rule, "job": f.stem, "wall_s": df["s"].iloc[0], "max_rss_mb": df["max_rss"].iloc[0]})
    jobs = pd.DataFrame(rows)
    return jobs.groupby("rule").agg(jobs=("job", "size"), wall_s_sum=("wall_s", "sum"),
                                    wall_s_max=("wall_s", "max"), max_rss_mb=("max_rss_mb", "max")).reset_index()


if __name__ == "__main__":
    table = collect(sys.argv[1] if len(sys.argv) > 1 else "results")
    print(f"machine: {platform.machine()}, {platform.processor() or ''} python {platform.python_version()}")
    print(table.to_markdown(index=False, floatfmt=".1f") if hasattr(table, "to_markdown") else table.to_string(index=False))
