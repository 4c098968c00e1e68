"""Demo-cohort generator: a digital twin of the reference study's design with planted truth.

Writes one Cell Ranger-layout ``filtered_feature_bc_matrix.h5`` per sample (RNA "Gene Expression" +
"Antibody Capture" features), a sample sheet that follows the input contract, and the truth tables
``truth/cells.tsv`` and ``truth/effects.tsv``. Everything is drawn from one seeded generator per
donor, so the same seed gives the same bytes.

Model, per donor ``d``:

* composition: ``p_d,s ~ base_s * LogNormal(0, donor_sd)`` (normalised; CV ~30% for every state); then within-lineage shares are modified by
  age (CD8.Naive falls with age, as in human blood) and by the planted effects (CD14.EGR1 within
  monocytes multiplied by ``effect_src`` in SRC donors, CD8.TEM_T2ISG within CD8 T by ``effect_ild``
  in ILD donors), keeping lineage totals fixed;
* RNA: gamma-Poisson (negative binomial) counts around a per-state profile built from a real PBMC
  background (10x pbmc10k) and marker programs, with batch- and donor-level gene factors;
* protein: negative-binomial counts of ambient background (scaled per cell by a "stickiness" that
  the isotype controls share, as DSB assumes) plus specific binding at the state's level;
* low-quality cells (few UMIs, high mitochondrial share) and heterotypic doublets (sum of two cells
  from different lineages) are injected and flagged in the truth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import _states as S
from ..io import atomic_path

log = logging.getLogger(__name__)

AGES_SSC = [67, 56, 82, 72, 64, 60, 80, 58, 47, 76, 81, 57, 46, 61, 50, 62, 77, 67, 53, 74, 73]
AGES_HD = [64, 62, 70, 67, 59, 84]
# SSc is ~80% female; a fixed pattern keeps the design deterministic
SEX_SSC = list("FFMFFFFMFFFFFMFFFFMFF")
SEX_HD = list("FMFFMF")
BATCHES = ["B1", "B2", "B3"]
LEVEL_COUNTS = np.array([0.0, 40.0, 160.0, 600.0])
AGE_SLOPE_CD8_NAIVE = -0.03  # log within-CD8 share per year of age
#: the longitudinal donor's extra samples: (sample suffix, timepoint, days from baseline, fold of its
#: CD14.EGR1 share of monocytes); its baseline sample (onset of SRC) has the cohort's effect_src
LONGITUDINAL_DONOR = "SSc01"
LONGITUDINAL_SAMPLES = [("pre", "pre_onset", -120, 2.0), ("post", "post_treatment", 90, 1.0)]


@dataclass(frozen=True)
class DemoParams:
    """Parameters of a demo cohort (see :func:`simulate_cohort`)."""

    seed: int = 0
    cells_per_donor: int = 800
    effect_src: float = 3.0
    effect_ild: float = 3.0
    null: bool = False
    src_oldest: bool = False
    doublet_rate: float = 0.05
    low_quality_rate: float = 0.05
    with_raw: bool = False  # also write raw_feature_bc_matrix.h5 with empty droplets (for DSB)
    empty_per_cell: float = 3.0
    donor_sd: float = 0.3
    stress_in: str = ""  # a complication: its donors' samples get handling stress in every monocyte
    stress_fold: float = 6.0  # fold of the stress genes (immediate-early, heat shock) in those monocytes
    longitudinal: bool = False  # one SRC donor also sampled before onset and after treatment
    with_tissue: bool = False  # kidney biopsies of the SRC donors, lung samples of ILD / non-ILD donors
    tissue_cells: int = 600  # cells per tissue sample
    # robustness variants of the twin (benchmarks/annotation_variants.py); the defaults change nothing
    share_jitter: float = 1.0  # each state's base share x a cohort-wide factor in [1/j, j] (log-uniform, seeded)
    protein_scale: float = 1.0  # the antibodies' specific signal x this (ambient background unchanged)
    batch_scale: float = 1.0  # the batches' log-factors (genes, depth, antibodies, ambient) x this
    absent_lineages: tuple = ()  # lineages no donor has (("B",): a B-cell-depleted cohort)
    only_lineages: tuple = ()  # sorted cells: only these lineages (("CD8_T",))
    drop_antibodies: float = 0.0  # share of the antibodies (not isotypes) missing from every sample's panel
    # per state, protein levels (0-3) that replace the twin's (another biology: {"CD14.EGR1": {"HLA-DR": 3}})
    state_protein: tuple = ()  # ((state, ((antibody, level), ...)), ...): hashable, like the other fields
    states: str = "core"  # the state catalogue: core (23 states) or study (the study's 41 fine states, 40 antibodies)

    def __post_init__(self):
        S.catalogue(self.states)  # an unknown name fails here
        if self.states != "core" and self.with_tissue:
            raise ValueError("demo: with_tissue needs states: core (the tissue twin is built on the core states)")

    @property
    def catalogue(self) -> S.Catalogue:
        """The state catalogue :attr:`states` names (:func:`sscsig.demo._states.catalogue`)."""
        return S.catalogue(self.states)

    @classmethod
    def from_config(cls, demo: dict, *, seed: int) -> "DemoParams":
        """The parameters of config ``demo`` (``null_cohort`` is :attr:`null`)."""
        return cls(seed=seed, cells_per_donor=demo["cells_per_donor"], effect_src=demo["effect_src"],
                   effect_ild=demo["effect_ild"], null=demo["null_cohort"], src_oldest=demo["src_oldest"],
                   with_raw=demo["with_raw"], stress_in=demo["stress_in"], stress_fold=demo["stress_fold"],
                   longitudinal=demo["longitudinal"], with_tissue=demo["with_tissue"],
                   tissue_cells=demo["tissue_cells"], states=demo["states"])


def study_design(*, src_oldest: bool = False, longitudinal: bool = False) -> pd.DataFrame:
    """The reference study's donors: 21 SSc (4 SRC, 2 of them with ILD; 10 ILD only; 7 neither), 6 HD.

    Parameters
    ----------
    src_oldest
        Confounded variant: give the four SRC donors the four highest SSc ages (the other SSc donors
        keep the remaining ages in order), so that an age-driven state would look SRC-driven in a
        model without age.
    longitudinal
        Add two samples of the SRC donor SSc01 (before SRC onset and after treatment, the study's
        followed patient; :data:`LONGITUDINAL_SAMPLES`) at the end, and ``timepoint`` / ``time``
        (days from baseline) columns; every other sample is ``baseline``.

    Returns
    -------
    One row per sample with ``sample, donor, batch, group, age, sex, SRC, ILD`` (and ``timepoint``,
    ``time``).
    """
    rows = []
    ages = list(AGES_SSC)
    if src_oldest:
        order = sorted(range(len(ages)), key=lambda i: -ages[i])
        oldest = [ages[i] for i in order[:4]]
        rest = [ages[i] for i in sorted(order[4:])]
        ages = oldest + rest
    for i in range(21):
        src = i < 4
        ild = i in (0, 1) or 4 <= i < 14
        rows.append(("SSc", f"SSc{i + 1:02d}", ages[i], SEX_SSC[i], src, ild))
    for i in range(6):
        rows.append(("HD", f"HD{i + 1:02d}", AGES_HD[i], SEX_HD[i], False, False))
    df = pd.DataFrame(rows, columns=["group", "donor", "age", "sex", "SRC", "ILD"])
    df.insert(0, "sample", df["donor"] + "_PBMC")
    df.insert(2, "batch", [BATCHES[i % 3] for i in range(len(df))])
    if longitudinal:
        df["timepoint"], df["time"] = "baseline", 0
        base = df[df["donor"] == LONGITUDINAL_DONOR].iloc[0]
        extra = [base.to_dict() | {"sample": f"{LONGITUDINAL_DONOR}_{suffix}", "timepoint": tp, "time": days}
                 for suffix, tp, days, _ in LONGITUDINAL_SAMPLES]
        df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True)
    return df


def _gene_table(extra: list[str] = ()) -> pd.DataFrame:
    """The gene universe, with ``extra`` genes (a catalogue's, absent from pbmc10k's top genes) appended
    at a low mean (their background is the floor every program gene has outside its program)."""
    path = resources.files("sscsig") / "data" / "genes_pbmc10k.tsv"
    with resources.as_file(path) as p:
        genes = pd.read_csv(p, sep="\t")
    if len(extra):
        n = len(genes)
        genes = pd.concat([genes, pd.DataFrame({"symbol": list(extra),
                                                "ensembl_like_id": [f"SIMG{n + i:06d}" for i in range(len(extra))],
                                                "mean_umi": 0.02})], ignore_index=True)
    return genes


def _state_profiles(genes: pd.DataFrame, cat: S.Catalogue | None = None) -> dict[str, np.ndarray]:
    """Per-state expected share of UMIs over the gene universe."""
    sym = genes["symbol"].to_numpy()
    index = {g: i for i, g in enumerate(sym)}
    base = genes["mean_umi"].to_numpy(dtype=float).copy()
    cat = cat or S.catalogue()
    prog = [index[g] for g in cat.program_genes()]
    # marker genes sit low outside their programs
    background = base.copy()
    background[prog] = np.maximum(base[prog] * 0.05, 0.01)
    profiles = {}
    for state, lineage in cat.state_lineage.items():
        mu = background.copy()
        fold: dict[str, float] = dict(S.LINEAGE_PROGRAM[lineage])
        for g, f in cat.state_program[state].items():
            fold[g] = max(fold.get(g, 1.0), f)
        for g, f in fold.items():
            mu[index[g]] = background[index[g]] * f
        profiles[state] = mu / mu.sum()
    return profiles


def _state_protein_levels(overrides: tuple = (), cat: S.Catalogue | None = None) -> dict[str, np.ndarray]:
    cat = cat or S.catalogue()
    extra = {state: dict(levels) for state, levels in overrides}
    unknown = set(extra) - set(cat.state_lineage)
    if unknown:
        raise ValueError(f"state_protein: unknown states {sorted(unknown)}")
    out = {}
    for state, lineage in cat.state_lineage.items():
        lv = dict(S.LINEAGE_PROTEIN[lineage])
        lv.update(cat.state_protein[state])
        lv.update(extra.get(state, {}))
        out[state] = np.array([lv.get(p, 0) for p in cat.proteins], dtype=int)
    return out


def share_factors(params: DemoParams) -> np.ndarray:
    """Cohort-wide factors of the states' base shares (all 1 by default): ``share_jitter``
    (log-uniform in [1/j, j], its own seeded stream), 0 for ``absent_lineages`` and for lineages
    outside ``only_lineages``."""
    lin = params.catalogue.state_lineage
    states = list(lin)
    f = np.ones(len(states))
    if params.share_jitter != 1.0:
        j = np.log(params.share_jitter)
        f = np.exp(np.random.default_rng([params.seed, 20_000]).uniform(-j, j, len(states)))
    lineage = np.array([lin[s] for s in states])
    f[np.isin(lineage, list(params.absent_lineages))] = 0.0
    if params.only_lineages:
        f[~np.isin(lineage, list(params.only_lineages))] = 0.0
    if not f.any():
        raise ValueError("demo: the variant leaves no cell state")
    return f


def donor_composition(
    rng: np.random.Generator, donor: pd.Series, params: DemoParams, *, src_fold: float | None = None
) -> pd.Series:
    """Share of each state in one donor's PBMCs, with age and planted effects applied
    (``src_fold``: this sample's CD14.EGR1 fold instead of ``params.effect_src``)."""
    cat = params.catalogue
    states = list(cat.state_lineage)
    base = np.array([cat.base_share[s] for s in states]) * share_factors(params)
    base = base / base.sum()
    # donor-to-donor variation: log-normal around the base share, the same CV for every state
    share = base * np.exp(rng.normal(0.0, params.donor_sd, len(states)))
    p = pd.Series(share / share.sum(), index=states)

    def scale_within_parent(state: str, factor: float) -> None:
        members = [s for s in states if cat.state_lineage[s] == cat.state_lineage[state]]
        total = p[members].sum()
        if total == 0:  # a lineage the variant removed
            return
        share = p[members] / total
        share[state] *= factor
        p[members] = share / share.sum() * total

    scale_within_parent("CD8.Naive", float(np.exp(AGE_SLOPE_CD8_NAIVE * (donor["age"] - 65))))
    if not params.null:
        if donor["SRC"]:
            scale_within_parent("CD14.EGR1", params.effect_src if src_fold is None else src_fold)
        if donor["ILD"]:
            scale_within_parent("CD8.TEM_T2ISG", params.effect_ild)
    return p


def simulate_state_counts(params: DemoParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Donor x state cell counts of the demo cohort without expression (the composition part only).

    The same draws as :func:`simulate_donor` makes for its cells' states, so the counts equal the
    truth of :func:`simulate_cohort` with the same parameters (before QC). Cheap enough for
    calibration and power studies over hundreds of seeds. Returns (counts, sample sheet).
    """
    donors = study_design(src_oldest=params.src_oldest)
    rows = {}
    for i, donor in donors.iterrows():
        rng = np.random.default_rng([params.seed, i])
        comp = donor_composition(rng, donor, params)
        n = int(round(params.cells_per_donor * rng.uniform(0.85, 1.15)))
        states = rng.choice(np.array(list(comp.index)), size=n, p=comp.to_numpy())
        rows[donor["donor"]] = pd.Series(states).value_counts().reindex(list(comp.index), fill_value=0)
    return pd.DataFrame(rows).T.astype(int), donors


def planted_effects(params: DemoParams) -> pd.DataFrame:
    """The truth table of planted effects (fold change of the within-parent share; for handling
    stress, the fold of the stress genes in the monocytes of the stressed donors' samples)."""
    rows = [
        ("SRC", "CD14.EGR1", "Mono", 1.0 if params.null else params.effect_src),
        ("ILD", "CD8.TEM_T2ISG", "CD8_T", 1.0 if params.null else params.effect_ild),
        ("age", "CD8.Naive", "CD8_T", float(np.exp(AGE_SLOPE_CD8_NAIVE * 10))),
    ]
    if params.stress_in:
        rows.append((f"stress in {params.stress_in} donors' samples", "monocytes (stress genes)", "Mono",
                     params.stress_fold))
    return pd.DataFrame(rows, columns=["complication", "cell_state", "parent", "planted_fold_change"])


class _CohortModel:
    """Shared, seed-derived parts of the cohort: batch factors, ambient protein, profiles."""

    def __init__(self, params: DemoParams):
        rng = np.random.default_rng([params.seed, 10_000])
        self.cat = params.catalogue
        self.genes = _gene_table(self.cat.extra_genes)
        self.profiles = _state_profiles(self.genes, self.cat)
        self.prot_levels = _state_protein_levels(params.state_protein, self.cat)
        n_genes = len(self.genes)
        n_prot = len(self.cat.proteins)
        self.dispersion = np.exp(rng.normal(np.log(4.0), 0.4, n_genes))
        k = params.batch_scale  # 1.0 by default: the same numbers as without the factor
        self.batch_gene = {b: np.exp(k * rng.normal(0, 0.25, n_genes)) for b in BATCHES}
        self.batch_depth = {b: float(np.exp(k * rng.normal(0, 0.15))) for b in BATCHES}
        self.ambient = np.exp(rng.normal(np.log(8.0), 0.5, n_prot))
        self.isotype_ambient = np.exp(rng.normal(np.log(4.0), 0.3, len(S.ISOTYPES)))
        self.batch_prot = {b: np.exp(k * rng.normal(0, 0.2, n_prot)) for b in BATCHES}
        self.batch_ambient = {b: float(np.exp(k * rng.normal(0, 0.3))) for b in BATCHES}
        self.protein_scale = params.protein_scale
        self.mito = self.genes["symbol"].str.startswith("MT-").to_numpy()
        self.stress_genes = np.flatnonzero(self.genes["symbol"].isin(S.STRESS_GENES).to_numpy())


def _rna_counts(
    rng: np.random.Generator,
    model: _CohortModel,
    states: np.ndarray,
    size: np.ndarray,
    gene_factor: np.ndarray,
    low_quality: np.ndarray,
    stress_fold: float = 1.0,
) -> np.ndarray:
    mean = np.empty((len(states), len(model.genes)), dtype=np.float64)
    for state in np.unique(states):
        rows = states == state
        mean[rows] = model.profiles[state][None, :] * gene_factor[None, :]
    if stress_fold != 1.0:  # handling stress: the stress genes up in every monocyte, whatever its state
        mono = np.array([model.cat.state_lineage[s] == "Mono" for s in states])
        mean[np.ix_(mono, model.stress_genes)] *= stress_fold
    mean /= mean.sum(1, keepdims=True)
    if low_quality.any():
        lq = np.flatnonzero(low_quality)
        boost = rng.uniform(6, 14, len(lq))
        mean[np.ix_(lq, np.flatnonzero(model.mito))] *= boost[:, None]
        mean[lq] /= mean[lq].sum(1, keepdims=True)
    mean *= size[:, None]
    shape = model.dispersion[None, :]
    lam = rng.gamma(shape, mean / shape)
    return rng.poisson(lam).astype(np.int32)


def _protein_counts(
    rng: np.random.Generator, model: _CohortModel, states: np.ndarray, batch: str
) -> np.ndarray:
    n = len(states)
    levels = np.stack([model.prot_levels[s] for s in states])
    capture = np.exp(rng.normal(0, 0.3, n))[:, None]
    sticky = np.exp(rng.normal(0, 0.35, n))[:, None] * model.batch_ambient[batch]
    specific = LEVEL_COUNTS[levels] * capture * model.batch_prot[batch][None, :]
    if model.protein_scale != 1.0:
        specific = specific * model.protein_scale
    mean = model.ambient[None, :] * sticky + specific
    iso_mean = model.isotype_ambient[None, :] * sticky
    mean = np.hstack([mean, np.broadcast_to(iso_mean, (n, len(S.ISOTYPES)))])
    shape = 8.0
    return rng.poisson(rng.gamma(shape, mean / shape)).astype(np.int32)


def simulate_donor(
    model: _CohortModel, donor: pd.Series, donor_index: int, params: DemoParams, *,
    stream: int | None = None, src_fold: float | None = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix, pd.DataFrame]:
    """Counts of one donor's library: RNA (cells x genes), protein (cells x ADT), truth per cell.

    ``stream``: another sample of the same donor: the same donor-level composition draws, its own
    generator ``[seed, donor_index, stream]`` for everything after them (``src_fold`` its CD14.EGR1
    fold)."""
    rng = np.random.default_rng([params.seed, donor_index])
    comp = donor_composition(rng, donor, params, src_fold=src_fold)
    if stream is not None:
        rng = np.random.default_rng([params.seed, donor_index, stream])
    n = int(round(params.cells_per_donor * rng.uniform(0.85, 1.15)))
    n_dbl = int(round(n * params.doublet_rate))
    states_all = np.array(list(comp.index))
    states = rng.choice(states_all, size=n, p=comp.to_numpy())
    lin = model.cat.state_lineage
    lineage = np.array([lin[s] for s in states])
    low_quality = rng.random(n) < params.low_quality_rate
    doublet = np.zeros(n, bool)
    if n_dbl:
        doublet[rng.choice(np.flatnonzero(~low_quality), n_dbl, replace=False)] = True
    batch = donor["batch"]
    gene_factor = model.batch_gene[batch] * np.exp(rng.normal(0, 0.1, len(model.genes)))
    umis = np.array([S.LINEAGE_UMIS[x] for x in lineage])
    size = umis * np.exp(rng.normal(0, 0.3, n)) * model.batch_depth[batch]
    size[low_quality] *= rng.uniform(0.05, 0.3, low_quality.sum())
    stressed = bool(params.stress_in) and bool(donor.get(params.stress_in, False))
    rna = _rna_counts(rng, model, states, size, gene_factor, low_quality,
                      stress_fold=params.stress_fold if stressed else 1.0)
    prot = _protein_counts(rng, model, states, batch)
    prot[low_quality] = rng.binomial(prot[low_quality], 0.5)
    # heterotypic doublets: add a second cell of another lineage
    idx = np.flatnonzero(doublet)
    if len(idx):
        partner = []
        for i in idx:
            choices = states_all[[lin[s] != lineage[i] for s in states_all]]
            w = comp[choices].to_numpy()
            if w.sum() == 0:  # sorted cells of one lineage: the doublet is homotypic
                choices, w = states_all, comp.to_numpy()
            partner.append(rng.choice(choices, p=w / w.sum()))
        partner = np.array(partner)
        p_umis = np.array([S.LINEAGE_UMIS[lin[s]] for s in partner])
        p_size = p_umis * np.exp(rng.normal(0, 0.3, len(idx))) * model.batch_depth[batch]
        rna[idx] += _rna_counts(rng, model, partner, p_size, gene_factor, np.zeros(len(idx), bool))
        prot[idx] += _protein_counts(rng, model, partner, batch)
    barcodes = _barcodes(rng, n)
    truth = pd.DataFrame(
        {
            "sample": donor["sample"],
            "barcode": barcodes,
            "lineage": lineage,
            "cell_state": states,
            "is_doublet": doublet,
            "is_low_quality": low_quality,
        }
    )
    return sp.csr_matrix(rna), sp.csr_matrix(prot), truth


def simulate_empty_droplets(
    model: _CohortModel, donor: pd.Series, donor_index: int, params: DemoParams, n_cells: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Empty droplets of a donor's library: ambient RNA (tens of UMIs) and ambient protein only.

    Drawn from their own generator so that the cells are the same with and without them.
    """
    rng = np.random.default_rng([params.seed, donor_index, 1])
    n = int(round(params.empty_per_cell * n_cells))
    batch = donor["batch"]
    soup = np.mean([model.profiles[s] for s in model.cat.state_lineage], axis=0)
    soup = soup / soup.sum()
    size = np.exp(rng.normal(np.log(40.0), 0.5, n))
    rna = rng.poisson(soup[None, :] * size[:, None]).astype(np.int32)
    sticky = np.exp(rng.normal(np.log(0.5), 0.35, n))[:, None] * model.batch_ambient[batch]
    mean = np.hstack([model.ambient[None, :] * sticky, model.isotype_ambient[None, :] * sticky])
    prot = rng.poisson(rng.gamma(8.0, mean / 8.0)).astype(np.int32)
    return sp.csr_matrix(rna), sp.csr_matrix(prot)


def _barcodes(rng: np.random.Generator, n: int) -> np.ndarray:
    letters = np.array(list("ACGT"))
    seen: set[str] = set()
    out = []
    while len(out) < n:
        bc = "".join(letters[rng.integers(0, 4, 16)]) + "-1"
        if bc not in seen:
            seen.add(bc)
            out.append(bc)
    return np.array(out)


def write_10x_h5(
    path: str | Path,
    counts: sp.spmatrix,
    barcodes: np.ndarray,
    feature_ids: np.ndarray,
    feature_names: np.ndarray,
    feature_types: np.ndarray,
    *,
    genome: str = "GRCh38",
) -> None:
    """Write a cells x features count matrix in Cell Ranger v3 ``filtered_feature_bc_matrix.h5`` layout."""
    csc = sp.csr_matrix(counts).T.tocsc()  # features x barcodes, stored column-compressed
    csc.sort_indices()

    def enc(a) -> np.ndarray:
        return np.array([str(x).encode() for x in a])

    opts = {"track_times": False, "compression": "gzip", "compression_opts": 4}
    with atomic_path(path) as tmp, h5py.File(tmp, "w", track_order=False) as f:
        m = f.create_group("matrix")
        m.create_dataset("barcodes", data=enc(barcodes), **opts)
        m.create_dataset("data", data=csc.data.astype(np.int32), **opts)
        m.create_dataset("indices", data=csc.indices.astype(np.int64), **opts)
        m.create_dataset("indptr", data=csc.indptr.astype(np.int64), **opts)
        m.create_dataset("shape", data=np.array(csc.shape, dtype=np.int32), **opts)
        feats = m.create_group("features")
        feats.create_dataset("_all_tag_keys", data=enc(["genome"]), **opts)
        feats.create_dataset("feature_type", data=enc(feature_types), **opts)
        feats.create_dataset("genome", data=enc([genome] * len(feature_ids)), **opts)
        feats.create_dataset("id", data=enc(feature_ids), **opts)
        feats.create_dataset("name", data=enc(feature_names), **opts)
        f.attrs["filetype"] = "matrix"
        f.attrs["version"] = 2


def sample_path(out_dir: str | Path, sample: str, *, raw: bool = False) -> Path:
    """Where the simulator writes a sample's Cell Ranger h5 (filtered, or raw with empty droplets)."""
    return Path(out_dir) / sample / ("raw_feature_bc_matrix.h5" if raw else "filtered_feature_bc_matrix.h5")


def simulate_cohort(out_dir: str | Path, params: DemoParams = DemoParams()) -> pd.DataFrame:
    """Simulate the demo cohort into ``out_dir``.

    Writes ``<out_dir>/<sample>/filtered_feature_bc_matrix.h5``, ``<out_dir>/samples.tsv`` (paths
    relative to the sheet), ``<out_dir>/truth/cells.tsv`` and ``<out_dir>/truth/effects.tsv``; with
    ``params.with_raw`` also ``<out_dir>/<sample>/raw_feature_bc_matrix.h5`` (cells + empty
    droplets) and a ``raw_path`` column in the sheet.

    Returns
    -------
    The sample sheet.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = _CohortModel(params)
    donors = study_design(src_oldest=params.src_oldest, longitudinal=params.longitudinal)
    first = {d: i for i, d in reversed(list(enumerate(donors["donor"])))}  # a donor's first row
    folds = {f"{LONGITUDINAL_DONOR}_{suffix}": fold for suffix, _, _, fold in LONGITUDINAL_SAMPLES}
    genes, proteins = model.genes, list(model.cat.proteins)
    feature_ids = np.concatenate(
        [genes["ensembl_like_id"].to_numpy(), np.array(proteins + S.ISOTYPES)]
    )
    feature_names = np.concatenate([genes["symbol"].to_numpy(), np.array(proteins + S.ISOTYPES)])
    n_prot = len(proteins) + len(S.ISOTYPES)
    feature_types = np.array(["Gene Expression"] * len(genes) + ["Antibody Capture"] * n_prot)
    keep = np.ones(len(feature_ids), bool)  # the panel variant: antibodies missing from every sample
    if params.drop_antibodies > 0:
        n_drop = int(round(params.drop_antibodies * len(proteins)))
        gone = np.random.default_rng([params.seed, 30_000]).choice(len(proteins), n_drop, replace=False)
        keep[len(genes) + gone] = False
        log.info("panel variant: antibodies missing %s", sorted(np.array(proteins)[gone]))
    feature_ids, feature_names, feature_types = feature_ids[keep], feature_names[keep], feature_types[keep]
    truths = []
    for i, donor in donors.iterrows():
        extra = first[donor["donor"]] != i  # a later sample of a donor: its own stream
        rna, prot, truth = simulate_donor(model, donor, first[donor["donor"]], params, stream=100 + i if extra else None,
                                          src_fold=folds.get(donor["sample"]) if extra else None)
        write_10x_h5(
            sample_path(out, donor["sample"]),
            sp.hstack([rna, prot], format="csr")[:, keep],
            truth["barcode"].to_numpy(),
            feature_ids,
            feature_names,
            feature_types,
        )
        if params.with_raw:
            e_rna, e_prot = simulate_empty_droplets(model, donor, i, params, len(truth))
            e_bc = _barcodes(np.random.default_rng([params.seed, i, 2]), e_rna.shape[0] + len(truth))
            e_bc = np.array([b for b in e_bc if b not in set(truth["barcode"])][: e_rna.shape[0]])
            write_10x_h5(
                sample_path(out, donor["sample"], raw=True),
                sp.vstack([sp.hstack([rna, prot]), sp.hstack([e_rna, e_prot])], format="csr")[:, keep],
                np.concatenate([truth["barcode"].to_numpy(), e_bc]),
                feature_ids,
                feature_names,
                feature_types,
            )
        truths.append(truth)
        log.info("simulated %s: %d cells", donor["sample"], len(truth))
    sheet = donors.copy()
    sheet["path"] = [str(sample_path(".", s)) for s in sheet["sample"]]
    if params.with_raw:
        sheet["raw_path"] = [str(sample_path(".", s, raw=True)) for s in sheet["sample"]]
    (out / "truth").mkdir(exist_ok=True)
    if params.with_tissue:
        from ._tissue import simulate_tissue

        comps = {d: donor_composition(np.random.default_rng([params.seed, i]), donors.iloc[i], params)
                 for d, i in first.items()}
        tissue_rows, tissue_truth = simulate_tissue(out, sheet, model=model, params=params, compositions=comps,
                                                    cells_per_sample=params.tissue_cells)
        sheet["tissue"] = "blood"
        sheet = pd.concat([sheet, tissue_rows[sheet.columns]], ignore_index=True)
        with atomic_path(out / "truth" / "tissue_cells.tsv") as tmp:
            tissue_truth.to_csv(tmp, sep="\t", index=False)
        from ._tissue import simulate_vdj

        cells = pd.concat([*truths, tissue_truth], ignore_index=True)
        vdj, vdj_truth = simulate_vdj(out, sheet, cells, params=params)
        sheet["vdj_path"] = sheet["sample"].map(vdj).fillna("")
        with atomic_path(out / "truth" / "vdj_cells.tsv") as tmp:
            vdj_truth.to_csv(tmp, sep="\t", index=False)
    with atomic_path(out / "truth" / "cells.tsv") as tmp:
        pd.concat(truths, ignore_index=True).to_csv(tmp, sep="\t", index=False)
    with atomic_path(out / "truth" / "effects.tsv") as tmp:
        planted_effects(params).to_csv(tmp, sep="\t", index=False)
    with atomic_path(out / "samples.tsv") as tmp:
        sheet.to_csv(tmp, sep="\t", index=False)
    return sheet
