"""Annotation on cohorts from a second simulator, written apart from the demo twin (issue 16: "hidden
cohorts from another generator will be used to check this").

    python benchmarks/annotation_othersim.py OUTDIR [--seed 0] [--cells-per-donor 250] [--cores 2]
        [--variant default|shares|protein_half|batch_x2|panel_half]
        [--config EXTRA.yaml] [--ceiling] [--reference-seed N] [--score-only | --reannotate]

The twin (``sscsig.demo``) and the marker file were written together, so the twin flatters the
annotator. This generator shares only the state *names* with them (so that the calls can be scored)
and the I/O (``sscsig.demo.write_10x_h5``, the study's donor table ``sscsig.demo.study_design``);
everything else is modelled differently, from ``../shared/docs/reference-study.md`` and general
immunology rather than from ``config/markers.yaml``:

- **states overlap**: each cell of a state on a differentiation path (naive -> central -> effector
  memory -> CTL, CD56-bright -> dim NK, CD14 -> intermediate -> CD16 monocytes, naive -> memory B)
  takes a Beta(1, 4) share of a neighbouring state's expression and antibodies, and keeps its label;
- **RNA**: gene programmes with folds drawn per state (lineage genes x3-12, state genes x2-8, 30
  random background genes per state), gamma-Poisson with a dispersion drawn per gene, 4% ambient RNA,
  depth per lineage and per sample;
- **antibodies**: a brightness per antibody (x4-25 of its background), levels none / dim / positive /
  high per state, a stickiness per cell, batch factors per antibody; names as panels write them,
  several equal to gene symbols of the RNA (``CD4``, ``CD14``, ``CCR7``, ``KLRB1``, ``MS4A1``, ``IL7R``,
  ``CXCR3``, ``FAS``, ``SELL``), others with a ``_TotalSeqC`` suffix; three isotype controls;
- **cohort**: other state shares (Dirichlet per donor around them), 4 unequal batches drawn at random
  (not balanced by group), doublets 6% (of any two states), low-quality cells 4%; the EGR1 / NF-kB
  monocytes activated (HLA-DR high, CD14 down, CD16 dim; more of them in SRC donors), the type-II-IFN
  CD8 effector-memory cells more frequent in ILD donors.

The cohort is run through the pipeline up to ``cohort/annotated.h5mu`` with the default config
(totalVI 60 epochs, as the tests) plus ``--config``, and scored against the truth with
:func:`sscsig.annotate.annotation_vs_truth`: ``OUTDIR/summary.tsv``, and per run ``per_label.tsv`` and
``crosstab.tsv`` (true x called state of the true singlets) in ``OUTDIR/<run>/``.
``--variant`` draws one of the issue's robustness variants instead (:data:`VARIANTS`: state shares
x1/2-x2, antibody signal x0.5, batch effects x2, half the antibodies missing; its own run
``seed<N>_cells<M>_<variant>``), to be compared with the default cohort of the same seed.
``--ceiling`` adds the state macro-F1 a logistic regression taught by the *true* labels reaches on the
same features (``annotation_variants.supervised_ceiling``): what the data allow at best; and the best
CD14.EGR1 F1 such a classifier reaches on the counts of the module's genes and of all 12 genes of this
simulator's NF-kB programme (``annotation_variants.substate_ceiling``).

Each seed is its own biology (programmes, folds, antibody levels and brightness are drawn from it),
so two seeds are two independent cohorts for the marker path. ``--reference-seed N`` annotates with
``annotation.method: reference`` instead, the reference being a cohort of the *same* biology from
other donors, cells and batches (``OUTDIR/seedN_world<seed>_cells<M>/reference.h5mu``, its true
singlets and labels, written by ``annotation_variants.truth_reference``), as a user's labelled reference
of the same tissue would be. ``--reannotate`` annotates the integrated cohort again in memory with
``--config``'s settings (``OUTDIR/summary_reannotated.tsv``, one row per seed and config file).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from annotation_variants import VARIANTS as _TWIN_VARIANTS  # noqa: E402  (benchmarks/, beside this script)

LINEAGE_GENES = {
    "Mono": ["LYZ", "S100A8", "S100A9", "CST3", "FCN1", "CTSS", "TYROBP", "FCER1G", "LST1", "AIF1", "MNDA", "CD68",
             "CSF1R", "PSAP"],
    "DC": ["CST3", "HLA-DRA", "HLA-DPB1", "CD74", "FCER1G", "TYROBP", "PLD4", "IRF8", "HLA-DQB1"],
    "CD4_T": ["CD3D", "CD3E", "CD3G", "CD2", "IL7R", "LTB", "TRAC", "CD4", "CD5", "CD6", "LCK", "MAL"],
    "CD8_T": ["CD3D", "CD3E", "CD3G", "CD2", "TRAC", "CD8A", "CD8B", "LCK", "CD5"],
    "other_T": ["CD3D", "CD3E", "CD3G", "CD2", "LCK", "TRAC"],
    "NK": ["NKG7", "GNLY", "KLRD1", "KLRF1", "PRF1", "CD247", "FCER1G", "TYROBP", "CTSW", "GZMA", "CD7"],
    "B": ["MS4A1", "CD79A", "CD79B", "CD19", "BANK1", "CD74", "HLA-DRA", "CD22", "PAX5", "TNFRSF13C"],
}
ISG = ["ISG15", "IFI44L", "IFI44", "MX1", "HERC5", "IFIT1", "IFIT3", "RSAD2", "IFI6", "LY6E", "OAS1", "XAF1"]
NFKB = ["EGR1", "NFKBIA", "IER2", "SGK1", "CCR1", "IL1B", "FOS", "JUN", "DUSP1", "TNFAIP3", "CXCL8", "PPP1R15A"]
#: state -> (lineage, genes up); a substate also carries its parent's genes
STATES = {
    "CD14.Mono": ("Mono", ["S100A12", "VCAN", "CD14", "CSF3R", "SELL", "PLBD1", "RBP7"]),
    "CD14.EGR1": ("Mono", NFKB),
    "CD14.ISG": ("Mono", ISG),
    "Int.Mono": ("Mono", ["HLA-DRA", "HLA-DRB1", "HLA-DPA1", "HLA-DPB1", "CD74", "CPVL", "HLA-DMA"]),
    "CD16.Mono": ("Mono", ["FCGR3A", "CDKN1C", "LYPD2", "MS4A7", "HES4", "RHOC", "CX3CR1", "IFITM2"]),
    "CD16.ISG": ("Mono", ISG),
    "cDC2": ("DC", ["CD1C", "FCER1A", "CLEC10A", "ENHO", "PKIB", "HLA-DQA1"]),
    "pDC": ("DC", ["LILRA4", "CLEC4C", "IL3RA", "SERPINF1", "IRF7", "TCF4", "ITM2C", "JCHAIN"]),
    "CD4.Naive": ("CD4_T", ["CCR7", "LEF1", "TCF7", "SELL", "NOSIP", "PECAM1"]),
    "CD4.TCM": ("CD4_T", ["AQP3", "CD28", "ITGB1", "GPR183", "ANXA1", "TNFRSF4"]),
    "CD4.TEM": ("CD4_T", ["GZMK", "CCL5", "KLRB1", "GZMA", "S100A4", "CCR6"]),
    "Treg": ("CD4_T", ["FOXP3", "IL2RA", "CTLA4", "RTKN2", "IKZF2", "TIGIT"]),
    "CD8.Naive": ("CD8_T", ["CCR7", "LEF1", "TCF7", "SELL", "NELL2"]),
    "CD8.TCM": ("CD8_T", ["IL7R", "GATA3", "CD28", "GPR183", "LTB"]),
    "CD8.TEM": ("CD8_T", ["GZMK", "CMC1", "DUSP2", "EOMES", "GZMA"]),
    "CD8.TEM_T2ISG": ("CD8_T", ["GBP5", "CXCR3", "CCL5", "HLA-DRB1", "CD74", "STAT1", "GBP1", "IRF1", "GBP4", "GZMK"]),
    "CD8.CTL": ("CD8_T", ["GZMB", "GZMH", "PRF1", "GNLY", "NKG7", "FGFBP2", "CX3CR1"]),
    "MAIT": ("other_T", ["SLC4A10", "ZBTB16", "NCR3", "TRAV1-2", "KLRB1", "RORC", "IL18RAP"]),
    "gdT": ("other_T", ["TRDC", "TRGC1", "TRGC2", "KLRC1", "TRDV2", "TRGV9"]),
    "NK.bright": ("NK", ["XCL1", "XCL2", "GZMK", "SELL", "KLRC1", "NCAM1"]),
    "NK.dim": ("NK", ["FCGR3A", "GZMB", "FGFBP2", "SPON2", "CX3CR1"]),
    "B.Naive": ("B", ["IGHD", "TCL1A", "FCER2", "IGHM", "IL4R", "PLPP5"]),
    "B.Memory": ("B", ["CD27", "AIM2", "TNFRSF13B", "IGHA1", "IGHG1", "SSPN"]),
    "Plasmablast": ("B", ["JCHAIN", "MZB1", "XBP1", "TNFRSF17", "PRDM1", "IGHG1", "IGHA1", "TXNDC5"]),
}
PARENT = {"CD14.EGR1": "CD14.Mono", "CD14.ISG": "CD14.Mono", "CD16.ISG": "CD16.Mono"}
#: the states a cell may lean towards (a continuum), each way
NEIGHBOURS = {
    "CD4.Naive": ["CD4.TCM"], "CD4.TCM": ["CD4.Naive", "CD4.TEM"], "CD4.TEM": ["CD4.TCM"],
    "CD8.Naive": ["CD8.TCM"], "CD8.TCM": ["CD8.Naive", "CD8.TEM"], "CD8.TEM": ["CD8.TCM", "CD8.CTL"],
    "CD8.CTL": ["CD8.TEM"], "NK.bright": ["NK.dim"], "NK.dim": ["NK.bright"], "CD14.Mono": ["Int.Mono"],
    "Int.Mono": ["CD14.Mono", "CD16.Mono"], "CD16.Mono": ["Int.Mono"], "B.Naive": ["B.Memory"],
    "B.Memory": ["B.Naive"],
}
SHARE = {
    "CD14.Mono": 0.15, "CD14.EGR1": 0.012, "CD14.ISG": 0.01, "Int.Mono": 0.02, "CD16.Mono": 0.035, "CD16.ISG": 0.004,
    "cDC2": 0.008, "pDC": 0.005, "CD4.Naive": 0.14, "CD4.TCM": 0.10, "CD4.TEM": 0.04, "Treg": 0.02,
    "CD8.Naive": 0.06, "CD8.TCM": 0.02, "CD8.TEM": 0.03, "CD8.TEM_T2ISG": 0.012, "CD8.CTL": 0.05, "MAIT": 0.02,
    "gdT": 0.012, "NK.bright": 0.008, "NK.dim": 0.07, "B.Naive": 0.06, "B.Memory": 0.03, "Plasmablast": 0.004,
}
#: antibody target -> the name the panel writes (several equal to a gene symbol of the RNA)
PANEL = {
    "CD3": "CD3_TotalSeqC", "CD4": "CD4", "CD8": "CD8a_TotalSeqC", "CD14": "CD14", "CD16": "CD16_TotalSeqC",
    "CD56": "CD56_TotalSeqC", "CD19": "CD19_TotalSeqC", "CD20": "MS4A1", "CD45RA": "CD45RA_TotalSeqC",
    "CD45RO": "CD45RO_TotalSeqC", "CD197": "CCR7", "CD62L": "SELL", "CD25": "CD25_TotalSeqC", "CD127": "IL7R",
    "HLA-DR": "HLA-DR_TotalSeqC", "CD11c": "CD11c_TotalSeqC", "CD123": "CD123_TotalSeqC", "CD1c": "CD1c_TotalSeqC",
    "TCR_Va7.2": "TCR-Va7.2", "TCR_gd": "TCR-gamma-delta", "CD161": "KLRB1", "CD27": "CD27", "CD38": "CD38",
    "IgD": "IgD_TotalSeqC", "CD57": "CD57", "CD95": "FAS", "CD183": "CXCR3", "CD28": "CD28", "CD7": "CD7",
}
ISOTYPES = ["IgG1_isotype_ctrl", "IgG2a_isotype_ctrl", "IgG2b_isotype_ctrl"]
_T = {"CD3": 2, "CD7": 1, "CD28": 1, "CD27": 1}
#: state -> antibody levels (1 dim, 2 positive, 3 high; unlisted: none)
LEVELS = {
    "CD14.Mono": {"CD14": 3, "CD11c": 2, "HLA-DR": 1, "CD62L": 1, "CD45RO": 1},
    "CD14.EGR1": {"CD14": 2, "CD11c": 2, "HLA-DR": 3, "CD16": 1, "CD45RO": 1},
    "CD14.ISG": {"CD14": 3, "CD11c": 2, "HLA-DR": 1, "CD62L": 1, "CD45RO": 1},
    "Int.Mono": {"CD14": 2, "CD16": 1, "CD11c": 2, "HLA-DR": 3, "CD45RO": 1},
    "CD16.Mono": {"CD16": 3, "CD14": 1, "CD11c": 2, "HLA-DR": 2, "CD45RA": 1},
    "CD16.ISG": {"CD16": 3, "CD14": 1, "CD11c": 2, "HLA-DR": 2, "CD45RA": 1},
    "cDC2": {"CD1c": 3, "CD11c": 2, "HLA-DR": 3, "CD4": 1},
    "pDC": {"CD123": 3, "HLA-DR": 2, "CD4": 1, "CD45RA": 2},
    "CD4.Naive": {**_T, "CD4": 2, "CD45RA": 3, "CD197": 2, "CD62L": 2, "CD127": 1},
    "CD4.TCM": {**_T, "CD4": 2, "CD45RO": 2, "CD197": 1, "CD62L": 1, "CD127": 2, "CD95": 1},
    "CD4.TEM": {**_T, "CD4": 2, "CD45RO": 3, "CD127": 1, "CD95": 2, "CD161": 1},
    "Treg": {**_T, "CD4": 2, "CD45RO": 1, "CD25": 3, "CD95": 1},
    "CD8.Naive": {**_T, "CD8": 3, "CD45RA": 3, "CD197": 2, "CD62L": 2, "CD127": 1},
    "CD8.TCM": {**_T, "CD8": 3, "CD45RO": 2, "CD197": 1, "CD62L": 2, "CD127": 2, "CD95": 1},
    "CD8.TEM": {**_T, "CD8": 3, "CD45RO": 3, "CD95": 2, "CD127": 1},
    "CD8.TEM_T2ISG": {**_T, "CD8": 3, "CD45RO": 3, "CD95": 2, "HLA-DR": 2, "CD183": 3, "CD38": 1},
    "CD8.CTL": {"CD3": 2, "CD7": 1, "CD8": 3, "CD45RA": 2, "CD57": 3, "CD95": 2, "CD16": 1},
    "MAIT": {**_T, "CD8": 1, "TCR_Va7.2": 3, "CD161": 3, "CD45RO": 2, "CD127": 2, "CD95": 1},
    "gdT": {"CD3": 2, "CD7": 1, "TCR_gd": 3, "CD45RA": 1, "CD16": 1, "CD57": 1},
    "NK.bright": {"CD56": 3, "CD7": 2, "CD62L": 1, "CD127": 1, "CD45RA": 1},
    "NK.dim": {"CD56": 1, "CD16": 3, "CD7": 2, "CD57": 2, "CD45RA": 2},
    "B.Naive": {"CD19": 2, "CD20": 3, "IgD": 3, "HLA-DR": 2, "CD45RA": 2, "CD62L": 1},
    "B.Memory": {"CD19": 2, "CD20": 3, "CD27": 2, "HLA-DR": 2, "CD45RA": 1, "CD95": 1},
    "Plasmablast": {"CD19": 1, "CD27": 3, "CD38": 3, "HLA-DR": 1},
}
LINEAGE_UMIS = {"Mono": 5000, "DC": 6000, "CD4_T": 3000, "CD8_T": 3000, "other_T": 3200, "NK": 3500, "B": 3500}
LEVEL_WEIGHT = np.array([0.0, 0.3, 1.0, 2.2])
#: the issue's robustness variants, the twin's (``benchmarks/annotation_variants.py``, the same settings) but
#: drawn by this generator: state shares x1/2-x2 (per state, cohort-wide, log-uniform), the antibodies' signal
#: above background x0.5, the batch effects' log-factors x2, half the antibodies (not the isotypes) missing
#: from every sample's panel. Each change has its own random stream, so "default" is the cohort without them.
VARIANTS = {name: _TWIN_VARIANTS[name] for name in ("default", "shares", "protein_half", "batch_x2", "panel_half")}


class _Model:
    """The cohort-wide draws: genes, programmes, antibody brightness, batches."""

    def __init__(self, world: int, batch_seed: int | None = None, *, protein_scale: float = 1.0,
                 batch_scale: float = 1.0):
        rng = np.random.default_rng([world, 7])
        self.batch_scale = batch_scale
        named = sorted({g for gs in LINEAGE_GENES.values() for g in gs}
                       | {g for _, gs in STATES.values() for g in gs})
        mito = [f"MT-{g}" for g in ("ND1", "ND2", "CO1", "CO2", "ATP8", "ATP6", "CO3", "ND3", "ND4L", "ND4", "ND5",
                                    "ND6", "CYB")]
        ribo = [f"RP{k}{i}" for k in "LS" for i in range(3, 30)]
        filler = [f"GENEB{i:04d}" for i in range(1700)]
        self.genes = np.array(named + mito + ribo + filler)
        g = len(self.genes)
        self.index = {x: i for i, x in enumerate(self.genes)}
        base = np.exp(rng.normal(-1.0, 1.4, g))
        base[len(named):len(named) + len(mito)] = np.exp(rng.normal(2.2, 0.3, len(mito)))
        base[len(named) + len(mito):len(named) + len(mito) + len(ribo)] = np.exp(rng.normal(2.5, 0.4, len(ribo)))
        base[: len(named)] *= 0.2  # marker genes are low outside their cells
        self.mito = np.zeros(g, bool)
        self.mito[len(named):len(named) + len(mito)] = True
        self.dispersion = rng.uniform(1.5, 8.0, g)
        lin_fold = {lin: {x: rng.uniform(3, 12) for x in gs} for lin, gs in LINEAGE_GENES.items()}
        self.log_profile = {}
        fillers = np.arange(g - len(filler), g)
        for state, (lin, genes) in STATES.items():
            logp = np.log(base).copy()
            for x, f in lin_fold[lin].items():
                logp[self.index[x]] += np.log(f)
            chain = [PARENT[state], state] if state in PARENT else [state]
            for s in chain:
                for x in STATES[s][1]:
                    logp[self.index[x]] += np.log(rng.uniform(2, 8))
            bg = rng.choice(fillers, 30, replace=False)
            logp[bg] += rng.normal(0, 0.8, 30)
            self.log_profile[state] = logp
        self.targets = list(PANEL)
        a = len(self.targets)
        self.background = rng.uniform(3, 20, a)
        self.bright = self.background * rng.uniform(4, 25, a) * protein_scale  # the signal above background
        self.iso_background = rng.uniform(2, 8, len(ISOTYPES))
        self.levels = {s: np.array([LEVEL_WEIGHT[LEVELS[s].get(t, 0)] for t in self.targets]) for s in STATES}
        self.batches = ["run1", "run2", "run3", "run4"]
        self._batch_effects(rng, g, a)
        if batch_seed is not None and batch_seed != world:  # the same biology, other batches (a reference)
            self._batch_effects(np.random.default_rng([batch_seed, 8]), g, a)

    def _batch_effects(self, rng, g: int, a: int) -> None:
        """Per batch: gene factors, depth, antibody factors, antibody background (log-SDs x ``batch_scale``)."""
        k = self.batch_scale
        self.batch_gene = {b: np.exp(rng.normal(0, 0.3 * k, g)) for b in self.batches}
        self.batch_depth = {b: float(np.exp(rng.normal(0, 0.3 * k))) for b in self.batches}
        self.batch_prot = {b: np.exp(rng.normal(0, 0.25 * k, a)) for b in self.batches}
        self.batch_bg = {b: float(np.exp(rng.normal(0, 0.3 * k))) for b in self.batches}


def _composition(rng, donor: pd.Series, factors: np.ndarray | None = None) -> pd.Series:
    share = pd.Series(SHARE, dtype=float)
    if factors is not None:  # the shares variant: cohort-wide factors per state
        share *= factors
    if str(donor["group"]) == "SSc":
        if bool(donor["SRC"]):
            share["CD14.EGR1"] *= 4.0
        if bool(donor["ILD"]):
            share["CD8.TEM_T2ISG"] *= 4.0
    share *= np.exp(rng.normal(0, 0.3, len(share)))
    share /= share.sum()
    return pd.Series(rng.dirichlet(share.to_numpy() * 300), index=share.index)


def _cells(rng, model: _Model, states: np.ndarray, batch: str, sample_depth: float, gene_factor: np.ndarray):
    """RNA and antibody counts of cells of the given states, each leaning towards a neighbour."""
    n = len(states)
    logp = np.stack([model.log_profile[s] for s in states])
    levels = np.stack([model.levels[s] for s in states])
    for i, s in enumerate(states):
        if s in NEIGHBOURS:
            m = rng.beta(1, 4)
            other = NEIGHBOURS[s][rng.integers(len(NEIGHBOURS[s]))]
            logp[i] = (1 - m) * logp[i] + m * model.log_profile[other]
            levels[i] = (1 - m) * levels[i] + m * model.levels[other]
    p = np.exp(logp) * gene_factor[None, :]
    p /= p.sum(1, keepdims=True)
    soup = np.mean([np.exp(model.log_profile[s]) for s in STATES], axis=0)
    p = 0.96 * p + 0.04 * (soup / soup.sum())[None, :]
    umis = np.array([LINEAGE_UMIS[STATES[s][0]] * (4.0 if s == "Plasmablast" else 1.0) for s in states])
    size = umis * np.exp(rng.normal(0, 0.35, n)) * sample_depth * model.batch_depth[batch]
    mean = p * size[:, None]
    shape = model.dispersion[None, :]
    rna = rng.poisson(rng.gamma(shape, mean / shape))
    capture = np.exp(rng.normal(0, 0.4, n))[:, None]
    sticky = np.exp(rng.normal(0, 0.5, n))[:, None] * model.batch_bg[batch]
    pm = model.background[None, :] * sticky + model.bright[None, :] * levels * capture * model.batch_prot[batch]
    iso = model.iso_background[None, :] * sticky
    prot = rng.poisson(rng.gamma(5.0, np.hstack([pm, np.broadcast_to(iso, (n, len(ISOTYPES)))]) / 5.0))
    return rna, prot


def simulate(out: Path, *, seed: int = 0, cells_per_donor: int = 250, world: int | None = None,
             variant: str = "default") -> pd.DataFrame:
    """Simulate the cohort into ``out`` (10x h5 per sample, ``samples.tsv``, ``truth/cells.tsv``).

    ``world``: the seed of the biology (programmes, folds, antibody levels and brightness; ``seed`` when
    ``None``, so that each seed is its own biology); ``seed``: the donors, cells and, where it differs
    from ``world``, the batch effects (a reference of the same biology from other donors and batches);
    ``variant``: one of :data:`VARIANTS` (``default``: none)."""
    from sscsig.demo import study_design, write_10x_h5
    from sscsig.demo._simulate import _barcodes

    if variant not in VARIANTS:
        raise ValueError(f"othersim: variant {variant!r} is not one of {', '.join(VARIANTS)}")
    change = VARIANTS[variant]
    model = _Model(seed if world is None else world, batch_seed=seed, protein_scale=change.get("protein_scale", 1.0),
                   batch_scale=change.get("batch_scale", 1.0))
    factors = None
    if "share_jitter" in change:
        j = np.log(change["share_jitter"])
        factors = np.exp(np.random.default_rng([seed, 20_000]).uniform(-j, j, len(SHARE)))
    keep = np.ones(len(model.targets) + len(ISOTYPES), bool)  # the panel variant: antibodies no sample has
    if change.get("drop_antibodies"):
        n_drop = int(round(change["drop_antibodies"] * len(model.targets)))
        keep[np.random.default_rng([seed, 30_000]).choice(len(model.targets), n_drop, replace=False)] = False
        gone = [t for t, k in zip(model.targets, keep) if not k]
        print("panel variant: antibodies missing", sorted(gone), flush=True)
    rng0 = np.random.default_rng([seed, 11])
    donors = study_design()
    donors["batch"] = rng0.choice(model.batches, len(donors), p=[0.37, 0.30, 0.22, 0.11])
    gene_ids = np.array([f"ENSGB{i:08d}" for i in range(len(model.genes))])
    names = [PANEL[t] for t in model.targets] + ISOTYPES
    ids = np.concatenate([gene_ids, np.array(names)])  # 10x: an antibody's id is its name
    feat_names = np.concatenate([model.genes, np.array(names)])
    types = np.array(["Gene Expression"] * len(model.genes) + ["Antibody Capture"] * len(names))
    columns = np.r_[np.ones(len(model.genes), bool), keep]
    ids, feat_names, types = ids[columns], feat_names[columns], types[columns]
    truths = []
    state_names = np.array(list(STATES))
    for i, donor in donors.iterrows():
        rng = np.random.default_rng([seed, 100 + i])
        comp = _composition(rng, donor, factors)
        n = int(round(cells_per_donor * rng.uniform(0.8, 1.2)))
        states = rng.choice(state_names, n, p=comp.to_numpy())
        batch = donor["batch"]
        gene_factor = model.batch_gene[batch] * np.exp(rng.normal(0, 0.1, len(model.genes)))
        depth = float(np.exp(rng.normal(0, 0.3)))
        rna, prot = _cells(rng, model, states, batch, depth, gene_factor)
        low = rng.random(n) < 0.04
        lq = np.flatnonzero(low)
        rna[lq] = rng.binomial(rna[lq], 0.15)
        rna[np.ix_(lq, np.flatnonzero(model.mito))] *= rng.integers(5, 12, (len(lq), 1))
        prot[lq] = rng.binomial(prot[lq], 0.4)
        dbl = np.zeros(n, bool)
        dbl[rng.choice(np.flatnonzero(~low), int(round(0.06 * n)), replace=False)] = True
        idx = np.flatnonzero(dbl)
        r2, p2 = _cells(rng, model, rng.choice(state_names, len(idx), p=comp.to_numpy()), batch, depth, gene_factor)
        rna[idx] += r2
        prot[idx] += p2
        bc = _barcodes(rng, n)
        write_10x_h5(out / donor["sample"] / "filtered_feature_bc_matrix.h5",
                     sp.csr_matrix(np.hstack([rna, prot[:, keep]]).astype(np.int32)), bc, ids, feat_names, types)
        truths.append(pd.DataFrame({"sample": donor["sample"], "barcode": bc,
                                    "lineage": [STATES[s][0] for s in states], "cell_state": states,
                                    "is_doublet": dbl, "is_low_quality": low}))
        print(f"simulated {donor['sample']} ({batch}): {n} cells", flush=True)
    sheet = donors.copy()
    sheet["path"] = [f"{s}/filtered_feature_bc_matrix.h5" for s in sheet["sample"]]
    (out / "truth").mkdir(parents=True, exist_ok=True)
    pd.concat(truths, ignore_index=True).to_csv(out / "truth" / "cells.tsv", sep="\t", index=False)
    sheet.to_csv(out / "samples.tsv", sep="\t", index=False)
    return sheet


def _crosstab(obs: pd.DataFrame, truth_tsv: Path) -> pd.DataFrame:
    """True state (rows) x called state (columns) of the true singlets among the annotated cells ``obs``."""
    from sscsig.io import read_cell_table

    t = read_cell_table(truth_tsv).loc[obs.index]
    good = (~t["is_doublet"].astype(bool) & ~t["is_low_quality"].astype(bool)).to_numpy()
    return pd.crosstab(pd.Series(t["cell_state"].to_numpy()[good], name="true"),
                       pd.Series(obs["cell_state"].astype(str).to_numpy()[good], name="called"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cells-per-donor", type=int, default=250)
    ap.add_argument("--variant", choices=list(VARIANTS), default="default",
                    help="the issue's robustness variants drawn by this generator (shares, signal, batches, panel)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--config", type=Path, help="extra config file (e.g. annotation settings to compare)")
    ap.add_argument("--ceiling", action="store_true", help="also the state F1 a classifier taught by the truth reaches")
    ap.add_argument("--reference-seed", type=int,
                    help="annotate with method: reference from this generator's cohort of another seed (true labels)")
    ap.add_argument("--score-only", action="store_true", help="score the annotated cohort already in OUTDIR")
    ap.add_argument("--reannotate", action="store_true",
                    help="annotate the integrated cohort again in memory with --config's settings (markers)")
    args = ap.parse_args(argv)
    import mudata as md
    from annotation_variants import (reannotate_variant, run_to_annotated, score_variant, substate_ceiling,
                                     supervised_ceiling, truth_reference)

    out = args.out.resolve()
    cohort = f"seed{args.seed}_cells{args.cells_per_donor}" + ("" if args.variant == "default" else f"_{args.variant}")
    if args.variant != "default" and args.reference_seed is not None:
        raise SystemExit("--variant and --reference-seed: the reference path is scored on the default cohorts only")
    name = cohort + (f"_reference{args.reference_seed}" if args.reference_seed is not None else "")
    data, results = out / cohort / "data", out / name / "results"
    t0 = time.time()
    if args.reannotate:
        row = reannotate_variant(name, out, extra_config=args.config)
    else:
        if not args.score_only:
            if not (data / "samples.tsv").exists():
                simulate(data, seed=args.seed, cells_per_donor=args.cells_per_donor, variant=args.variant)
            extra = ""
            (out / name).mkdir(parents=True, exist_ok=True)
            if args.reference_seed is not None:
                ref_data = out / f"seed{args.reference_seed}_world{args.seed}_cells{args.cells_per_donor}" / "data"
                ref = ref_data.parent / "reference.h5mu"
                if not ref.exists():
                    if not (ref_data / "samples.tsv").exists():
                        simulate(ref_data, seed=args.reference_seed, cells_per_donor=args.cells_per_donor,
                                 world=args.seed)
                    truth_reference(ref_data, ref)
                extra = f"annotation:\n  method: reference\n  reference:\n    path: {ref}\n"
                if not (out / name / "data").exists():
                    (out / name / "data").symlink_to(data)
            run_to_annotated(data, results, out / name / "config.yaml", cores=args.cores, extra_config=args.config,
                             config_text=extra, label=f"othersim {name}")
        obs = md.read_h5mu(results / "cohort/annotated.h5mu", backed="r").obs
        row = score_variant(name, out, obs=obs)
        _crosstab(obs, data / "truth/cells.tsv").to_csv(out / name / "crosstab.tsv", sep="\t")
        if args.ceiling:
            row.update(supervised_ceiling(results / "cohort/annotated.h5mu", data / "truth/cells.tsv",
                                          ROOT / "config/markers.yaml"))
            ceilings = substate_ceiling(results / "cohort/annotated.h5mu", data / "truth/cells.tsv",
                                        ROOT / "config/markers.yaml", substate="CD14.EGR1",
                                        gene_sets={"module": None, "programme": NFKB})  # the marker file's / ours
            row.update({f"ceiling_f1_CD14.EGR1_{key}_genes": f1 for key, f1 in ceilings.items()})
    row.update({"seed": args.seed, "othersim_variant": args.variant, "config": args.config.name if args.config else "",
                "minutes": round((time.time() - t0) / 60, 1)})
    path = out / ("summary_reannotated.tsv" if args.reannotate else "summary.tsv")
    table = pd.DataFrame([row])
    if path.exists():
        old = pd.read_csv(path, sep="\t", keep_default_na=False)
        old["config"] = old["config"] if "config" in old else ""
        same = (old["variant"] == name) & (old["config"].astype(str) == row["config"])
        if args.score_only and same.any():  # the pipeline's minutes, not the scoring's
            table["minutes"] = old.loc[same, "minutes"].iloc[-1]
        table = pd.concat([old[~same], table], ignore_index=True)
    table.to_csv(path, sep="\t", index=False)
    print(table.T.to_string(header=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
