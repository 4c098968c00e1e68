"""Annotation accuracy of a demo run against the simulator's truth.

    python benchmarks/annotation.py RESULTS_DIR [--out TSV]

Cells kept by QC that are true singlets of good quality (injected doublets / low-quality cells that
QC missed have no true state and are reported separately). Prints lineage and fine-state macro-F1 and
the F1 of every state.
"""

import argparse
import sys
from pathlib import Path

import mudata as md
import pandas as pd

from sscsig.annotate import annotation_vs_truth


def evaluate(results: Path) -> tuple[dict, pd.DataFrame]:
    obs = md.read_h5mu(results / "cohort/annotated.h5mu", backed="r").obs
    return annotation_vs_truth(obs, results / "demo/truth/cells.tsv")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    summary, table = evaluate(a.results)
    for k, v in summary.items():
        print(f"{k}\t{v:.3f}" if isinstance(v, float) else f"{k}\t{v}")
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"), file=sys.stderr)
    if a.out:
        table.to_csv(a.out, sep="\t", index=False)
