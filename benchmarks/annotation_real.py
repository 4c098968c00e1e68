"""Annotation accuracy on real, labelled CITE-seq data (issue 16's harness; run by hand).

    python benchmarks/annotation_real.py [--shared ../shared/data] [--out benchmarks/annotation_real] [--seed-spread SEED ...]

Data sets scored (from ``../shared/data``; see its README for sources and licences):

- ``pbmc10k_protein_v3_200cells_scvi.h5mu``: 200 PBMCs of 10x's pbmc_10k_protein_v3 (14 antibodies),
  with SingleR main and fine labels (via tagtango). SingleR is itself a prediction from RNA, so
  this is agreement with an independent RNA-only annotator, not ground truth.
- ``kang2018_ifnb_muscat_example_sce.h5ad``: the marker method on RNA alone (1,556 PBMCs, 1,267
  genes, 5 labelled types; :func:`score_kang_markers`).

Each marker run is scored as the defaults call it (the lineage and state calls refined), without the
refinement (rows `` no refine``: the marker calls alone), with only the states refined
(``refine_lineages: false``, the default before ba01315, rows `` lineages unrefined``), with
transcript stand-ins for the antibodies the data lacks
(``annotation.rna_standins: true``, rows ``+standins``), with each marker component centred at its
Otsu boundary (``annotation.score_centre: otsu``, rows `` otsu``) and with each sparse RNA module centred
at the cells that detect none of its genes (``annotation.module_centre: negative``, rows `` negative``)
and with the lineage refinement choosing among every lineage rather than each cell's best two by
marker score (``annotation.refine_lineage_choices: 0``, the default before it was added, rows `` any lineage``)
and with a state's marker components the data lack counted as 0 in its mean
(``annotation.state_missing_components: zero``, the default before, rows `` missing as 0``), and with
the programme substates' background fitted per group (``annotation.substate_group_key``): per Kang's lane,
which is its stimulation (rows `` programme background per batch``: the programme confounded with the
group), and per donor, each of whom gave both (rows `` programme background per donor``: a balanced
design); pbmc10k is one library of one donor.

Each is run through the pipeline's own functions (``integrate`` with ``wnn`` and with ``totalvi``,
``cluster``, ``annotate`` with ``config/markers.yaml`` and the schema's annotation defaults).
Scores: lineage macro-F1 over the reference labels with at least ``--min-cells`` cells (smaller ones
are listed, not averaged), per-class precision/recall/F1, the confusion matrix, the share of cells
Unassigned, and a state-level score on the reference's fine labels that name one of the
pipeline's states. Label harmonisation (below) is explicit: SingleR has no DC, MAIT or gd T label.
pbmc10k is also scored against a second reference (``lineage_macro_f1_coreceptor_adjudicated``):
SingleR's labels with the CD4 / CD8 split of its T cells taken from the CD4 and CD8a antibodies
where they are unambiguous (:func:`coreceptor_adjudicated`; SingleR splits them from RNA alone), and
``n_relabelled_by_antibodies`` says how many cells that changed.

Reference mapping (``annotation.method: reference``) is scored on pairs of real data sets, one the
reference and the other the query: Kang 2018 (``kang2018_ifnb_muscat_example_sce.h5ad``, 1,556
PBMCs, 5 labelled types, RNA only) -> pbmc10k (SingleR main labels), and the reverse (a 200-cell
reference, which is too small to train on: reported to show it). Lineages the reference lacks (NK
cells are not among Kang's five types) should come out Unassigned; the table counts how many did.
``lineage_ece`` / ``lineage_mean_probability``: whether P(lineage) is calibrated on the called cells of
lineages the reference has (:func:`sscsig.annotate.confidence_calibration`).

The lineage gate (``annotation.gate_layer: dsb``) is checked on real DSB-normalised cells
(``dsb_kotliarov2020_*``, no labels): cells per lineage without and with the gate
(``gate_kotliarov2020_lineages.tsv``).

Each row's lineage macro-F1 (``lineage_macro_f1`` or, for a mapping, ``lineage_macro_f1_in_reference``)
comes with its 95% bootstrap interval over the cells (``lineage_macro_f1_ci_low`` / ``_high``,
:func:`sscsig.annotate.macro_f1_interval`, seeded): on 200 cells one cell moves it by ~0.005, so two
rows whose intervals overlap widely are not told apart by these data.

Writes ``summary.tsv``, ``per_class.tsv`` and ``confusion_<data>_<method>.tsv`` under ``--out``.
``--seed-spread 0 1 2 3 4`` instead scores pbmc10k with the defaults once per seed
(``seed_spread.tsv``): the run-to-run spread of one number, which the bootstrap interval does not show.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

# pipeline lineage -> SingleR main label it agrees with
LINEAGE_TO_SINGLER = {"CD4_T": "CD4+ T-cells", "CD8_T": "CD8+ T-cells", "Mono": "Monocytes", "DC": "Monocytes",
                      "NK": "NK cells", "B": "B-cells"}
# SingleR fine label -> the pipeline states it names (labels not listed are not scored at state level)
SINGLER_FINE_TO_STATES = {
    "CD4+ Tcm": {"CD4.TCM"}, "CD4+ Tem": {"CD4.TEM"}, "Tregs": {"Treg"},
    "CD8+ Tcm": {"CD8.TCM"}, "CD8+ Tem": {"CD8.TEM", "CD8.TEM_T2ISG", "CD8.CTL"},
    "naive B-cells": {"B.Naive"}, "Memory B-cells": {"B.Memory"}, "Class-switched memory B-cells": {"B.Memory"},
}


#: (settings that differ from the config's annotation defaults, row suffix): how each data set is scored
ANNOTATION_VARIANTS = (({}, ""), ({"refine": False}, " no refine"), ({"refine_lineages": False}, " lineages unrefined"),
                       ({"rna_standins": True}, "+standins"), ({"score_centre": "otsu"}, " otsu"),
                       ({"module_centre": "negative"}, " negative"), ({"refine_lineage_choices": 0}, " any lineage"),
                       ({"state_missing_components": "zero"}, " missing as 0"),
                       ({"substate_group_key": "batch"}, " programme background per batch"),
                       ({"substate_group_key": "donor"}, " programme background per donor"))


def _interval(pred, truth, labels, seed: int) -> dict:
    """The 95% bootstrap interval of a macro-F1 over ``labels`` (cells resampled; ``macro_f1_interval``)."""
    from sscsig.annotate import macro_f1_interval

    low, high = macro_f1_interval(pred, truth, labels=labels, seed=seed)
    return {"lineage_macro_f1_ci_low": round(low, 3), "lineage_macro_f1_ci_high": round(high, 3)}


def _annotation_options(cfg: dict, **changes) -> dict:
    from sscsig.annotate import marker_options

    # no empty droplets in these fixtures: DSB (and its gate) is not available; a CLR gate (the default) is
    gate = cfg["annotation"]["gate_layer"]
    return marker_options(cfg["annotation"], protein_layer="clr", gate_layer=None if gate == "dsb" else gate) | changes


#: CLR(CD4) - CLR(CD8a) beyond which the antibodies, not SingleR, say which T cell it is (``coreceptor_adjudicated``)
CORECEPTOR_MARGIN = 2.0


def coreceptor_adjudicated(main: np.ndarray, cd4: np.ndarray, cd8: np.ndarray, *,
                           margin: float = CORECEPTOR_MARGIN) -> np.ndarray:
    """SingleR's main labels with the CD4 / CD8 split of its T cells taken from the antibodies where
    they are unambiguous. SingleR calls CD4 vs CD8 from RNA alone, where CD4 / CD8A / CD8B often go
    undetected; a cell SingleR calls a CD4+ or CD8+ T cell is relabelled CD4+ T when its CLR(CD4)
    exceeds its CLR(CD8a) by ``margin`` or more (e^2 = 7.4-fold), CD8+ T when CLR(CD8a) exceeds
    CLR(CD4) by as much. Cells between keep SingleR's label (a double-negative T cell, say), and no
    other label changes. Uses neither the pipeline's calls nor its thresholds."""
    out = np.asarray(main, dtype=object).copy()
    t = np.isin(out, ["CD4+ T-cells", "CD8+ T-cells"])
    d = np.asarray(cd4, float) - np.asarray(cd8, float)
    out[t & (d >= margin)] = "CD4+ T-cells"
    out[t & (d <= -margin)] = "CD8+ T-cells"
    return out


