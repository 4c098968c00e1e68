"""Accuracy of cell-state calls against known labels: per-label F1, macro-F1, and the demo's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd


def annotation_f1(pred, truth) -> tuple[pd.DataFrame, dict]:
    """Per-label precision, recall and F1 of predicted vs true labels, and the macro-F1.

    The macro average runs over the true labels (a predicted label absent from the truth, such as
    ``Unassigned``, counts against recall but gets no row of its own).
    """
    from sklearn.metrics import precision_recall_fscore_support

    pred, truth = np.asarray(pred).astype(str), np.asarray(truth).astype(str)
    labels = sorted(np.unique(truth))
    p, r, f, n = precision_recall_fscore_support(truth, pred, labels=labels, zero_division=0)
    table = pd.DataFrame({"label": labels, "precision": p, "recall": r, "f1": f, "n_true": n})
    return table, {"macro_f1": float(np.mean(f)), "accuracy": float((pred == truth).mean()),
                   "n_cells": int(len(truth))}


def annotation_vs_truth(obs: pd.DataFrame, truth_tsv) -> tuple[dict, pd.DataFrame]:
    """Lineage and state F1 of an annotated demo cohort against the simulator's ``truth/cells.tsv``.

    Scored on the cells QC kept that are true singlets of good quality (doublets / low-quality cells
    QC missed have no true state). Returns a summary (macro-F1s, accuracies, the F1 of the reference
    study's two states) and the per-label table (``level`` = lineage or cell_state).
    """
    truth = pd.read_csv(truth_tsv, sep="\t")
    truth.index = truth["sample"] + "_" + truth["barcode"]
    t = truth.loc[obs.index]
    good = (~t.is_doublet & ~t.is_low_quality).to_numpy()
    lin_table, lin = annotation_f1(obs["lineage"][good], t["lineage"][good])
    state_table, state = annotation_f1(obs["cell_state"][good], t["cell_state"][good])
    f1 = state_table.set_index("label")["f1"]
    summary = {"cells_kept": int(len(obs)), "kept_true_singlets": int(good.sum()),
               "lineage_macro_f1": lin["macro_f1"], "state_macro_f1": state["macro_f1"],
               "lineage_accuracy": lin["accuracy"], "state_accuracy": state["accuracy"],
               "f1_CD14.EGR1": float(f1.get("CD14.EGR1", np.nan)),
               "f1_CD8.TEM_T2ISG": float(f1.get("CD8.TEM_T2ISG", np.nan))}
    return summary, pd.concat([lin_table.assign(level="lineage"), state_table.assign(level="cell_state")])
