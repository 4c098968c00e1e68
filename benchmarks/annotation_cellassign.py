"""Why the marker path scores its own markers: CellAssign (scvi-tools) on the same genes, on real RNA
(run by hand; issue 16).

    python benchmarks/annotation_cellassign.py [--shared ../shared/data] [--out benchmarks/annotation_cellassign]
        [--epochs 400] [--seed 0]

The brief asks for maintained libraries before hand-written code. The maintained tool that does what
the marker path does (a cell type from a list of marker genes, no labelled reference) is CellAssign
(Zhang et al. 2019; ``scvi.external.CellAssign``): a negative-binomial mixture over the marker genes'
raw counts with size factors, a Dirichlet prior on the type proportions, learned by gradient descent.
This script gives both the *same* knowledge, the lineage ``rna_pos`` genes of ``config/markers.yaml``
that the data hold, on the real RNA data in ``../shared/data``:

- Kang 2018 (1,556 PBMCs, 1,267 genes, 5 labelled types; RNA only, so both methods read the same
  molecules): the marker path as ``annotation_real.score_kang_markers`` runs it (its row
  ``markers (RNA only)``, called there), CellAssign on the counts (DC and other_T have none of their
  genes here and are left out of both).
- pbmc10k (200 cells, SingleR's main labels): CellAssign on the RNA; the marker path on the RNA alone
  (the antibodies left out, so both read the same molecules: ``annotation_real.rna_only_mudata``,
  as for Kang), and, for reference, with the antibodies as the pipeline runs it
  (``annotation_real.py``'s rows).

Scores: lineage macro-F1 over the reference's labels (Kang's five types as lineages; SingleR's labels
with >= 10 cells), per-class F1, the confusion matrix. CellAssign's call is its most probable type
(``predict()``); its seed is ``scvi.settings.seed``. Writes ``summary.tsv``, ``per_class.tsv`` and
``confusion_*.tsv`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def marker_matrix(markers: dict, genes) -> pd.DataFrame:
    """Genes x lineages, 1 where a gene is one of the lineage's ``rna_pos`` markers (only genes in
    ``genes``; lineages with none are left out)."""
    present = set(genes)
    lins = {n: [g for g in c.get("rna_pos") or [] if g in present] for n, c in markers["lineages"].items()}
    lins = {n: g for n, g in lins.items() if g}
    index = pd.Index(sorted({g for v in lins.values() for g in v}))
    mat = pd.DataFrame(0, index=index, columns=list(lins))
    for n, gs in lins.items():
        mat.loc[gs, n] = 1
    return mat


def cellassign_calls(counts, genes, markers: dict, *, epochs: int, seed: int) -> np.ndarray:
    """CellAssign's most probable lineage per cell, from raw ``counts`` (cells x ``genes``)."""
    import anndata as ad
    import scvi
    from scvi.external import CellAssign

    mat = marker_matrix(markers, genes)
    a = ad.AnnData(counts, var=pd.DataFrame(index=pd.Index(list(genes))))
    lib = np.asarray(a.X.sum(1)).ravel()
    a.obs["size_factor"] = lib / lib.mean()  # CellAssign's documented approximation of scran's size factors
    b = a[:, mat.index].copy()
    scvi.settings.seed = seed
    CellAssign.setup_anndata(b, size_factor_key="size_factor")
    model = CellAssign(b, mat)
    model.train(max_epochs=epochs, accelerator="cpu", enable_progress_bar=False)
    return model.predict().idxmax(axis=1).to_numpy()


#: the summary's columns (``annotation_real``'s rows carry more)
COLUMNS = ["data", "method", "n_cells", "lineage_macro_f1", "lineage_macro_f1_ci_low", "lineage_macro_f1_ci_high",
           "lineage_accuracy", "classes_averaged"]