def score_pbmc10k(path: Path, *, methods, cfg: dict, seed: int, min_cells: int, variants=None):
    import anndata as ad
    import h5py

    from sscsig.annotate import annotation_f1
    from sscsig.io import read_sample

    with h5py.File(path, "r") as f:
        obs = ad.io.read_elem(f["obs"])
    labelled = obs["celltype_main_singler"].notna().to_numpy()  # one cell has no SingleR label
    main = obs["celltype_main_singler"].astype(str).to_numpy()[labelled]
    fine = obs["celltype_fine_singler"].astype(str).to_numpy()[labelled]
    from sscsig.annotate import annotate, load_markers
    from sscsig.integrate import cluster, integrate

    rows, classes, confusions = [], [], {}
    for integration, (changes, suffix) in ((mt, v) for mt in methods for v in variants or ANNOTATION_VARIANTS):
        if suffix == "":  # integrate once per method; each annotation variant starts from a copy
            base = read_sample(path, sample="pbmc10k")
            integrate(base, method=integration, totalvi={"max_epochs": 100}, seed=seed)
            cluster(base, resolutions=[1.0], seed=seed)
            clr = pd.DataFrame(np.asarray(base["prot"].layers["clr"]), columns=base["prot"].var["antibody"])
            adjudicated = coreceptor_adjudicated(main, clr["CD4"].to_numpy()[labelled],
                                                 clr["CD8a"].to_numpy()[labelled])
        m = base.copy()
        for key in ("batch", "donor"):  # one library of one donor
            if key not in m.obs:
                m.obs[key] = "pbmc10k"
        report = annotate(m, load_markers(ROOT / "config/markers.yaml"), **_annotation_options(cfg, **changes),
                          seed=seed)
        method = integration + suffix
        lin = m.obs["lineage"].astype(str).to_numpy()[labelled]
        state = m.obs["cell_state"].astype(str).to_numpy()[labelled]
        pred = np.array([LINEAGE_TO_SINGLER.get(x, x) for x in lin], dtype=object)
        table, overall = annotation_f1(pred, main)
        big = table[table.n_true >= min_cells]
        adj_table, _ = annotation_f1(pred, adjudicated)
        adj_big = adj_table[adj_table.n_true >= min_cells]
        fine_ok = np.array([f in SINGLER_FINE_TO_STATES for f in fine])
        state_hit = np.array([s in SINGLER_FINE_TO_STATES.get(f, set()) for s, f in zip(state, fine)])
        rows.append({"data": "pbmc10k_200", "reference": "SingleR main (RNA)", "method": method,
                     "n_cells": len(main), "lineage_macro_f1": round(float(big.f1.mean()), 3),
                     **_interval(pred, main, big.label, seed),
                     "lineage_accuracy": round(overall["accuracy"], 3),
                     "classes_averaged": ",".join(big.label),
                     "unassigned_share": round(float((lin == "Unassigned").mean()), 3),
                     "lineage_macro_f1_coreceptor_adjudicated": round(float(adj_big.f1.mean()), 3),
                     "n_relabelled_by_antibodies": int((adjudicated != main).sum()),
                     "state_agreement_on_specific_fine_labels": round(float(state_hit[fine_ok].mean()), 3),
                     "n_specific_fine": int(fine_ok.sum()),
                     "missing_markers": len(report["missing_markers"])})
        classes.append(table.assign(data="pbmc10k_200", method=method))
        confusions[f"pbmc10k_200_{method}"] = pd.crosstab(pd.Series(lin, name="sscsig lineage"),
                                                          pd.Series(main, name="SingleR main"))
        confusions[f"pbmc10k_200_{method}_states"] = pd.crosstab(pd.Series(state, name="sscsig state"),
                                                                 pd.Series(fine, name="SingleR fine"))
    return rows, classes, confusions


