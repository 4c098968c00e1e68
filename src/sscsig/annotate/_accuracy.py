"""Accuracy of cell-state calls against known labels: per-label F1, macro-F1, the demo's truth, and
whether a call's probability means what it says (calibration)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..io import read_cell_table


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


def macro_f1_interval(pred, truth, *, labels=None, level: float = 0.95, n_resamples: int = 2000,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the macro-F1 of predicted vs true labels, resampling cells.

    A macro-F1 on a few hundred cells moves by a class's worth of F1 when one cell changes its call
    (on the 200-cell pbmc10k fixture one cell is ~0.005), so a target such as 0.93 cannot be read off
    a point estimate; the interval says how far another draw of cells from the same sample could put it.
    Cells are resampled with replacement (their pred / truth pairs together; scipy's ``bootstrap``).
    It covers the sampling of cells only, not of donors or of the labelling itself.

    Parameters
    ----------
    pred, truth
        Per cell, the predicted and the true label.
    labels
        The labels averaged over (as :func:`annotation_f1`: a predicted label outside them counts
        against recall); ``None``: the true labels present. Fixed across resamples: a label a
        resample lacks scores 0.
    level
        The interval's coverage.
    n_resamples
        Bootstrap resamples.
    seed
        Seeds the resampling (same inputs and seed: the same interval).

    Returns
    -------
    (low, high).
    """
    from scipy.stats import bootstrap
    from sklearn.metrics import f1_score

    pred, truth = np.asarray(pred).astype(str), np.asarray(truth).astype(str)
    if pred.shape != truth.shape or pred.size == 0:
        raise ValueError("pred and truth must be non-empty and of one length")
    labels = sorted(np.unique(truth)) if labels is None else list(labels)

    def macro(idx):
        idx = np.asarray(idx, dtype=int)
        return f1_score(truth[idx], pred[idx], labels=labels, average="macro", zero_division=0)

    res = bootstrap((np.arange(pred.size),), macro, n_resamples=n_resamples, vectorized=False,
                    confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def annotation_vs_truth(obs: pd.DataFrame, truth_tsv, *, calibration: bool = False) -> tuple[dict, pd.DataFrame]:
    """Lineage and state F1 of an annotated demo cohort against the simulator's ``truth/cells.tsv``.

    Scored on the cells QC kept that are true singlets of good quality (doublets / low-quality cells
    QC missed have no true state). Returns a summary (macro-F1s, accuracies, the F1 of the reference
    study's two states) and the per-label table (``level`` = lineage or cell_state).
    ``calibration=True`` (for probabilities: ``annotation.method: reference``) adds ``ece_lineage``,
    ``ece_cell_state``, ``mean_confidence_lineage``, ``mean_confidence_cell_state`` of the cells not
    ``Unassigned`` (:func:`confidence_calibration` of ``obs['<level>_confidence']``).
    """
    truth = read_cell_table(truth_tsv)
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
    for level in ("lineage", "cell_state") if calibration else ():
        call = obs[level].astype(str).to_numpy()[good]
        called = call != "Unassigned"
        _, cal = confidence_calibration(obs[f"{level}_confidence"].to_numpy()[good][called],
                                        call[called] == t[level].astype(str).to_numpy()[good][called])
        summary[f"ece_{level}"], summary[f"mean_confidence_{level}"] = cal["ece"], cal["mean_confidence"]
    return summary, pd.concat([lin_table.assign(level="lineage"), state_table.assign(level="cell_state")])


def confidence_calibration(confidence, correct, *, bins: int = 10) -> tuple[pd.DataFrame, dict]:
    """Does a call's probability match how often such calls are right? (reliability table, ECE)

    Meaningful for probabilities (``annotation.method: reference``: ``lineage_confidence`` is
    P(lineage), ``cell_state_confidence`` P(lineage) x P(state | lineage)); the marker method's
    confidence is a score margin, not a probability.

    Parameters
    ----------
    confidence
        Per call, the probability given to the label called (cells left ``Unassigned`` excluded by the
        caller, or included with the probability of the label they would have had).
    correct
        Per call, whether the label is the true one.
    bins
        Equal-width probability bins on [0, 1] (scikit-learn's ``calibration_curve``, ``uniform``).

    Returns
    -------
    A table per non-empty bin (``mean_confidence``, ``accuracy``, ``cells``) and a summary:
    ``ece`` (expected calibration error: the cells-weighted mean of |accuracy - confidence| over the
    bins), ``mean_confidence``, ``accuracy``, ``n_cells``. A model whose calls at 0.8 are right 80% of
    the time has an ECE near 0; mean confidence above accuracy means over-confident.
    """
    from sklearn.calibration import calibration_curve

    conf = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    ok = np.asarray(correct, dtype=bool)
    if conf.shape != ok.shape or conf.size == 0:
        raise ValueError("confidence and correct must be non-empty and of one length")
    acc, mean_conf = calibration_curve(ok.astype(int), conf, n_bins=bins, strategy="uniform", pos_label=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=bins)  # calibration_curve's binning
    counts = counts[counts > 0]  # calibration_curve returns the non-empty bins, in order
    table = pd.DataFrame({"mean_confidence": mean_conf, "accuracy": acc, "cells": counts})
    ece = float((table["cells"] * (table["accuracy"] - table["mean_confidence"]).abs()).sum() / table["cells"].sum())
    return table, {"ece": ece, "mean_confidence": float(conf.mean()), "accuracy": float(ok.mean()),
                   "n_cells": int(ok.size)}
