"""The marker method's protein calls on 7,472 real PBMCs against SingleR's labels (run by hand).

    python benchmarks/annotation_pbmc10k_adt.py [--data tests/data/pbmc10k_adt_7472.h5ad]
                                                [--out benchmarks/annotation_pbmc10k_adt]

Data: ``tests/data/pbmc10k_adt_7472.h5ad`` (see ``tests/data/README.md``): 7,472 cells of 10x's
pbmc_10k_protein_v3 library, the raw counts of its 17 antibodies (14 after the three isotype controls)
and, per cell, SingleR's main and fine labels (BlueprintEncode reference, from the RNA), as tagtango
ships them. 199 of the 200 cells of the shared fixture ``pbmc10k_protein_v3_200cells_scvi.h5mu`` are
among them, with the same labels, so this is the same library at 37x the cells, protein only.

What it measures: the calls ``sscsig.annotate.annotate`` makes from the 14 antibodies alone (no RNA:
every RNA component is neutral; ``annotation_gates.call``: CLR per cell, the kNN graph on the CLR
values, the default ``config/markers.yaml`` and the schema's annotation defaults, the lineage gate
included, one sample), as the defaults call them and without the refinement (`` no refine``); and
what cohorts lacking a lineage, cut from these cells, are called (``absent_lineages.tsv``). SingleR calls from RNA, so this is
agreement between two annotators that read different molecules, not accuracy against truth.

Scores:

- ``lineage_macro_f1``: over SingleR's main labels with >= ``--min-cells`` cells (the five lineages
  both name), with its bootstrap interval (``sscsig.annotate.macro_f1_interval``); the same against
  SingleR's labels whose CD4 / CD8 split the antibodies overrule where unambiguous
  (``annotation_real.coreceptor_adjudicated``); what the cells SingleR calls HSC or erythrocytes
  were called.
- ``fine_macro_f1``: macro-F1 over SingleR's fine labels that name one of the pipeline's states
  (``FINE_OF_STATE``), on the cells that carry one; ``state_agreement_on_specific_fine_labels`` as
  in ``annotation_real.py`` (the share of those cells whose state is one the label names).

Writes ``summary.tsv``, ``per_class.tsv`` and ``confusion_*.tsv`` to ``--out``.

The fixture was built with ``--from-rda test_sce.rda``: tagtango's ``data/test_sce.rda``
(github.com/bernibra/tagtango, commit 089fb1f, MIT; the data 10x Genomics, CC BY 4.0), read with the
``rdata`` package (``pip install rdata``; not a dependency of sscsig), written to ``--data``: the counts
of ``assays$counts``, ``colData$Main.RNA`` / ``Fine.RNA`` as ``singler_main`` / ``singler_fine``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from annotation_real import LINEAGE_TO_SINGLER, SINGLER_FINE_TO_STATES, _interval, coreceptor_adjudicated, write_tables

ROOT = Path(__file__).resolve().parents[1]
ISOTYPES = ("IgG1", "IgG2a", "IgG2b")


def default_gate() -> dict:
    """The config's lineage gate as ``annotation_gates.call`` takes it (which turns the gate off
    without ``gate_min``): its level (``gate_min``, or the layer's default), how levels are learned,
    which lineages it applies to and where the negative antibodies veto."""
    from annotation_gates import _config

    from sscsig.protein import GATE_MIN_DEFAULTS

    a = _config()["annotation"]
    return {"gate_min": a["gate_min"] if a["gate_min"] is not None else GATE_MIN_DEFAULTS[a["gate_layer"]],
            **{k: a[k] for k in ("gate_threshold", "gate_lineages", "gate_negatives")}}


def _fine(label: str) -> str:
    """SingleR's fine label as scored here: its two memory B labels ("Memory B-cells", "Class-switched
    memory B-cells") are one, as the pipeline has one memory B state."""
    return "memory B-cells" if label.endswith("emory B-cells") else label


#: the pipeline's state -> SingleR's fine label it corresponds to
FINE_OF_STATE = {state: _fine(label) for label, states in SINGLER_FINE_TO_STATES.items() for state in states}


def load(path: Path):
    """(counts, antibodies, SingleR main labels, SingleR fine labels) of the fixture; isotypes left out."""
    import anndata as ad

    a = ad.read_h5ad(path)
    antibodies = [v for v in a.var_names if v not in ISOTYPES]
    counts = np.asarray(a[:, antibodies].X.toarray(), dtype=np.float64)
    return (counts, antibodies, a.obs["singler_main"].astype(str).to_numpy(),
            a.obs["singler_fine"].astype(str).to_numpy())


def fixture_from_rda(rda: Path, out: Path) -> None:
    """Write the fixture (cells x 17 antibodies, raw counts; SingleR's labels) from tagtango's ``test_sce.rda``."""
    import anndata as ad
    import rdata
    import scipy.sparse as sp

    sce = rdata.read_rda(rda, default_encoding="utf8")["test_sce"]  # an S4 SingleCellExperiment, as namespaces
    counts = sce.assays.data.listData["counts"]  # a dgCMatrix: antibodies x cells, column-compressed
    x = sp.csc_matrix((counts.x, counts.i, counts.p), shape=tuple(counts.Dim)).T.tocsr().astype(np.float32)
    col = sce.colData.listData
    obs = pd.DataFrame({"singler_main": pd.Categorical(np.asarray(col["Main.RNA"]).astype(str)),
                        "singler_fine": pd.Categorical(np.asarray(col["Fine.RNA"]).astype(str))},
                       index=np.asarray(sce.colData.rownames).astype(str))
    var = pd.DataFrame(index=np.asarray(counts.Dimnames[0]).astype(str))
    ad.AnnData(x, obs=obs, var=var).write_h5ad(out, compression="gzip")


def score(calls: pd.DataFrame, main: np.ndarray, fine: np.ndarray, clr: pd.DataFrame, *, method: str,
          seed: int, min_cells: int) -> tuple[dict, list[pd.DataFrame], dict]:
    """One row of the summary, the per-class tables and the confusion matrices of one set of calls."""
    from sscsig.annotate import annotation_f1

    lin, state = calls["lineage"].to_numpy(), calls["cell_state"].to_numpy()
    pred = np.array([LINEAGE_TO_SINGLER.get(x, x) for x in lin], dtype=object)
    table, overall = annotation_f1(pred, main)
    big = table[table.n_true >= min_cells]
    adjudicated = coreceptor_adjudicated(main, clr["CD4"].to_numpy(), clr["CD8a"].to_numpy())
    adj_table, _ = annotation_f1(pred, adjudicated)
    adj_big = adj_table[adj_table.n_true >= min_cells]
    specific = np.array([f in SINGLER_FINE_TO_STATES for f in fine])
    fine_truth = np.array([_fine(f) for f in fine[specific]])
    fine_pred = np.array([FINE_OF_STATE.get(s, s) for s in state[specific]])
    fine_table, _ = annotation_f1(fine_pred, fine_truth)
    hit = np.array([s in SINGLER_FINE_TO_STATES.get(f, set()) for s, f in zip(state, fine)])
    others = {f"called_as_{lab.split()[0].lower()}": ",".join(f"{k}:{v}" for k, v in
                                                               pd.Series(lin[main == lab]).value_counts().items())
              for lab in sorted(set(main) - set(big.label))}
    row = {"data": "pbmc10k_adt_7472", "reference": "SingleR main / fine (RNA)", "method": method,
           "n_cells": len(main), "lineage_macro_f1": round(float(big.f1.mean()), 3),
           **_interval(pred, main, big.label, seed), "lineage_accuracy": round(overall["accuracy"], 3),
           "classes_averaged": ",".join(big.label),
           "lineage_macro_f1_coreceptor_adjudicated": round(float(adj_big.f1.mean()), 3),
           "n_relabelled_by_antibodies": int((adjudicated != main).sum()),
           "fine_macro_f1": round(float(fine_table.f1.mean()), 3), "n_specific_fine": int(specific.sum()),
           "state_agreement_on_specific_fine_labels": round(float(hit[specific].mean()), 3),
           "unassigned_share": round(float((lin == "Unassigned").mean()), 4),
           "state_unassigned_share": round(float((state == "Unassigned").mean()), 4), **others}
    classes = [table.assign(level="lineage", method=method), fine_table.assign(level="fine", method=method)]
    tag = "_".join(method.replace(",", "").split())
    confusions = {f"lineage_{tag}": pd.crosstab(pd.Series(lin, name="sscsig lineage"),
                                                pd.Series(main, name="SingleR main")),
                  f"states_{tag}": pd.crosstab(pd.Series(state, name="sscsig state"),
                                               pd.Series(fine, name="SingleR fine"))}
    return row, classes, confusions


def absent_lineages(counts: np.ndarray, antibodies: list[str], main_labels: np.ndarray, clr: pd.DataFrame, *,
                    seed: int) -> pd.DataFrame:
    """The default calls of cohorts that lack lineages, made from these real cells: without the B cells
    (SingleR's, and any cell with CLR(CD19) >= 1), without the monocytes (likewise, CD14), and sorted
    CD8 or CD4 T cells (CLR(CD3) > 1.5, CLR(CD14) < 1 and CLR(CD8a) - CLR(CD4) >= 2, or the reverse).
    Per subset, the share of its cells called each lineage."""
    from annotation_gates import call

    t_cell = (clr["CD3"].to_numpy() > 1.5) & (clr["CD14"].to_numpy() < 1)  # CD3+ CD14+: T / monocyte doublets
    diff = (clr["CD8a"] - clr["CD4"]).to_numpy()
    subsets = {"no B cells": ~((main_labels == "B-cells") | (clr["CD19"].to_numpy() >= 1)),
               "no monocytes": ~((main_labels == "Monocytes") | (clr["CD14"].to_numpy() >= 1)),
               "sorted CD8 T": t_cell & (diff >= 2), "sorted CD4 T": t_cell & (diff <= -2)}
    rows = []
    for name, keep in subsets.items():
        calls = call(counts[keep], np.full(int(keep.sum()), "pbmc10k"), seed=seed, antibodies=antibodies,
                     **default_gate())
        shares = calls["lineage"].value_counts(normalize=True)
        rows.append({"subset": name, "n_cells": int(keep.sum()),
                     **{f"called_{k}": round(float(v), 4) for k, v in shares.items()}})
    return pd.DataFrame(rows).fillna(0.0)


def main(argv=None) -> int:
    from annotation_gates import call  # benchmarks/, beside this script

    from sscsig.protein import clr_per_cell

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "pbmc10k_adt_7472.h5ad")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "annotation_pbmc10k_adt")
    ap.add_argument("--min-cells", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--from-rda", type=Path, help="first write --data from tagtango's test_sce.rda")
    a = ap.parse_args(argv)
    if a.from_rda:
        fixture_from_rda(a.from_rda, a.data)
    counts, antibodies, main_labels, fine = load(a.data)
    clr = pd.DataFrame(clr_per_cell(counts), columns=antibodies)
    samples = np.full(len(counts), "pbmc10k")
    rows, classes, confusions = [], [], {}
    for changes, method in (({}, "markers, protein only"), ({"refine": False}, "markers, protein only, no refine")):
        calls = call(counts, samples, seed=a.seed, antibodies=antibodies, **default_gate(), **changes)
        row, cls, conf = score(calls, main_labels, fine, clr, method=method, seed=a.seed, min_cells=a.min_cells)
        rows.append(row), classes.extend(cls), confusions.update(conf)
        print(f"done: {method}", flush=True)
    summary = write_tables(a.out, pd.DataFrame(rows), classes, confusions)
    absent = absent_lineages(counts, antibodies, main_labels, clr, seed=a.seed)
    absent.to_csv(a.out / "absent_lineages.tsv", sep="\t", index=False)
    print(absent.to_string(index=False))
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(summary.T.to_string())
        print(pd.concat(classes).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        for name, c in confusions.items():
            print(name), print(c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