# Kang 2018's cluster labels and SingleR's main labels -> the pipeline's lineages (reference mapping pairs)
KANG_TO_LINEAGE = {"B cells": "B", "CD14+ Monocytes": "Mono", "FCGR3A+ Monocytes": "Mono", "CD4 T cells": "CD4_T",
                   "CD8 T cells": "CD8_T"}
SINGLER_TO_LINEAGE = {"CD4+ T-cells": "CD4_T", "CD8+ T-cells": "CD8_T", "Monocytes": "Mono", "NK cells": "NK",
                      "B-cells": "B", "HSC": "HSC"}


def rna_only_mudata(counts, genes, obs_names, *, seed: int):
    """A cohort of RNA alone, as the RNA-only data sets are scored: the raw counts (``layers['counts']``)
    log-normalised, scanpy's kNN graph on 30 PCs (no antibodies to integrate), an empty protein panel
    and one batch, sample and donor (``"one"``)."""
    import anndata as ad
    import mudata as md
    import scanpy as sc

    idx = pd.DataFrame(index=pd.Index(list(obs_names)))
    rna = ad.AnnData(counts.copy(), obs=idx.copy(), var=pd.DataFrame(index=pd.Index(list(genes))))
    rna.layers["counts"] = rna.X.copy()  # as in a pipeline run: the raw counts the annotation reads
    sc.pp.normalize_total(rna, target_sum=1e4)
    sc.pp.log1p(rna)
    sc.pp.pca(rna, n_comps=30, random_state=seed)
    sc.pp.neighbors(rna, n_neighbors=15, random_state=seed)
    prot = ad.AnnData(np.zeros((rna.n_obs, 0)), obs=idx.copy(),
                      var=pd.DataFrame({"antibody": pd.Series([], dtype=str)}))
    prot.layers["clr"] = np.zeros((rna.n_obs, 0))
    m = md.MuData({"rna": rna, "prot": prot})
    m.obsp["connectivities"] = rna.obsp["connectivities"]
    for key in ("batch", "sample", "donor"):
        m.obs[key] = "one"
    return m


