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

from sscsig.metrics import annotation_f1


def evaluate(results: Path) -> tuple[dict, pd.DataFrame]:
    obs = md.read_h5mu(results / "cohort/annotated.h5mu", backed="r").obs
    truth = pd.read_csv(results / "demo/truth/cells.tsv", sep="\t")
    truth.index = truth["sample"] + "_" + truth["barcode"]
    t = truth.loc[obs.index]
    good = (~t.is_doublet & ~t.is_low_quality).to_numpy()
    lin_table, lin = annotation_f1(obs.lineage[good], t.lineage[good])
    state_table, state = annotation_f1(obs.cell_state[good], t.cell_state[good])
    f1 = state_table.set_index("label")["f1"]
    summary = {"cells_kept": int(len(obs)), "kept_true_singlets": int(good.sum()),
               "lineage_macro_f1": lin["macro_f1"], "state_macro_f1": state["macro_f1"],
               "lineage_accuracy": lin["accuracy"], "state_accuracy": state["accuracy"],
               "f1_CD14.EGR1": float(f1.get("CD14.EGR1", float("nan"))),
               "f1_CD8.TEM_T2ISG": float(f1.get("CD8.TEM_T2ISG", float("nan")))}
    return summary, pd.concat([lin_table.assign(level="lineage"), state_table.assign(level="cell_state")])


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
