"""The marker method's protein calls against experts' manual gates on 13 real CITE-seq studies (run by hand).

    python benchmarks/annotation_gates.py DIR [--cells-per-study 3000] [--out benchmarks/annotation_gates]

Data: ADTnorm's public benchmark set (Zheng et al., bioRxiv 2022; github.com/yezhengSTAT/ADTnorm,
``data/cell_x_adt.rda`` and ``data/cell_x_feature.rda``, GPL-3): 422,682 cells of 13 public CITE-seq
studies (10x PBMC/MALT runs, Stuart 2019 bone marrow, Granja 2019, Hao 2020, Kotliarov 2020,
Witkowski 2020, Triana 2021, Buus 2021 sorted T cells), the raw counts of the 9 antibodies they share
(CD3, CD4, CD8, CD14, CD19, CD25, CD45RA, CD56, CD127) and, per cell, the study and a broad
(``cell_type_l1``) and fine (``cell_type_l2``) label from manual gating. Not stored in this repository
(3.4 + 3.0 MB, GPL-3): put the two ``.rda`` files in ``DIR`` and ``pip install pyreadr`` (not a
dependency of sscsig), or export them from R as ``cell_x_adt.tsv.gz`` / ``cell_x_feature.tsv.gz``
(``write.table(..., sep="\\t", row.names=FALSE)``).

What it measures: the calls ``sscsig.annotate.annotate`` makes from protein alone with the default
``config/markers.yaml`` (RNA components neutral: there is no RNA), each study a sample, CLR per cell
(``sscsig.protein.clr_per_cell``), the kNN graph on the CLR values; without the lineage gate (the rows
without "gate": the defaults before the gate became the default; the state calls refined,
``annotation.refine``), without the refinement (`` no refine``: the marker calls
alone; the lineages are the same, the refinement leaves them), with each component centred at its
Otsu boundary (`` otsu``: ``annotation.score_centre: otsu``) and with the lineage gate on CLR
(``gate_layer: clr``, ``--clr-gates``: there are no empty droplets for DSB) for every lineage, at that
fixed level and with levels learned per antibody (`` auto``: ``gate_threshold: auto``, the level the
fallback), in the pooled cohort learned per study (`` auto per study``: ``gate_group_key: sample``),
and learned levels for the lineages none of whose antibodies shows a positive population only
(`` auto unseparated``: ``gate_lineages: unseparated``, ``gate_negatives: gated``), the same with the
veto of the negative antibodies in every lineage (`` auto unseparated veto all lineages unrefined``:
``gate_negatives: all``), all these without the lineage refinement (``refine_lineages: false``, the
default when they were added), and the pipeline's default, that gate with the lineage calls refined
within what it admits, each cell among its best two lineages by marker score (`` auto unseparated veto
all``; `` ... any lineage``: among every lineage the gate admits, ``refine_lineage_choices: 0``;
`` ... missing as 0``: a state's marker components the data lack counted as 0 in its mean,
``state_missing_components: zero``; pooled also with levels per study, `` auto unseparated veto all per
study``). The panel has no DC
antibody (CD11c, CD123, CD1c), so
``lineage_macro_f1_without_DC`` is also given. The gates were drawn by people on
these same antibodies (and, for some fine labels, on antibodies the 9 do not include), so this scores
how well the marker scores reproduce expert gating on real staining of 13 labs, not an independent
truth. ``undefined`` cells (not gated) are left out of the scores and their calls are listed.

Cohorts: ``all studies`` (every study's sample, z-scores over the whole cohort, as the pipeline does)
and ``each study alone`` (the cohort is one study: what a single-batch user gets; the sorted-T study
``buus_2021_T`` and the near monocyte-free MALT tumour then show what relative scores do to a lineage
a cohort lacks). Writes ``summary.tsv`` (per cohort and study: lineage macro-F1 over the gated
lineages with >= 20 cells, fine-label macro-F1, the share of cells called each absent lineage),
``per_class.tsv`` and ``confusion_*.tsv`` to ``--out``.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
import pandas as pd

from annotation_real import _annotation_options, write_tables  # benchmarks/, beside this script

ROOT = Path(__file__).resolve().parents[1]
ANTIBODIES = ["CD3", "CD4", "CD8", "CD14", "CD19", "CD25", "CD45RA", "CD56", "CD127"]
L1_TO_LINEAGE = {"CD4 T": "CD4_T", "CD8 T": "CD8_T", "B": "B", "monocytes": "Mono", "NK": "NK", "DCs": "DC"}
#: the pipeline's states -> the gated fine label they correspond to (states not listed: no gated label)
STATE_TO_L2 = {"CD4.Naive": "naive CD4", "CD4.TCM": "memory CD4", "CD4.TEM": "memory CD4", "Treg": "Treg",
               "CD8.Naive": "naive CD8", "CD8.TCM": "memory CD8", "CD8.TEM": "memory CD8",
               "CD8.TEM_T2ISG": "memory CD8", "CD8.CTL": "memory CD8", "B.Naive": "naive B",
               "B.Memory": "memory B", "CD14.Mono": "classical monocyte", "CD14.EGR1": "classical monocyte",
               "CD14.ISG": "classical monocyte", "Int.Mono": "intermediate monocyte",
               "CD16.Mono": "non-classical CD16+ monocyte", "NK.dim": "CD16+ NK", "NK.bright": "CD16- NK",
               "cDC2": "myeloid DC", "pDC": "plasmacytoid DC"}
MIN_CELLS = 20


def load(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The counts (cells x 9 antibodies) and the cells' study and gated labels."""
    tsv = directory / "cell_x_adt.tsv.gz", directory / "cell_x_feature.tsv.gz"
    if all(p.exists() for p in tsv):
        return tuple(pd.read_csv(p, sep="\t") for p in tsv)
    try:
        import pyreadr
    except ImportError as err:
        raise SystemExit(f"annotation_gates: no cell_x_*.tsv.gz in {directory}; reading the .rda files needs "
                         "pyreadr (pip install pyreadr)") from err
    return tuple(next(iter(pyreadr.read_r(directory / f"{n}.rda").values())).reset_index(drop=True)
                 for n in ("cell_x_adt", "cell_x_feature"))