def score_kang_markers(shared: Path, *, cfg: dict, seed: int, variants=None):
    """The marker method on Kang 2018 (1,556 real PBMCs, RNA only, 1,267 genes), without and with
    ``refine``, scored against its 5 labelled types (as lineages, and CD14 vs FCGR3A monocytes as
    states), and the interferon programme against its cause: the share of Kang's monocytes called
    CD14.ISG or CD16.ISG in the IFN-beta-stimulated samples and in the controls (``monocytes_called_isg_*``);
    and the share of its B cells called Plasmablast (``b_cells_called_plasmablast``; Kang does not type them
    further, and plasmablasts are a small part of the B cells in blood).
    The data set keeps 1,267 genes: lineages none of whose genes are among them (DC, other_T) are left out of
    the marker file, and a module may have a single gene (B: MS4A1 only). The graph is scanpy's on 30 PCs of the
    log-normalised counts (no antibodies to integrate)."""
    import anndata as ad

    from sscsig.annotate import annotate, annotation_f1, load_markers

    k = ad.read_h5ad(shared / "kang2018_ifnb_muscat_example_sce.h5ad")
    base = rna_only_mudata(k.layers["counts"], k.var_names, k.obs_names, seed=seed)
    markers = load_markers(ROOT / "config/markers.yaml")
    for absent in ("DC", "other_T"):
        markers["lineages"].pop(absent), markers["states"].pop(absent)
    truth = k.obs["cluster_id"].astype(str).to_numpy()
    lineage_truth = k.obs["cluster_id"].map(KANG_TO_LINEAGE).astype(str).to_numpy()
    # a programme state against a known cause: IFN-beta stimulation (Kang's group_id) and the ISG states
    kang_mono, stim = lineage_truth == "Mono", k.obs["group_id"].astype(str).to_numpy() == "stim"
    rows, classes, confusions = [], [], {}
    for changes, suffix in variants or ANNOTATION_VARIANTS:
        m = base.copy()
        # the stimulated cells were a 10x lane of their own: the lane is the batch (substate_group_key: batch, the
        # programme confounded with the group); each donor gave both (substate_group_key: donor, a balanced design)
        m.obs["batch"], m.obs["sample"] = k.obs["group_id"].astype(str).to_numpy(), k.obs["sample_id"].astype(str).to_numpy()
        m.obs["donor"] = m.obs["sample"].str.replace("ctrl", "").str.replace("stim", "").to_numpy()
        opts = _annotation_options(cfg, **changes) | {"min_genes_per_module": 1}
        annotate(m, markers, **opts, seed=seed)
        lin, state = m.obs["lineage"].astype(str).to_numpy(), m.obs["cell_state"].astype(str).to_numpy()
        table, overall = annotation_f1(lin, lineage_truth)
        big = table[table.label.isin(set(KANG_TO_LINEAGE.values()))]
        mono = (lineage_truth == "Mono") & (lin == "Mono")
        name = "markers (RNA only)" + suffix
        # CD16.Mono and its ISG-high substate are FCGR3A+ monocytes
        cd16_right = np.isin(state[mono], ["CD16.Mono", "CD16.ISG"]) == (truth[mono] == "FCGR3A+ Monocytes")
        isg_call = np.isin(state, ["CD14.ISG", "CD16.ISG"])
        isg = {f"monocytes_called_isg_{g}": round(float(isg_call[kang_mono & sel].mean()), 3)
               for g, sel in (("stim", stim), ("ctrl", ~stim))}
        rows.append({"data": "kang2018", "reference": "Kang's cell types", "method": name, "n_cells": len(lin),
                     "lineage_macro_f1": round(float(big.f1.mean()), 3),
                     **_interval(lin, lineage_truth, big.label, seed),
                     "lineage_accuracy": round(overall["accuracy"], 3), "classes_averaged": ",".join(big.label),
                     "unassigned_share": round(float((lin == "Unassigned").mean()), 3),
                     "state_agreement_on_specific_fine_labels": round(float(cd16_right.mean()), 3),
                     "n_specific_fine": int(mono.sum())} | isg
                    # Kang's B cells are not typed further; two lupus donors' blood holds some plasmablasts,
                    # not most B cells
                    | {"b_cells_called_plasmablast": round(float((state[lineage_truth == "B"] == "Plasmablast").mean()), 3)})
        classes.append(table.assign(data="kang2018", method=name))
        confusions["kang2018_markers" + suffix.replace("+", "_").replace(" ", "_")] = pd.crosstab(
            pd.Series(lin, name="sscsig lineage"), pd.Series(truth, name="Kang cell type"))
    return rows, classes, confusions


