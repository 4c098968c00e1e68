"""The marker method's protein calls on real PBMCs with a wide panel, against experts' gates (run by hand).

    python benchmarks/annotation_kotliarov.py ADTNORM_DIR [--shared ../shared/data]
                                              [--out benchmarks/annotation_kotliarov]

Data: the 2,872 cells of ``dsb_kotliarov2020_adt_cells.h5ad`` in ``../shared/data`` (Kotliarov et al.,
Nat Med 2020, via niaid/dsb, CC0: raw counts of 83 antibodies and 4 isotype controls, named
``CD3_PROT``, ...; no RNA, no labels) and the gated labels of the same cells in ADTnorm's benchmark set
(``ADTNORM_DIR``: ``cell_x_adt`` / ``cell_x_feature`` as ``benchmarks/annotation_gates.py`` reads them,
github.com/yezhengSTAT/ADTnorm, GPL-3, not stored here). ADTnorm keeps 9 of the antibodies (CD3, CD4,
CD8, CD14, CD19, CD25, CD45RA, CD56, CD127); every fixture cell's 9 raw counts occur exactly once
among ADTnorm's 58,654 Kotliarov cells, and that is how the labels are joined (no cell is left
unmatched; the script stops if one is, or if a count vector is not unique).

What it measures: the default calls (``config/config.yaml``'s gate, the default marker file, CLR per
cell, the kNN graph on the CLR values, one sample), from all 83 antibodies under the data's own names
and from the 9 ADTnorm keeps, each with and without the refinement, and from all 83 as DSB values (``protein_layer`` and
``gate_layer: dsb``, background from the 8,005 empty droplets beside the cells in ``../shared``), scored as
``annotation_gates.score`` scores ADTnorm's studies (lineage and fine macro-F1 over labels with >= 20
gated cells, ``undefined`` cells left out). The gates were drawn on the 9 antibodies, so where the wide
panel sees more than they did (CD45RA+ CD8 T cells that are CD57+ CD27- CD28-: effector memory
re-expressing CD45RA, gated "naive CD8"), the score counts the call as wrong. ``states_taken_out.tsv``:
each gated fine label's cells taken out in turn, and whether the states mapped onto it are still called
and still stand out from their lineage (``sscsig.annotate.state_separation``; docs/annotation.md
"States the cohort lacks").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from annotation_gates import ANTIBODIES, STATE_TO_L2, annotated_cohort, call, load, score  # noqa: E402
from annotation_pbmc10k_adt import default_gate  # noqa: E402
from annotation_real import kotliarov_dsb  # noqa: E402

from sscsig.protein import GATE_MIN_DEFAULTS  # noqa: E402

FIXTURE = "dsb_kotliarov2020_adt_cells.h5ad"


def labelled_cells(adtnorm: Path, shared: Path) -> tuple[np.ndarray, list[str], pd.DataFrame]:
    """The fixture's cells x antibodies raw counts (isotype controls left out), the antibodies' names as
    the data gives them, and each cell's ADTnorm row (study, sample, ``cell_type_l1`` / ``_l2``), joined
    on the 9 antibodies' raw counts."""
    import anndata as ad

    a = ad.read_h5ad(shared / FIXTURE)
    a = a[:, [v for v in a.var_names if "sotype" not in v]].copy()
    counts = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
    adt, meta = load(adtnorm)
    mine = (meta["study_name"] == "kotliarov_2020").to_numpy()
    adt, meta = adt[mine].reset_index(drop=True), meta[mine].reset_index(drop=True)

    def keys(x: np.ndarray) -> pd.Series:
        return pd.DataFrame(np.rint(x).astype(np.int64)).astype(str).agg("_".join, axis=1)

    theirs = keys(adt[ANTIBODIES].to_numpy())
    if theirs.duplicated().any():
        raise SystemExit("annotation_kotliarov: ADTnorm's Kotliarov cells do not have unique 9-antibody counts")
    cols = [list(a.var_names).index(f"{ab}_PROT") for ab in ANTIBODIES]
    row = keys(counts[:, cols]).map(pd.Series(np.arange(len(theirs)), index=theirs.to_numpy()))
    if row.isna().any():
        raise SystemExit(f"annotation_kotliarov: {int(row.isna().sum())} fixture cells have no ADTnorm row")
    return counts.astype(np.float64), list(a.var_names), meta.iloc[row.astype(int).to_numpy()].reset_index(drop=True)


