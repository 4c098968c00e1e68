"""Annotation robustness on variants of the demo twin (issue 16): does the default annotation hold when
the cohort differs from the one the marker file was tuned on?

    python benchmarks/annotation_variants.py OUTDIR [--cells-per-donor 150] [--variants NAME ...]
        [--seed 0] [--cores 2] [--config EXTRA.yaml] [--with-raw] [--ceiling | --ceiling-only] [--reference-seed N]
        [--reference-cells-per-donor M] [--score-only | --reannotate | --states-taken-out STATE ...]

Each variant is simulated with ``sscsig.demo.DemoParams`` (seed 0 unless ``--seed``, 27 donors), run through the
pipeline up to ``cohort/annotated.h5mu`` (QC, merge, integrate, annotate with the default config;
totalVI with 60 epochs, as the tests, unless ``--config`` says otherwise) and scored against the
simulator's truth with :func:`sscsig.annotate.annotation_vs_truth`. ``--with-raw`` simulates the
empty droplets too (DSB), e.g. to score ``annotation.gate_layer: dsb`` given with ``--config``. Variants:

- ``default``: the twin as shipped (the baseline the others are compared with);
- ``shares``: every state's base share x a cohort-wide factor in [0.5, 2] (log-uniform);
- ``protein_half``: the antibodies' specific signal x 0.5;
- ``batch_x2``: the batches' log-factors (genes, depth, antibodies, ambient) x 2;
- ``panel_half``: half of the 35 antibodies missing from every sample;
- ``no_B``: no donor has B cells (a rituximab-treated cohort): share of cells called B;
- ``sorted_CD8``: only CD8 T cells: share of cells called CD8_T;
- ``study``: the reference study's 41 fine states (``states="study"``, 5 more antibodies), annotated
  with ``config/markers_study.yaml`` (compare with ``default``'s 23 states only loosely: more, rarer
  and closer states);
- ``egr1_activated``: another biology for the EGR1/NF-kB monocytes: HLA-DR high, CD14 intermediate,
  CD16 low (activated), so that the protein-defined state step calls many of them Int.Mono (as a
  cohort from another simulator did, issue 16).

Writes ``OUTDIR/summary.tsv`` (one row per variant) and ``OUTDIR/<variant>/per_label.tsv``; with a
reference annotation also the calibration of its probabilities (``ece_lineage``, ``ece_cell_state``: expected
calibration error of the called cells, :func:`sscsig.annotate.confidence_calibration`). ``--score-only``
re-scores the variants already run in OUTDIR; ``--reannotate`` annotates their integrated cohorts again
with the current config (and ``--config``), in memory, and scores that (``summary_reannotated.tsv``): for
comparing annotation settings without re-running QC and integration.

``--states-taken-out STATE ...`` takes each state's true cells out of the ``default`` variant's
integrated cohort in turn (in memory) and annotates the rest as ``--reannotate`` does: how many cells
are still called that state, with what confidence, and whether those calls stand out from their
lineage (:func:`sscsig.annotate.state_separation`; ``OUTDIR/states_taken_out.tsv``; docs/annotation.md
"States the cohort lacks").

``--reference-seed N`` annotates every variant with ``annotation.method: reference`` instead (plus
whatever ``--config`` says, e.g. ``method: both``): the reference is another twin cohort, simulated with
the default parameters and seed ``N`` (other donors, other cells; the default panel and proportions),
its true singlets with their true labels written as a user would give one
(``OUTDIR/reference_seed<N>_cells<M>/reference.h5mu``: RNA and antibody counts, ``cell_state``, ``lineage``,
``batch``). So each variant is a cohort that differs from its reference the way a user's cohort
differs from a published atlas: other proportions, weaker antibodies, stronger batches, a smaller panel,
a lineage the reference has and the cohort lacks. ``--reference-cells-per-donor M`` simulates the
reference at another size than the cohorts (default: the same; a published reference is usually far
larger than one cohort).

``--ceiling`` adds what the variant's data allow at best, whatever the annotator: the state macro-F1
of a logistic regression trained on the simulator's *true* labels (5-fold cross-validated within
each true lineage; features: that lineage's marker genes and every antibody all cells have, the
features ``annotation.refine`` uses for its states), over all labels and over the base states (substates folded into their
state). ``--ceiling-only`` computes it for variants already run in OUTDIR without running anything
(``OUTDIR/ceiling.tsv``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "default": {},
    "shares": {"share_jitter": 2.0},
    "protein_half": {"protein_scale": 0.5},
    "batch_x2": {"batch_scale": 2.0},
    "panel_half": {"drop_antibodies": 0.5},
    "no_B": {"absent_lineages": ("B",)},
    "sorted_CD8": {"only_lineages": ("CD8_T",)},
    "egr1_activated": {"state_protein": (("CD14.EGR1", (("HLA-DR", 3), ("CD14", 2), ("CD16", 1))),)},
    "study": {"states": "study"},
}
#: config a variant needs besides the default (its own marker file)
VARIANT_CONFIG = {"study": "annotation:\n  markers: config/markers_study.yaml\n"}


def twin_reference(out: Path, *, seed: int, cells_per_donor: int) -> Path:
    """A labelled reference from a default twin cohort of another seed: its true singlets with their true labels."""
    from sscsig.demo import DemoParams, simulate_cohort

    path = out / f"reference_seed{seed}_cells{cells_per_donor}" / "reference.h5mu"
    if path.exists():
        return path
    simulate_cohort(path.parent / "data", DemoParams(seed=seed, cells_per_donor=cells_per_donor))
    return truth_reference(path.parent / "data", path)


def truth_reference(data: Path, path: Path) -> Path:
    """A simulated cohort (``data``: ``samples.tsv``, the samples' h5 files, ``truth/cells.tsv``) written as
    a user's labelled reference: its true singlets with ``cell_state``, ``lineage`` and ``batch``."""
    import anndata as ad
    import mudata as md

    from sscsig.io import read_cell_table, read_sample

    sheet = pd.read_csv(data / "samples.tsv", sep="\t")
    truth = read_cell_table(data / "truth/cells.tsv")
    rnas, prots = [], []
    for _, row in sheet.iterrows():
        m = read_sample(data / row["path"], sample=row["sample"])
        t = truth.reindex(m.obs_names)
        keep = (t["cell_state"].notna() & ~t["is_doublet"].fillna(True).astype(bool)
                & ~t["is_low_quality"].fillna(True).astype(bool)).to_numpy()
        rna, prot = m["rna"][keep].copy(), m["prot"][keep].copy()
        rna.obs = pd.DataFrame({"cell_state": t["cell_state"].to_numpy()[keep], "lineage": t["lineage"].to_numpy()[keep],
                                "batch": str(row["batch"])}, index=rna.obs_names)
        rnas.append(rna)
        prots.append(prot)
    mdata = md.MuData({"rna": ad.concat(rnas), "prot": ad.concat(prots, merge="same")})
    mdata.obs = mdata["rna"].obs.copy()
    tmp = path.with_suffix(".tmp.h5mu")
    mdata.write_h5mu(tmp)
    tmp.rename(path)
    print(f"reference: {path} ({mdata.n_obs} cells, {mdata['prot'].n_vars} antibodies)", flush=True)
    return path


def run_to_annotated(data: Path, results: Path, cfg: Path, *, cores: int, extra_config: Path | None = None,
                     config_text: str = "", label: str) -> None:
    """The pipeline on the simulated cohort ``data`` up to ``results/cohort/annotated.h5mu``: the default config,
    totalVI with 60 epochs (as the tests), then ``config_text`` (written with them to ``cfg``), then
    ``extra_config``. A failed run stops with the end of Snakemake's stderr, ``label`` naming the run."""
    cfg.write_text(f"samples: {data / 'samples.tsv'}\noutdir: {results}\n"
                   "integration:\n  totalvi:\n    max_epochs: 60\n" + config_text)
    configs = [str(cfg)] + ([str(extra_config)] if extra_config else [])
    proc = subprocess.run([sys.executable, "-m", "snakemake", f"{results}/cohort/annotated.h5mu", "--cores",
                           str(cores), "--configfile", "config/config.yaml", *configs, "-q"],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{label}: the pipeline failed:\n{proc.stderr[-3000:]}")


def run_variant(name: str, out: Path, *, cells_per_donor: int, cores: int, extra_config: Path | None,
                with_raw: bool = False, reference: Path | None = None, seed: int = 0) -> dict:
    from sscsig.demo import DemoParams, simulate_cohort

    data, results = out / name / "data", out / name / "results"
    simulate_cohort(data, DemoParams(seed=seed, cells_per_donor=cells_per_donor, with_raw=with_raw, **VARIANTS[name]))
    t0 = time.time()
    run_to_annotated(data, results, out / name / "config.yaml", cores=cores, extra_config=extra_config,
                     config_text=VARIANT_CONFIG.get(name, "")
                     + (f"annotation:\n  method: reference\n  reference:\n    path: {reference}\n" if reference else ""),
                     label=f"variant {name}")
    return {**score_variant(name, out), "seed": seed, "minutes": round((time.time() - t0) / 60, 1)}


def reannotate_variant(name: str, out: Path, *, extra_config: Path | None = None) -> dict:
    """A variant already run: its integrated cohort annotated in memory by the marker file, with the
    annotation settings the annotate rule would pass (``config/config.yaml``, the variant's own config,
    then ``extra_config``; ``method: markers``), and scored like :func:`score_variant` (its
    ``per_label.tsv`` is ``per_label_reannotated.tsv``). For comparing annotation settings without
    re-running QC and integration; the pipeline's own ``annotated.h5mu`` is left as it is."""
    from sscsig.io import read_h5mu

    mdata = read_h5mu(out / name / "results/cohort/integrated.h5mu")
    _annotate_as_the_rule_would(mdata, name, extra_config=extra_config)
    return score_variant(name, out, obs=mdata.obs, suffix="_reannotated")


def _annotate_as_the_rule_would(mdata, name: str, *, extra_config: Path | None = None) -> dict:
    """``mdata`` annotated in place by the marker file with the annotate rule's settings for variant
    ``name`` (``config/config.yaml``, the variant's own config, then ``extra_config``); the marker file."""
    import yaml

    from sscsig.annotate import annotate, load_markers, marker_options
    from sscsig.config import validate_config
    from sscsig.design import design_columns

    cfg = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    for extra in (VARIANT_CONFIG.get(name), extra_config.read_text() if extra_config else None):
        for key, val in (yaml.safe_load(extra or "") or {}).get("annotation", {}).items():
            cfg["annotation"][key] = val
    cfg = validate_config(cfg)
    markers = load_markers(ROOT / cfg["annotation"]["markers"])
    annotate(mdata, markers, seed=cfg.get("seed", 0),
             **marker_options(cfg["annotation"], design_columns=design_columns(cfg["contrasts"], cfg["complications"])))
    return markers


def states_taken_out(out: Path, states: list[str], *, extra_config: Path | None = None) -> pd.DataFrame:
    """The ``default`` variant's integrated cohort without each state's true cells in turn, annotated
    again: per state, its true cells, its calls and their median confidence and antibody separation
    with all cells (``with``) and without its own (``without``)."""
    import numpy as np

    from sscsig.annotate import state_separation
    from sscsig.io import read_cell_table, read_h5mu

    full = read_h5mu(out / "default/results/cohort/integrated.h5mu")
    truth = read_cell_table(out / "default/data/truth/cells.tsv").loc[full.obs_names, "cell_state"].astype(str).to_numpy()

    def judged(keep):
        m = full[keep].copy()
        markers = _annotate_as_the_rule_would(m, "default", extra_config=extra_config)
        return state_separation(m, markers).set_index("state")

    base, rows = judged(np.ones(len(truth), bool)), []
    for state in states:
        without = judged(truth != state)
        rows.append({"state": state, "true_cells": int((truth == state).sum()),
                     **{f"{k}_{tag}": t.loc[state, col] for tag, t in (("with", base), ("without", without))
                        for k, col in (("calls", "cells"), ("median_confidence", "median_confidence"),
                                       ("separation", "max_antibody_separation"), ("stands_out", "stands_out"))}})
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "states_taken_out.tsv", sep="\t", index=False)
    return table


def score_variant(name: str, out: Path, *, obs: pd.DataFrame | None = None, suffix: str = "") -> dict:
    """A variant's annotated cohort against its truth (``OUTDIR/<variant>/per_label<suffix>.tsv``
    written); with a reference annotation also the calibration of its probabilities (ECE of the called
    cells' lineage and state probabilities, :func:`sscsig.annotate.confidence_calibration`). ``obs``:
    the calls to score instead of those of ``results/cohort/annotated.h5mu``."""
    import mudata as md

    from sscsig.annotate import annotation_vs_truth

    if obs is None:
        obs = md.read_h5mu(out / name / "results/cohort/annotated.h5mu", backed="r").obs
    summary, table = annotation_vs_truth(obs, out / name / "data/truth/cells.tsv",
                                         calibration="mapping_novelty" in obs)  # reference: probabilities
    table.to_csv(out / name / f"per_label{suffix}.tsv", sep="\t", index=False, float_format="%.3f")
    lineage = obs["lineage"].astype(str)
    return {"variant": name, **{k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()},
            "share_called_B": round(float((lineage == "B").mean()), 4),
            "share_called_CD8_T": round(float((lineage == "CD8_T").mean()), 4),
            "share_unassigned": round(float((obs["cell_state"].astype(str) == "Unassigned").mean()), 4)}


def _base_states(markers: dict) -> dict[str, str]:
    """Each state and substate of a marker file -> its base state."""
    return {label: name for states in markers["states"].values() for name, comp in states.items()
            for label in (name, *(comp.get("substates") or {}))}


def supervised_ceiling(h5mu: Path, truth_tsv: Path, markers_yaml: Path, *, c: float = 0.03, folds: int = 5,
                       seed: int = 0) -> dict:
    """State macro-F1 of a classifier trained on the true labels (see the module docstring)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from sscsig.annotate import load_markers
    from sscsig.annotate._markers import _marker_genes  # the genes annotation.refine uses per lineage
    from sscsig.io import read_cell_table, read_h5mu

    mdata = read_h5mu(h5mu, skip=("mod/rna/layers/counts",))
    truth = read_cell_table(truth_tsv)
    t = truth.loc[mdata.obs_names]
    good = (~t.is_doublet & ~t.is_low_quality).to_numpy()
    markers = load_markers(markers_yaml)
    base = _base_states(markers)
    rna, prot = mdata["rna"], mdata["prot"]
    x = rna.X[good]
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    p = prot.layers["clr"][good]
    p = np.asarray(p.toarray() if hasattr(p, "toarray") else p, dtype=np.float64)
    p = p[:, ~np.isnan(p).any(0)]
    lineage, state = t["lineage"].to_numpy()[good], t["cell_state"].to_numpy()[good].astype(object)
    out = {}
    for key, y in (("all", state), ("base", np.array([base.get(s, s) for s in state], dtype=object))):
        pred = y.copy()
        for lin in np.unique(lineage):
            rows = lineage == lin
            counts = pd.Series(y[rows]).value_counts()
            if len(counts) < 2 or lin not in markers["states"]:
                continue
            f = np.hstack([x[rows][:, np.isin(rna.var_names, sorted(_marker_genes(markers, lineage=lin)))], p[rows]])
            sd = f.std(0)
            f = (f - f.mean(0)) / np.where(sd > 1e-9, sd, 1.0)
            cv = StratifiedKFold(n_splits=min(folds, int(counts.min())) if counts.min() >= 2 else 2, shuffle=True,
                                 random_state=seed)
            pred[rows] = cross_val_predict(LogisticRegression(C=c, max_iter=2000), f, y[rows], cv=cv)
        out[f"ceiling_state_f1_{key}"] = round(float(f1_score(y.astype(str), pred.astype(str), average="macro")), 3)
    return out


def substate_ceiling(h5mu: Path, truth_tsv: Path, markers_yaml: Path, *, substate: str = "CD14.EGR1",
                     gene_sets: dict[str, list[str] | None] | None = None, folds: int = 5,
                     seed: int = 0) -> dict[str, float]:
    """Best F1 with which a classifier taught by the true labels tells one substate from the rest of its
    true lineage on given genes' counts: what a call from those genes can reach at best.

    The true singlets of the substate's lineage; per entry of ``gene_sets`` (name -> genes, ``None``: the
    substate's ``rna_pos`` in the marker file; default ``{"module": None}``) features the log-normalised
    raw counts (per 10,000) of those genes in the data; a logistic regression (scikit-learn's default
    C = 1), out-of-fold probabilities (``folds``-fold stratified, shuffled with ``seed``), and the best F1
    over thresholds. Returns name -> F1 (NaN with fewer than ``folds`` true cells). The cohort is read once.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_curve
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from sscsig.annotate import load_markers
    from sscsig.annotate._markers import _labels  # (lineage/state/substate, components) of a marker file
    from sscsig.io import read_cell_table, read_h5mu

    gene_sets = gene_sets or {"module": None}
    lineage, comp = next((path.split("/")[0], comp) for path, comp in _labels(load_markers(markers_yaml))
                         if path.count("/") == 2 and path.rsplit("/", 1)[1] == substate)
    mdata = read_h5mu(h5mu)
    t = read_cell_table(truth_tsv).loc[mdata.obs_names]
    rows = (~t.is_doublet & ~t.is_low_quality & (t["lineage"] == lineage)).to_numpy()
    y = (t["cell_state"].to_numpy()[rows] == substate).astype(int)
    if y.sum() < folds:
        return {name: float("nan") for name in gene_sets}
    rna = mdata["rna"]
    counts = (rna.layers["counts"] if "counts" in rna.layers else rna.X)[rows]
    counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    depth = np.maximum(counts.sum(1, keepdims=True), 1)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = {}
    for name, genes in gene_sets.items():
        cols = [rna.var_names.get_loc(g) for g in (genes or comp.get("rna_pos") or []) if g in rna.var_names]
        x = np.log1p(counts[:, cols] / depth * 1e4)
        prob = cross_val_predict(LogisticRegression(max_iter=2000), x, y, cv=cv, method="predict_proba")[:, 1]
        precision, recall, _ = precision_recall_curve(y, prob)
        out[name] = round(float(np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12))), 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--cells-per-donor", type=int, default=150)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seed", type=int, default=0,
                    help="the cohorts' simulation seed (0: the cohort the marker files were written on; others: "
                         "other donors and cells, so the same variants scored out of sample)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config", type=Path, help="extra config file (e.g. annotation settings to compare)")
    ap.add_argument("--with-raw", action="store_true", help="simulate raw droplets too, so that DSB runs")
    ap.add_argument("--ceiling", action="store_true", help="also the state F1 a classifier trained on the truth reaches")
    ap.add_argument("--ceiling-only", action="store_true", help="only that, for variants already run in OUTDIR")
    ap.add_argument("--reference-seed", type=int, help="annotate from a reference: a default twin of this seed")
    ap.add_argument("--reference-cells-per-donor", type=int, help="the reference's size (default: --cells-per-donor)")
    ap.add_argument("--score-only", action="store_true",
                    help="re-score the variants already run in OUTDIR (summary.tsv rewritten, their minutes kept)")
    ap.add_argument("--reannotate", action="store_true",
                    help="annotate the integrated cohorts already in OUTDIR again with the current config (+ --config) "
                         "and score them (summary_reannotated.tsv)")
    ap.add_argument("--states-taken-out", nargs="+", metavar="STATE",
                    help="the default variant's cohort without each state's true cells in turn, annotated again "
                         "(states_taken_out.tsv)")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.states_taken_out:
        states_taken_out(a.out, a.states_taken_out, extra_config=a.config)
        return 0
    if a.reannotate:
        rows = [reannotate_variant(name, a.out, extra_config=a.config) for name in a.variants
                if (a.out / name / "results/cohort/integrated.h5mu").exists()]
        _write_summary(rows, a.out, "summary_reannotated.tsv")
        return 0
    if a.score_only:
        old = (pd.read_csv(a.out / "summary.tsv", sep="\t").set_index("variant")
               if (a.out / "summary.tsv").exists() else pd.DataFrame())
        rows = [{**score_variant(name, a.out), **({"minutes": old.loc[name, "minutes"]} if name in old.index else {})}
                for name in a.variants if (a.out / name / "results/cohort/annotated.h5mu").exists()]
        _write_summary(rows, a.out)
        return 0
    if a.reference_seed is not None and "study" in a.variants:  # the reference is a core (23-state) twin
        print("--reference-seed: the study variant (41 states) is left out", flush=True)
        a.variants = [v for v in a.variants if v != "study"]
    reference = (twin_reference(a.out.resolve(), seed=a.reference_seed,
                                cells_per_donor=a.reference_cells_per_donor or a.cells_per_donor)
                 if a.reference_seed is not None else None)
    if a.ceiling or a.ceiling_only:
        def ceiling(name):
            markers = ROOT / ("config/markers_study.yaml" if name == "study" else "config/markers.yaml")
            return supervised_ceiling(a.out / name / "results/cohort/annotated.h5mu",
                                      a.out / name / "data/truth/cells.tsv", markers)
    if a.ceiling_only:
        rows = [{"variant": name, **ceiling(name)} for name in a.variants
                if (a.out / name / "results/cohort/annotated.h5mu").exists()]
        pd.DataFrame(rows).to_csv(a.out / "ceiling.tsv", sep="\t", index=False)
        print(pd.DataFrame(rows).to_string(index=False))
        return 0
    rows = []
    for name in a.variants:
        rows.append(run_variant(name, a.out.resolve(), cells_per_donor=a.cells_per_donor, cores=a.cores,
                                extra_config=a.config.resolve() if a.config else None, with_raw=a.with_raw,
                                reference=reference, seed=a.seed))
        if a.ceiling:
            rows[-1].update(ceiling(name))
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
        pd.DataFrame(rows).to_csv(a.out / "summary.tsv", sep="\t", index=False)
    _write_summary(rows, a.out)
    return 0


def _write_summary(rows: list[dict], out: Path, name: str = "summary.tsv") -> None:
    base = next((r for r in rows if r["variant"] == "default"), None)
    if base:
        for r in rows:
            r["state_f1_minus_default"] = round(r["state_macro_f1"] - base["state_macro_f1"], 3)
    pd.DataFrame(rows).to_csv(out / name, sep="\t", index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(pd.DataFrame(rows))


if __name__ == "__main__":
    raise SystemExit(main())