def kang_reference(shared: Path):
    """Kang 2018 (1,556 PBMCs, 2 lupus donors x control / IFN-beta, RNA counts) labelled with its
    cell types (``cell_state``), their lineage and the sample as batch."""
    import anndata as ad

    k = ad.read_h5ad(shared / "kang2018_ifnb_muscat_example_sce.h5ad")
    obs = pd.DataFrame({"cell_state": k.obs["cluster_id"].astype(str).to_numpy(),
                        "lineage": k.obs["cluster_id"].map(KANG_TO_LINEAGE).astype(str).to_numpy(),
                        "batch": k.obs["sample_id"].astype(str).to_numpy()}, index=k.obs_names)
    return ad.AnnData(k.layers["counts"], obs=obs, var=pd.DataFrame(index=k.var_names))


def pbmc10k_query(shared: Path):
    """pbmc10k's 200 cells (RNA counts) with SingleR's main label as lineage (the unlabelled cell dropped)."""
    import anndata as ad
    import h5py

    from sscsig.io import read_sample

    path = shared / "pbmc10k_protein_v3_200cells_scvi.h5mu"
    with h5py.File(path, "r") as f:
        main = ad.io.read_elem(f["obs"])["celltype_main_singler"]
    m = read_sample(path, sample="pbmc10k")
    ok = main.notna().to_numpy()
    lineage = main[ok].map(SINGLER_TO_LINEAGE).astype(str).to_numpy()
    obs = pd.DataFrame({"cell_state": lineage, "lineage": lineage, "batch": "pbmc10k"}, index=m.obs_names[ok])
    return ad.AnnData(m["rna"].X[ok], obs=obs, var=pd.DataFrame(index=m["rna"].var_names))