def dsb_values(shared: Path, names: list[str], *, seed: int) -> np.ndarray:
    """The fixture's cells DSB-normalised as the pipeline does it (``annotation_real.kotliarov_dsb``), cells x
    ``names`` (the antibodies without the isotype controls)."""
    cells, dsb = kotliarov_dsb(shared, seed=seed)
    return np.asarray(dsb, dtype=np.float64)[:, [list(cells.var_names).index(n) for n in names]]


def states_taken_out(counts: np.ndarray, names: list[str], meta: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Each gated fine label taken out of the cells in turn, the rest annotated with the defaults: per state
    the benchmark maps onto that label (``STATE_TO_L2``; substates left out), its calls and their largest
    antibody separation (``sscsig.annotate.state_separation``) with the label's cells and without them
    (docs/annotation.md "States the cohort lacks")."""
    from sscsig.annotate import load_markers, state_separation

    markers = load_markers(ROOT / "config/markers.yaml")
    l2 = meta["cell_type_l2"].astype(str).to_numpy()

    def separation(keep):
        m = annotated_cohort(counts[keep], np.full(int(keep.sum()), "kotliarov"), seed=seed, antibodies=names,
                             **default_gate())
        return state_separation(m, markers, seed=seed).set_index("state")

    full, rows = separation(np.ones(len(l2), bool)), []
    for label in dict.fromkeys(STATE_TO_L2.values()):
        states = [s for s, v in STATE_TO_L2.items() if v == label and s in full.index and not full.loc[s, "substate_of"]]
        if (l2 == label).sum() < 10 or not states:
            continue
        without = separation(l2 != label)
        rows += [{"label_taken_out": label, "cells_taken_out": int((l2 == label).sum()), "state": s,
                  "calls_with": int(full.loc[s, "cells"]), "separation_with": full.loc[s, "max_antibody_separation"],
                  "stands_out_with": full.loc[s, "stands_out"], "calls_without": int(without.loc[s, "cells"]),
                  "separation_without": without.loc[s, "max_antibody_separation"],
                  "stands_out_without": without.loc[s, "stands_out"]} for s in states]
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("adtnorm", type=Path, help="folder with ADTnorm's cell_x_adt / cell_x_feature (.rda or .tsv.gz)")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "annotation_kotliarov")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    counts, names, meta = labelled_cells(a.adtnorm, a.shared)
    nine = [names.index(f"{ab}_PROT") for ab in ANTIBODIES]
    samples = np.full(len(counts), "kotliarov")
    rows, classes, confusions = [], [], {}
    # the same 83 antibodies also as DSB values (protein_layer and gate_layer dsb: the gate's level in
    # background SDs, learned from the cohort where an antibody has a positive population, as with CLR)
    dsb = {"dsb": dsb_values(a.shared, names, seed=a.seed), "gate_min": GATE_MIN_DEFAULTS["dsb"]}
    for panel, x, abs_, layer, key in (
            (f"{len(names)} antibodies", counts, names, {}, f"{len(names)}_antibodies"),
            ("9 antibodies (ADTnorm's)", counts[:, nine], [names[j] for j in nine], {}, "9_antibodies"),
            (f"{len(names)} antibodies, DSB", counts, names, dsb, f"{len(names)}_antibodies_dsb")):
        for changes, tag in (({}, ""), ({"refine": False}, ", no refine")):
            calls = call(x, samples, seed=a.seed, antibodies=abs_, **(default_gate() | layer | changes))
            row, per_class = score(calls, meta, cohort=panel + tag, study="kotliarov_2020")
            rows.append(row), classes.append(per_class)
            if not tag:
                for level, truth in (("lineage", "cell_type_l1"), ("states", "cell_type_l2")):
                    column = "lineage" if level == "lineage" else "cell_state"
                    confusions[f"{level}_{key}"] = pd.crosstab(
                        pd.Series(calls[column].to_numpy(), name=f"sscsig {column}"),
                        pd.Series(meta[truth].astype(str).to_numpy(), name=f"gated {truth}"))
            print(f"done: {panel}{tag}", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame(rows).drop(columns=["study"]).rename(columns={"cohort": "panel"})
    summary.to_csv(a.out / "summary.tsv", sep="\t", index=False)
    pd.concat(classes).rename(columns={"cohort": "panel"}).drop(columns=["study"]).to_csv(
        a.out / "per_class.tsv", sep="\t", index=False)
    for name, table in confusions.items():
        table.to_csv(a.out / f"confusion_{name}.tsv", sep="\t")
    states_taken_out(counts, names, meta, seed=a.seed).to_csv(a.out / "states_taken_out.tsv", sep="\t", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(summary.drop(columns=["lineages_averaged"]).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