def subsample(meta: pd.DataFrame, *, per_study: int, seed: int) -> np.ndarray:
    """Row positions: up to ``per_study`` cells of each study, drawn without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    rows = [rng.choice(idx, size=min(per_study, len(idx)), replace=False)
            for _, idx in sorted(meta.groupby("study_name").indices.items())]
    return np.sort(np.concatenate(rows))


@functools.cache
def _config() -> dict:
    """The validated default config (read once)."""
    import yaml

    from sscsig.config import validate_config

    return validate_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()))


def call(counts: np.ndarray, samples: np.ndarray, *, seed: int, gate_min: float | None = None,
         antibodies: list[str] = ANTIBODIES, dsb: np.ndarray | None = None, **changes) -> pd.DataFrame:
    """Lineage and state calls of the default marker file from protein alone (one cohort); ``counts``:
    cells x ``antibodies``; ``changes``: annotation settings that differ from the config's
    (``refine=False``). ``dsb``: the cells' DSB values (cells x ``antibodies``), scored, gated (with
    ``gate_min``) and used for the kNN graph instead of the CLR, as the pipeline does with
    ``protein_layer: dsb`` and ``gate_layer: dsb``."""
    m = annotated_cohort(counts, samples, seed=seed, gate_min=gate_min, antibodies=antibodies, dsb=dsb, **changes)
    return pd.DataFrame({"lineage": m.obs["lineage"].astype(str).to_numpy(),
                         "cell_state": m.obs["cell_state"].astype(str).to_numpy()})


def annotated_cohort(counts: np.ndarray, samples: np.ndarray, *, seed: int, gate_min: float | None = None,
                     antibodies: list[str] = ANTIBODIES, dsb: np.ndarray | None = None, **changes):
    """The cohort :func:`call` annotates (a MuData with ``prot`` only and the calls in ``obs``)."""
    import anndata as ad
    import mudata as md
    import scanpy as sc
    import scipy.sparse as sp

    from sscsig.annotate import annotate, load_markers
    from sscsig.protein import clr_per_cell

    names = [f"c{i}" for i in range(len(counts))]
    obs = pd.DataFrame({"sample": samples}, index=names)
    prot = ad.AnnData(sp.csr_matrix(counts.astype(np.float32)), obs=obs.copy(),
                      var=pd.DataFrame({"antibody": antibodies}, index=[f"ADT_{a}" for a in antibodies]))
    prot.layers["clr"] = clr_per_cell(counts)  # per cell, so the same as the pipeline's per sample
    layer = "clr" if dsb is None else "dsb"
    if dsb is not None:
        prot.layers["dsb"] = np.asarray(dsb, dtype=np.float64)
    rna = ad.AnnData(sp.csr_matrix((len(names), 1), dtype=np.float32), obs=obs.copy(),
                     var=pd.DataFrame(index=["none"]))  # no RNA: every RNA component is neutral
    m = md.MuData({"rna": rna, "prot": prot})
    m.obs["sample"] = samples  # the study: annotation.gate_group_key "sample" learns the gate's levels per study
    graph = ad.AnnData(prot.layers[layer])
    sc.pp.neighbors(graph, n_neighbors=15, use_rep="X", random_state=seed)
    m.obsp["connectivities"] = graph.obsp["connectivities"]
    # without gate_min: no gate (the rows without "gate"); with it, every lineage gated at that fixed level
    # unless ``changes`` say otherwise (the pipeline's default: auto levels, unseparated lineages only)
    gate = ({"gate_layer": None} if gate_min is None else
            {"gate_layer": layer, "gate_min": gate_min, "gate_threshold": "fixed", "gate_lineages": "all"})
    gate["protein_layer"] = layer
    annotate(m, load_markers(ROOT / "config/markers.yaml"), **_annotation_options(_config(), **(gate | changes)),
             seed=seed)
    return m


def score(calls: pd.DataFrame, meta: pd.DataFrame, *, cohort: str, study: str) -> tuple[dict, pd.DataFrame]:
    """Lineage and fine-label F1 against the gates (``undefined`` cells left out)."""
    from sscsig.annotate import annotation_f1

    l1 = meta["cell_type_l1"].astype(str).to_numpy()
    gated = l1 != "undefined"
    truth = np.array([L1_TO_LINEAGE.get(x, x) for x in l1[gated]])
    pred = calls["lineage"].to_numpy()[gated]
    lin, overall = annotation_f1(pred, truth)
    big = lin[lin.n_true >= MIN_CELLS]
    l2 = meta["cell_type_l2"].astype(str).to_numpy()
    fine_ok = np.isin(l2, list(set(STATE_TO_L2.values())))
    fine_pred = np.array([STATE_TO_L2.get(s, s) for s in calls["cell_state"].to_numpy()[fine_ok]])
    fine, _ = annotation_f1(fine_pred, l2[fine_ok])
    fine_big = fine[fine.n_true >= MIN_CELLS]
    present = set(big.label)
    row = {"cohort": cohort, "study": study, "n_cells": len(meta), "n_gated": int(gated.sum()),
           "lineage_macro_f1": round(float(big.f1.mean()), 3) if len(big) else np.nan,
           "lineage_macro_f1_without_DC": round(float(big[big.label != "DC"].f1.mean()), 3) if len(big) else np.nan,
           "lineage_accuracy": round(overall["accuracy"], 3), "lineages_averaged": ",".join(big.label),
           "fine_macro_f1": round(float(fine_big.f1.mean()), 3) if len(fine_big) else np.nan,
           "fine_labels_averaged": len(fine_big),
           "unassigned_share": round(float((calls["lineage"] == "Unassigned").mean()), 4)}
    for lineage in ("B", "Mono", "CD8_T"):  # what a cohort without the lineage gets called it
        if lineage not in present:
            row[f"called_{lineage}_where_gates_have_none"] = round(float((calls["lineage"] == lineage).mean()), 4)
    per_class = pd.concat([lin.assign(level="lineage"), fine.assign(level="fine")])
    return row, per_class.assign(cohort=cohort, study=study)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="folder with ADTnorm's cell_x_adt / cell_x_feature (.rda or .tsv.gz)")
    ap.add_argument("--cells-per-study", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "annotation_gates")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clr-gates", type=float, nargs="*", default=[1.0],
                    help="also score annotation.gate_layer clr with these gate_min values")
    a = ap.parse_args(argv)
    adt, meta = load(a.data)
    rows = subsample(meta, per_study=a.cells_per_study, seed=a.seed)
    counts, meta = adt[ANTIBODIES].to_numpy(np.float64)[rows], meta.iloc[rows].reset_index(drop=True)
    study = meta["study_name"].astype(str).to_numpy()
    out, classes, confusions = [], [], {}
    # the rows before the last three: the settings of their day, when the lineages were not refined
    old = {"refine_lineages": False}
    veto = {"gate_threshold": "auto", "gate_lineages": "unseparated", "gate_negatives": "all"}
    variants = ([(old, None, ""), ({"refine": False}, None, " no refine"),
                 (old | {"score_centre": "otsu"}, None, " otsu")] + [(old, g, f" gate clr>={g:g}") for g in a.clr_gates]
                + [(old | {"gate_threshold": "auto"}, g, f" gate clr>={g:g} auto") for g in a.clr_gates]
                # the gate only for lineages none of whose antibodies shows a positive population
                + [(old | veto | {"gate_negatives": "gated"}, g, f" gate clr>={g:g} auto unseparated")
                   for g in a.clr_gates]
                # levels learned per study: pooled only (a study alone is one group, the row above)
                + [(old | {"gate_threshold": "auto", "gate_group_key": "sample"}, g,
                    f" gate clr>={g:g} auto per study") for g in a.clr_gates]
                # and the veto of each lineage's negative antibodies in every lineage (gate_negatives: all)
                + [(old | veto, g, f" gate clr>={g:g} auto unseparated veto all lineages unrefined")
                   for g in a.clr_gates]
                # the pipeline's default: that gate, and the lineage calls refined within what it admits
                + [(veto, g, f" gate clr>={g:g} auto unseparated veto all") for g in a.clr_gates]
                # the lineage refinement choosing among every admitted lineage (refine_lineage_choices: 0, the
                # default before it chose among the markers' best two)
                + [(veto | {"refine_lineage_choices": 0}, g, f" gate clr>={g:g} auto unseparated veto all any lineage")
                   for g in a.clr_gates]
                # a state's missing marker components counted as 0 (state_missing_components: zero, the default
                # before it left them out of the state's mean)
                + [(veto | {"state_missing_components": "zero"}, g,
                    f" gate clr>={g:g} auto unseparated veto all missing as 0") for g in a.clr_gates]
                # the pipeline's default gate with levels per study (a cohort whose batches stain differently)
                + [(veto | {"gate_group_key": "sample"}, g, f" gate clr>={g:g} auto unseparated veto all per study")
                   for g in a.clr_gates])
    for changes, gate, tag in variants:
        calls = call(counts, study, seed=a.seed, gate_min=gate, **changes)
        row, per_class = score(calls, meta, cohort="all studies" + tag, study="all")
        out.append(row), classes.append(per_class)
        confusions["all_studies" + tag.replace(" ", "_").replace(">=", "")] = pd.crosstab(
            pd.Series(calls["lineage"].to_numpy(), name="sscsig lineage"),
            pd.Series(meta["cell_type_l1"].astype(str).to_numpy(), name="gated"))
        for s in sorted(set(study)):  # the same calls, scored per study
            row, per_class = score(calls[study == s].reset_index(drop=True), meta[study == s],
                                   cohort="all studies" + tag, study=s)
            out.append(row), classes.append(per_class)
        for s in sorted(set(study)) if "gate_group_key" not in changes else ():  # each study as its own cohort
            sel = study == s
            alone = call(counts[sel], study[sel], seed=a.seed, gate_min=gate, **changes)
            row, per_class = score(alone, meta[sel].reset_index(drop=True), cohort="each study alone" + tag, study=s)
            out.append(row), classes.append(per_class)
        print(f"done: {tag or 'default'}", flush=True)
    summary = write_tables(a.out, pd.DataFrame(out), classes, confusions)
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(summary.drop(columns=["lineages_averaged"]).to_string(index=False))
        for name, c in confusions.items():
            print(name), print(c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