def score_reference_mapping(reference, query, *, data: str, seed: int = 0, reference_epochs: int = 200,
                            query_epochs: int = 100):
    """Map ``query`` onto ``reference`` with the pipeline's reference mapping (``sscsig.mapping``,
    config ``annotation.reference`` defaults otherwise) and score the lineages against the query's
    own labels: macro-F1 over the query lineages the reference has (>= 5 cells), per-class table,
    confusion matrix. Lineages the reference lacks should come out Unassigned; the row says how many did."""
    from sscsig.annotate import annotation_f1, confidence_calibration
    from sscsig.config import default
    from sscsig.mapping import map_query

    opts = {k: v for k, v in default("annotation.reference").items()
            if k not in ("path", "label_key", "lineage_key", "batch_key", "labels")}
    opts.update(reference_epochs=reference_epochs, query_epochs=query_epochs)
    res = map_query(reference, query, query_batch_key="batch", unmapped_label="Unassigned", seed=seed, what=data,
                    **opts)
    pred = res.query["label_lineage"].to_numpy()
    truth = query.obs["lineage"].to_numpy()
    table, overall = annotation_f1(pred, truth)
    known = set(reference.obs["lineage"])
    big = table[(table.n_true >= 5) & table.label.isin(known)]
    absent = ~np.isin(truth, list(known))
    knn_f1 = np.nan
    if "label_lineage_knn" in res.query:  # the same mapping's kNN votes, for comparison
        knn_table, _ = annotation_f1(res.query["label_lineage_knn"].to_numpy(), truth)
        knn_f1 = round(float(knn_table.set_index("label").f1.reindex(big.label).mean()), 3)
    row = {"data": data, "reference": "query's own labels",
           "method": f"reference ({res.facts['model']}, {res.facts['classifier']})",
           "n_cells": len(truth), "lineage_macro_f1_in_reference": round(float(big.f1.mean()), 3),
           **_interval(pred, truth, big.label, seed),
           "lineage_macro_f1_in_reference_knn": knn_f1,
           "lineage_accuracy": round(overall["accuracy"], 3), "classes_averaged": ",".join(big.label),
           "unassigned_share": round(float((pred == "Unassigned").mean()), 3),
           "cells_of_lineages_not_in_reference": int(absent.sum()),
           "of_those_unassigned": int((pred[absent] == "Unassigned").sum()), "shared_genes": res.facts["genes"]}
    scored = ~absent & (pred != "Unassigned")  # is P(lineage) calibrated where the reference knows the lineage?
    if scored.any():
        _, cal = confidence_calibration(res.query["lineage_probability"].to_numpy()[scored], pred[scored] == truth[scored])
        row.update(lineage_ece=round(cal["ece"], 3), lineage_mean_probability=round(cal["mean_confidence"], 3))
    confusion = pd.crosstab(pd.Series(pred, name="mapped lineage"), pd.Series(truth, name="query label"))
    return row, table.assign(data=data, method=row["method"]), confusion