def _row(data: str, method: str, pred, truth, labels, seed: int, *, reference=None):
    """The summary row, per-class table and confusion (called x ``reference``, default ``truth``) of
    lineage calls ``pred`` against ``truth``, macro-F1 over ``labels``."""
    from annotation_real import _interval

    from sscsig.annotate import annotation_f1

    table, overall = annotation_f1(pred, truth)
    big = table[table.label.isin(labels)]
    row = {"data": data, "method": method, "n_cells": len(truth), "lineage_macro_f1": round(float(big.f1.mean()), 3),
           **_interval(pred, truth, big.label, seed), "lineage_accuracy": round(overall["accuracy"], 3),
           "classes_averaged": ",".join(big.label)}
    conf = pd.crosstab(pd.Series(pred, name="called"),
                       pd.Series(truth if reference is None else reference, name="reference"))
    return row, table.assign(data=data, method=method), conf


def kang(shared: Path, markers: dict, *, epochs: int, seed: int, cfg: dict):
    """CellAssign on Kang 2018 (DC and other_T have none of their genes here: :func:`marker_matrix` leaves
    them out) and the marker path's row as ``annotation_real.score_kang_markers`` computes it."""
    import anndata as ad
    from annotation_real import KANG_TO_LINEAGE, score_kang_markers

    k = ad.read_h5ad(shared / "kang2018_ifnb_muscat_example_sce.h5ad")
    types = k.obs["cluster_id"].astype(str).to_numpy()
    truth = k.obs["cluster_id"].map(KANG_TO_LINEAGE).astype(str).to_numpy()
    out = [_row("kang2018", "CellAssign (marker file's lineage genes)",
                cellassign_calls(k.layers["counts"], k.var_names, markers, epochs=epochs, seed=seed), truth,
                set(KANG_TO_LINEAGE.values()), seed, reference=types)]
    (row,), (table,), confusions = score_kang_markers(shared, cfg=cfg, seed=seed, variants=(({}, ""),))
    out.append(({c: row[c] for c in COLUMNS}, table, confusions["kang2018_markers"]))
    return out


def pbmc10k(shared: Path, markers: dict, *, epochs: int, seed: int, cfg: dict, min_cells: int = 10):
    import anndata as ad
    import h5py
    from annotation_real import LINEAGE_TO_SINGLER, _annotation_options, rna_only_mudata

    from sscsig.annotate import annotate
    from sscsig.io import read_sample

    path = shared / "pbmc10k_protein_v3_200cells_scvi.h5mu"
    with h5py.File(path, "r") as f:
        obs = ad.io.read_elem(f["obs"])
    rna = read_sample(path, sample="pbmc10k")["rna"]
    labelled = obs["celltype_main_singler"].notna().to_numpy()
    truth = obs["celltype_main_singler"].astype(str).to_numpy()[labelled]
    labels = set(pd.Series(truth).value_counts().loc[lambda s: s >= min_cells].index)

    def as_singler(lin):
        return np.array([LINEAGE_TO_SINGLER.get(x, x) for x in lin], dtype=object)[labelled]

    out = [_row("pbmc10k_200", "CellAssign (marker file's lineage genes, RNA)",
                as_singler(cellassign_calls(rna.X, rna.var_names, markers, epochs=epochs, seed=seed)), truth, labels, seed)]
    m = rna_only_mudata(rna.X, rna.var_names, rna.obs_names, seed=seed)
    annotate(m, markers, **_annotation_options(cfg), seed=seed)
    out.append(_row("pbmc10k_200", "markers (RNA only)", as_singler(m.obs["lineage"].astype(str).to_numpy()),
                    truth, labels, seed))
    return out


def main(argv=None) -> int:
    import yaml

    from sscsig.annotate import load_markers
    from sscsig.config import validate_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "annotation_cellassign")
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    cfg = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    markers = load_markers(ROOT / cfg["annotation"]["markers"])
    results = (kang(a.shared, markers, epochs=a.epochs, seed=a.seed, cfg=cfg)
               + pbmc10k(a.shared, markers, epochs=a.epochs, seed=a.seed, cfg=cfg))
    a.out.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame([r for r, _, _ in results])
    summary.to_csv(a.out / "summary.tsv", sep="\t", index=False)
    pd.concat([t for _, t, _ in results]).to_csv(a.out / "per_class.tsv", sep="\t", index=False, float_format="%.3f")
    for row, _, conf in results:
        name = f"{row['data']}_{row['method'].split(' (')[0].lower()}"
        conf.to_csv(a.out / f"confusion_{name}.tsv", sep="\t")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(summary.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