def kotliarov_dsb(shared: Path, *, seed: int = 0):
    """Kotliarov 2020's 2,872 cells in ``shared`` (87 antibodies, raw counts; ``var['isotype']`` marks the
    four isotype controls) and their DSB values (cells x the same antibodies) against the 8,005 empty
    droplets beside them, as the pipeline normalises (:func:`sscsig.protein.dsb_normalise`, the isotype
    controls in the technical component)."""
    import anndata as ad

    from sscsig.protein import dsb_normalise

    cells = ad.read_h5ad(shared / "dsb_kotliarov2020_adt_cells.h5ad")
    empty = ad.read_h5ad(shared / "dsb_kotliarov2020_adt_empty_drops.h5ad")
    cells.var["isotype"] = ["isotype" in v.lower() for v in cells.var_names]
    return cells, dsb_normalise(cells, empty, seed=seed)


def gate_on_real_dsb(shared: Path, *, gates=(None, 3.0, 4.0, 6.0), seed: int = 0) -> pd.DataFrame:
    """Lineage calls on real DSB-normalised PBMCs (Kotliarov 2020: 2,872 cells, 87 antibodies, DSB
    against its 8,005 empty droplets; protein only, no labels) without and with the lineage gate at
    each ``gates`` threshold: cells per lineage, Unassigned included. No labels, so this checks how
    much the gate abstains on real background levels, not accuracy."""
    import anndata as ad
    import mudata as md
    import scanpy as sc
    import scipy.sparse as sp

    from sscsig.annotate import annotate, load_markers
    from sscsig.protein import clr_per_cell

    cells, dsb = kotliarov_dsb(shared, seed=seed)
    names = [v.replace("_PROT", "").strip().replace("TCRgd", "TCR_gd") for v in cells.var_names]
    prot = ad.AnnData(sp.csr_matrix(cells.X), obs=pd.DataFrame(index=cells.obs_names),
                      var=pd.DataFrame({"antibody": names}, index=[f"ADT_{n}" for n in names]))
    prot.layers["dsb"], prot.layers["clr"] = dsb, clr_per_cell(cells.X)
    rna = ad.AnnData(sp.csr_matrix((cells.n_obs, 1), dtype=np.float32), var=pd.DataFrame(index=["none"]),
                     obs=pd.DataFrame(index=cells.obs_names))  # protein only: RNA components are neutral
    m = md.MuData({"rna": rna, "prot": prot})
    graph = ad.AnnData(dsb[:, ~cells.var["isotype"].to_numpy()])
    sc.pp.pca(graph, n_comps=20, random_state=seed)
    sc.pp.neighbors(graph, n_neighbors=15, transformer="sklearn", random_state=seed)
    m.obsp["connectivities"] = graph.obsp["connectivities"]
    markers = load_markers(ROOT / "config/markers.yaml")
    out = {}
    for gate in gates:
        annotate(m, markers, protein_layer="dsb", gate_layer=None if gate is None else "dsb",
                 gate_min=gate if gate is not None else 6.0, gate_threshold="fixed", gate_lineages="all", seed=seed)
        out["no gate" if gate is None else f"gate dsb >= {gate:g}"] = m.obs["lineage"].astype(str).value_counts()
    return pd.DataFrame(out).fillna(0).astype(int)


def write_tables(out: Path, summary: pd.DataFrame, classes: list[pd.DataFrame], confusions: dict) -> pd.DataFrame:
    """Write ``summary.tsv``, ``per_class.tsv`` and one ``confusion_<name>.tsv`` per matrix to ``out`` (spaces in
    ``name`` become underscores)."""
    out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out / "summary.tsv", sep="\t", index=False)
    pd.concat(classes).to_csv(out / "per_class.tsv", sep="\t", index=False, float_format="%.3f")
    for name, c in confusions.items():
        c.to_csv(out / f"confusion_{name.replace(' ', '_')}.tsv", sep="\t")
    return summary


def seed_spread(path: Path, *, methods, cfg: dict, seeds, min_cells: int, out: Path) -> int:
    """pbmc10k's lineage macro-F1 with the defaults, once per seed (``seed`` of integration, clustering and
    annotation: totalVI's training, the approximate kNN search and Leiden are the seeded steps, so WNN's
    number moves too): how far one run's number is from another's, beside the bootstrap interval over the
    cells. Writes ``seed_spread.tsv`` under ``out``."""
    cols = ["method", "lineage_macro_f1", "lineage_macro_f1_ci_low", "lineage_macro_f1_ci_high",
            "lineage_macro_f1_coreceptor_adjudicated"]
    rows = [{"seed": seed, **{c: r[c] for c in cols}}
            for seed in seeds for r in score_pbmc10k(path, methods=methods, cfg=cfg, seed=seed, min_cells=min_cells,
                                                     variants=(({}, ""),))[0]]
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "seed_spread.tsv", sep="\t", index=False)
    print(table.to_string(index=False))
    print(table.groupby("method")["lineage_macro_f1"].agg(["mean", "min", "max"]).round(3))
    return 0


def main(argv=None) -> int:
    import yaml

    from sscsig.config import validate_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "annotation_real")
    ap.add_argument("--methods", nargs="+", default=["wnn", "totalvi"])
    ap.add_argument("--min-cells", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-reference-pairs", dest="reference_pairs", action="store_false",
                    help="skip the reference-mapping pairs (Kang 2018 <-> pbmc10k)")
    ap.add_argument("--seed-spread", type=int, nargs="+", metavar="SEED",
                    help="only pbmc10k with the defaults, once per seed (integration, clustering, annotation): "
                         "seed_spread.tsv")
    a = ap.parse_args(argv)
    path = a.shared / "pbmc10k_protein_v3_200cells_scvi.h5mu"
    if not path.exists():
        raise SystemExit(f"annotation_real: {path} not found (the shared real-data fixtures)")
    cfg = validate_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    if a.seed_spread:
        return seed_spread(path, methods=a.methods, cfg=cfg, seeds=a.seed_spread, min_cells=a.min_cells, out=a.out)
    rows, classes, confusions = score_pbmc10k(path, methods=a.methods, cfg=cfg, seed=a.seed,
                                             min_cells=a.min_cells)
    krows, kclasses, kconf = score_kang_markers(a.shared, cfg=cfg, seed=a.seed)
    rows, classes, confusions = rows + krows, classes + kclasses, confusions | kconf
    if a.reference_pairs:
        kang, pbmc = kang_reference(a.shared), pbmc10k_query(a.shared)
        for name, ref, query in (("kang->pbmc10k", kang, pbmc), ("pbmc10k->kang", pbmc, kang)):
            row, table, confusion = score_reference_mapping(ref, query, data=name, seed=a.seed)
            rows.append(row)
            classes.append(table)
            confusions[name.replace("->", "_to_")] = confusion
    a.out.mkdir(parents=True, exist_ok=True)
    gate = gate_on_real_dsb(a.shared, seed=a.seed)
    gate.to_csv(a.out / "gate_kotliarov2020_lineages.tsv", sep="\t")
    print("lineage gate on Kotliarov 2020 (cells per lineage)"), print(gate)
    summary = pd.DataFrame(rows)
    counts = [c for c in summary
              if c.startswith(("n_", "cells_", "of_those")) or c in ("missing_markers", "shared_genes")]
    summary[counts] = summary[counts].astype("Int64")  # counts stay integers where other rows lack them
    summary = write_tables(a.out, summary, classes, confusions)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.drop(columns=["classes_averaged"]))
        for name, c in confusions.items():
            if not name.endswith("_states"):
                print(name), print(c)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
