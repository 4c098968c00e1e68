"""Tissue samples of the demo twin: a kidney biopsy of each SRC donor and lung samples of ILD and
non-ILD donors, with planted truth (the reference study's second half).

* **kidney** (BD Rhapsody AbSeq, targeted RNA panel of ~400 genes, written as the Rhapsody
  pipeline's ``*_RSEC_MolsPerCell.csv`` with AbSeq column names such as
  ``CD14:MPHIP9|CD14|AMM2014|pAbO``): blood-state immune cells drawn from the donor's blood
  composition, a monocyte -> macrophage continuum that starts at CD14.EGR1 and along which THBS1
  rises (truth pseudotime ``t`` in [0, 1]; ``t < CONTINUUM_MONOCYTE_T`` is still a CD14.EGR1
  monocyte, later cells are THBS1-high macrophages), and kidney parenchyma (tubular epithelium,
  endothelium, fibroblasts).
* **lung** (10x, whole transcriptome + TotalSeq, Cell Ranger h5): blood-state immune cells with CD8
  T cells enriched (tissue-resident memory) and CD8.TEM_T2ISG further enriched in ILD lungs, alveolar
  macrophages, AT2 epithelium, endothelium and fibroblasts.

Tissue cells differ from blood by a platform factor per gene (another chemistry), so a mapping that
ignores batches will not work. Truth: ``truth/tissue_cells.tsv`` (sample, barcode, tissue,
tissue_type, cell_state = the blood state or empty, pseudotime).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import _states as S
from ..io import atomic_path

log = logging.getLogger(__name__)

#: tissue-only cell types: RNA program (fold over a low background), protein levels (0-3), UMIs
TISSUE_PROGRAM: dict[str, dict[str, float]] = {
    "Macrophage": {"C1QA": 60, "C1QB": 60, "C1QC": 50, "APOE": 50, "MRC1": 30, "CD163": 30, "CD68": 40,
                   "SPP1": 30, "TREM2": 25, "MS4A7": 20, "LYZ": 25, "CST3": 40, "TYROBP": 40, "FCER1G": 40,
                   "AIF1": 30, "CSF1R": 30, "CTSS": 30, "PSAP": 40, "HLA-DRA": 30, "CD74": 20, "THBS1": 80},
    "Tubular": {"UMOD": 60, "SLC34A1": 50, "LRP2": 50, "CUBN": 40, "EPCAM": 30, "KRT18": 30, "KRT8": 30},
    "Endothelial": {"PECAM1": 40, "VWF": 50, "CDH5": 40, "EMCN": 40, "PLVAP": 40},
    "Fibroblast": {"COL1A1": 60, "COL1A2": 50, "DCN": 50, "LUM": 40, "PDGFRB": 30},
    "AT2": {"SFTPC": 80, "SFTPB": 50, "SFTPA1": 50, "NAPSA": 30, "EPCAM": 20, "KRT18": 20},
}
TISSUE_PROTEIN: dict[str, dict[str, int]] = {
    "Macrophage": {"CD14": 2, "CD11c": 3, "HLA-DR": 3, "CD86": 3, "CD45": 3, "CD4": 1, "CD38": 1},
    "Tubular": {}, "Endothelial": {}, "Fibroblast": {}, "AT2": {},
}
TISSUE_UMIS = {"Macrophage": 7000.0, "Tubular": 5000.0, "Endothelial": 4000.0, "Fibroblast": 4500.0,
               "AT2": 5000.0}
#: composition of a sample by compartment
KIDNEY_MIX = {"blood_state": 0.25, "continuum": 0.35, "Tubular": 0.2, "Endothelial": 0.1, "Fibroblast": 0.1}
LUNG_MIX = {"blood_state": 0.5, "Macrophage": 0.2, "AT2": 0.15, "Endothelial": 0.1, "Fibroblast": 0.05}
#: a continuum cell with t below this is still a CD14.EGR1 monocyte (truth state); above, a macrophage:
#: the midpoint of the log-linear path, where the cell is as much one profile as the other
CONTINUUM_MONOCYTE_T = 0.5
#: CD8 T cells in lung vs blood (tissue-resident memory), CD8.TEM_T2ISG within CD8 in ILD lungs
LUNG_CD8_ENRICHMENT = 2.0
LUNG_T2ISG_ILD_ENRICHMENT = 2.0
#: the kidney AbSeq panel (a subset of the blood panel; clone and catalogue ids are made up)
ABSEQ_PANEL = ["CD3", "CD4", "CD8", "CD14", "CD16", "CD45RA", "CD45RO", "CD197", "CD27", "CD127", "CD25",
               "CD56", "CD19", "HLA-DR", "CD11c", "CD123", "CD161", "CD38", "CD183", "CD86", "CD45", "CD57",
               "CD20", "CD28", "CD95", "CD2", "CD7", "CD1c", "CD62L", "IgD", "CD279", "CD69", "CD103",
               "CD163", "CD206"]
TISSUE_BATCH = {"kidney": "kidney_rhapsody", "lung": "lung_10x"}
KIDNEY_PANEL_HOUSEKEEPING = 220  # most expressed blood genes added to the kidney's targeted panel


def tissue_design(donors: pd.DataFrame) -> pd.DataFrame:
    """Tissue samples of the demo: a kidney biopsy of every SRC donor; lung samples of three ILD-only
    and three non-ILD SSc donors (one row per sample, the donor's columns copied)."""
    base = donors.drop_duplicates("donor").set_index("donor")
    ssc = base[base["group"] == "SSc"]
    kidney = list(ssc.index[ssc["SRC"]])
    ild_only = list(ssc.index[ssc["ILD"] & ~ssc["SRC"]])[:3]
    neither = list(ssc.index[~ssc["ILD"] & ~ssc["SRC"]])[:3]
    rows = []
    for tissue, members in (("kidney", kidney), ("lung", ild_only + neither)):
        for d in members:
            row = base.loc[d].to_dict()
            row.update(sample=f"{d}_{tissue}", donor=d, batch=TISSUE_BATCH[tissue], tissue=tissue)
            row["path"] = str(tissue_sample_path(".", row["sample"], tissue))
            if "raw_path" in row:
                row["raw_path"] = ""  # no empty droplets for tissue libraries
            for col in ("timepoint", "time"):
                if col in row:
                    row[col] = "baseline" if col == "timepoint" else 0
            rows.append(row)
    return pd.DataFrame(rows)


def tissue_sample_path(out_dir: str | Path, sample: str, tissue: str) -> Path:
    """Where the simulator writes a tissue sample (kidney: Rhapsody CSV; lung: Cell Ranger h5)."""
    if tissue == "kidney":
        return Path(out_dir) / sample / f"{sample}_RSEC_MolsPerCell.csv"
    return Path(out_dir) / sample / "filtered_feature_bc_matrix.h5"


def _extended_genes(genes: pd.DataFrame) -> pd.DataFrame:
    """The blood gene universe plus the tissue programs' genes (low background outside them)."""
    new = sorted({g for prog in TISSUE_PROGRAM.values() for g in prog} - set(genes["symbol"]))
    extra = pd.DataFrame({"symbol": new, "ensembl_like_id": [f"SIMT{i:06d}" for i in range(len(new))],
                          "mean_umi": 1.0})
    return pd.concat([genes, extra], ignore_index=True)


def _profile(genes: pd.DataFrame, blood_profiles: dict, kind: str) -> np.ndarray:
    """Share of UMIs per gene for a blood state or a tissue type, over the extended universe."""
    n_blood = len(next(iter(blood_profiles.values())))
    sym = genes["symbol"].to_numpy()
    index = {g: i for i, g in enumerate(sym)}
    base = genes["mean_umi"].to_numpy(float)
    if kind in blood_profiles:  # the tissue-only genes at their background level (5% of base)
        blood = blood_profiles[kind] * base[:n_blood].sum()
        mu = np.concatenate([blood, 0.05 * base[n_blood:]])
        return mu / mu.sum()
    mu = base.copy()
    prog = [index[g] for g in S.program_genes()] + list(range(n_blood, len(genes)))
    mu[prog] = mu[prog] * 0.05
    for g, f in TISSUE_PROGRAM[kind].items():  # a fold of 60 is ~40 UMIs in a cell of 5,000
        mu[index[g]] = max(base[index[g]], 0.2) * f / 2
    return mu / mu.sum()


def simulate_tissue(out_dir: str | Path, donors: pd.DataFrame, *, model, params, compositions: dict,
                    cells_per_sample: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the tissue samples of :func:`tissue_design` into ``out_dir``.

    Parameters
    ----------
    donors
        The blood sample sheet (donor columns are copied to the tissue rows).
    model, params
        The blood cohort's ``_CohortModel`` and ``DemoParams`` (profiles, dispersion, protein
        ambient, seed).
    compositions
        donor -> the donor's blood state shares (the same draws as its blood sample).
    cells_per_sample
        Cells per tissue sample (before QC).

    Returns
    -------
    (tissue rows of the sample sheet, per-cell truth)
    """
    from ._simulate import LEVEL_COUNTS, write_10x_h5

    out = Path(out_dir)
    design = tissue_design(donors)
    genes = _extended_genes(model.genes)
    n_blood = len(model.genes)
    rng0 = np.random.default_rng([params.seed, 20_000])
    platform = {t: np.exp(rng0.normal(0, 0.4, len(genes))) for t in TISSUE_BATCH}
    dispersion = np.concatenate([model.dispersion, np.full(len(genes) - n_blood, 4.0)])
    top = model.genes.sort_values("mean_umi", ascending=False)["symbol"].head(KIDNEY_PANEL_HOUSEKEEPING)
    panel = sorted(set(S.program_genes()) | set(top) | set(genes["symbol"].iloc[n_blood:]) | {"THBS1"}
                   | {g for prog in TISSUE_PROGRAM.values() for g in prog})
    panel_idx = np.flatnonzero(genes["symbol"].isin(panel).to_numpy())
    prof = {k: _profile(genes, model.profiles, k) for k in list(model.profiles) + list(TISSUE_PROGRAM)}
    prot_names = list(S.PROTEINS)

    def prot_levels(kind: str) -> np.ndarray:
        if kind in TISSUE_PROTEIN:
            lv = TISSUE_PROTEIN[kind]
            return np.array([lv.get(p, 0) for p in prot_names])
        return model.prot_levels[kind]

    rows, truths = [], []
    for k, row in design.iterrows():
        tissue, donor = row["tissue"], row["donor"]
        rng = np.random.default_rng([params.seed, 30_000, k])
        n = int(round(cells_per_sample * rng.uniform(0.9, 1.1)))
        mix = KIDNEY_MIX if tissue == "kidney" else LUNG_MIX
        kinds = rng.choice(list(mix), size=n, p=np.array(list(mix.values())) / sum(mix.values()))
        comp = compositions[donor].copy()
        if tissue == "lung":
            cd8 = [s for s in comp.index if S.STATE_LINEAGE[s] == "CD8_T"]
            comp[cd8] *= LUNG_CD8_ENRICHMENT
            if row["ILD"]:
                comp["CD8.TEM_T2ISG"] *= LUNG_T2ISG_ILD_ENRICHMENT
        else:  # kidney: no circulating CD14.EGR1 in the blood-state share, they enter as the continuum
            comp["CD14.EGR1"] = 0.0
        comp = comp / comp.sum()
        t = np.full(n, np.nan)
        state = np.array([""] * n, dtype=object)
        ttype = np.array(kinds, dtype=object)
        blood = kinds == "blood_state"
        state[blood] = rng.choice(np.array(comp.index), size=int(blood.sum()), p=comp.to_numpy())
        ttype[blood] = "immune"
        cont = kinds == "continuum"
        t[cont] = rng.uniform(0, 1, int(cont.sum()))
        mono = cont & (t < CONTINUUM_MONOCYTE_T)
        state[mono], ttype[mono] = "CD14.EGR1", "immune"
        ttype[cont & ~mono] = "Macrophage"
        # expected profile per cell: blood state, tissue type, or the log-linear continuum
        mean = np.empty((n, len(genes)))
        levels = np.empty((n, len(prot_names)))
        umis = np.empty(n)
        for i in range(n):
            if cont[i]:
                w = t[i]
                mu = np.exp((1 - w) * np.log(prof["CD14.EGR1"]) + w * np.log(prof["Macrophage"]))
                mean[i] = mu / mu.sum()
                levels[i] = (1 - w) * LEVEL_COUNTS[prot_levels("CD14.EGR1")] + w * LEVEL_COUNTS[prot_levels("Macrophage")]
                umis[i] = (1 - w) * S.LINEAGE_UMIS["Mono"] + w * TISSUE_UMIS["Macrophage"]
            elif blood[i]:
                mean[i] = prof[state[i]]
                levels[i] = LEVEL_COUNTS[prot_levels(state[i])]
                umis[i] = S.LINEAGE_UMIS[S.STATE_LINEAGE[state[i]]]
            else:
                mean[i] = prof[kinds[i]]
                levels[i] = LEVEL_COUNTS[prot_levels(kinds[i])]
                umis[i] = TISSUE_UMIS[kinds[i]]
        mean *= platform[tissue][None, :] * np.exp(rng.normal(0, 0.1, len(genes)))[None, :]
        if tissue == "kidney":  # a targeted panel: only the panel's genes are captured, fewer UMIs
            mean = mean[:, panel_idx]
            disp = dispersion[panel_idx]
            size = 0.5 * umis * np.exp(rng.normal(0, 0.3, n))
        else:
            disp = dispersion
            size = umis * np.exp(rng.normal(0, 0.3, n))
        mean = mean / mean.sum(1, keepdims=True) * size[:, None]
        rna = rng.poisson(rng.gamma(disp[None, :], mean / disp[None, :])).astype(np.int32)
        sticky = np.exp(rng.normal(0, 0.35, n))[:, None]
        pmean = model.ambient[None, :] * sticky + levels * np.exp(rng.normal(0, 0.3, n))[:, None]
        prot = rng.poisson(rng.gamma(8.0, pmean / 8.0)).astype(np.int32)
        from ._simulate import _barcodes

        barcodes = _barcodes(rng, n)
        sample = row["sample"]
        path = tissue_sample_path(out, sample, tissue)
        if tissue == "kidney":
            keep = [prot_names.index(p) for p in ABSEQ_PANEL if p in prot_names]
            ab_cols = [abseq_name(prot_names[j], j) for j in keep]
            write_rhapsody_csv(path, rna, prot[:, keep], genes["symbol"].to_numpy()[panel_idx], ab_cols,
                               cell_index=np.arange(1, n + 1) * 7 + 1000)
            barcodes = (np.arange(1, n + 1) * 7 + 1000).astype(str)
        else:
            write_10x_h5(path, sp.hstack([sp.csr_matrix(rna), sp.csr_matrix(prot)], format="csr"), barcodes,
                         np.concatenate([genes["ensembl_like_id"].to_numpy(), np.array(prot_names)]),
                         np.concatenate([genes["symbol"].to_numpy(), np.array(prot_names)]),
                         np.array(["Gene Expression"] * len(genes) + ["Antibody Capture"] * len(prot_names)))
        truths.append(pd.DataFrame({"sample": sample, "barcode": barcodes, "tissue": tissue, "tissue_type": ttype,
                                    "cell_state": state, "pseudotime": t}))
        rows.append(row)
        log.info("simulated %s: %d cells", sample, n)
    return pd.DataFrame(rows), pd.concat(truths, ignore_index=True)


def abseq_name(target: str, j: int) -> str:
    """A BD AbSeq column name, ``<target>:<clone>|<gene>|<catalogue>|pAbO`` (made-up clone ids)."""
    gene = {"CD3": "CD3E", "CD8": "CD8A", "CD16": "FCGR3A", "HLA-DR": "HLA-DRA", "CD45": "PTPRC",
            "CD45RA": "PTPRC", "CD45RO": "PTPRC"}.get(target, target)
    return f"{target}:CL{100 + j}|{gene}|AHS{2000 + j:04d}|pAbO"


def write_rhapsody_csv(path: str | Path, rna: np.ndarray, prot: np.ndarray, genes, antibodies, *,
                       cell_index) -> None:
    """Write counts as the BD Rhapsody pipeline's ``MolsPerCell`` CSV: ``##`` header lines, then
    ``Cell_Index``, one column per AbSeq antibody and one per targeted gene."""
    df = pd.DataFrame(np.hstack([prot, rna]), columns=list(antibodies) + list(genes))
    df.insert(0, "Cell_Index", cell_index)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write("##########################################################################\n")
            fh.write("## BD Targeted Multiplex Rhapsody Analysis Pipeline Version 1.12 (sscsig demo)\n")
            fh.write("## Analysis Date - 2026-01-01\n")
            fh.write("##########################################################################\n")
            df.to_csv(fh, index=False)


#: V(D)J of the lung donors (demo): expanded CD8.TEM_T2ISG clones per ILD donor, shared by its blood
#: and lung (unless the cohort is null); every other T cell has a clone of its own
VDJ_EXPANDED_CLONES = 5
VDJ_EXPANDED_SHARE = 0.7  # of an ILD donor's CD8.TEM_T2ISG cells, in blood and lung
VDJ_CAPTURE = 0.85  # T cells with a productive alpha-beta pair
_AA = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
_CODON = dict(zip("ACDEFGHIKLMNPQRSTVWY", ["GCC", "TGC", "GAC", "GAG", "TTC", "GGC", "CAC", "ATC", "AAG", "CTG", "ATG",
                                           "AAC", "CCC", "CAG", "CGC", "AGC", "ACC", "GTG", "TGG", "TAC"]))


def _cdr3(rng: np.random.Generator, prefix: str) -> str:
    return prefix + "".join(rng.choice(_AA, int(rng.integers(7, 11)))) + "F"


def vdj_sample_path(out_dir: str | Path, sample: str) -> Path:
    """Where the simulator writes a sample's 10x V(D)J contigs."""
    return Path(out_dir) / sample / "filtered_contig_annotations.csv"


def write_10x_contigs(path: str | Path, barcodes, tra, trb) -> None:
    """Write alpha and beta chains as Cell Ranger's ``filtered_contig_annotations.csv`` (the columns
    scirpy reads; the CDR3 nucleotides are the amino acids' codons, one codon per amino acid)."""
    rows = []
    for bc, a, b in zip(barcodes, tra, trb):
        for chain, cdr3, v, j, c in (("TRA", a, "TRAV1-2", "TRAJ33", "TRAC"), ("TRB", b, "TRBV20-1", "TRBJ2-1", "TRBC2")):
            rows.append({"barcode": bc, "is_cell": True, "contig_id": f"{bc}_contig_{chain}", "high_confidence": True,
                         "length": 500, "chain": chain, "v_gene": v, "d_gene": "None", "j_gene": j, "c_gene": c,
                         "full_length": True, "productive": True, "cdr3": cdr3, "cdr3_nt": "".join(_CODON[x] for x in cdr3),
                         "reads": 2000, "umis": 6, "raw_clonotype_id": "", "raw_consensus_id": ""})
    cols = ["barcode", "is_cell", "contig_id", "high_confidence", "length", "chain", "v_gene", "d_gene", "j_gene",
            "c_gene", "full_length", "productive", "cdr3", "cdr3_nt", "reads", "umis", "raw_clonotype_id",
            "raw_consensus_id"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=cols).to_csv(tmp, index=False)


def vdj_design(sheet: pd.DataFrame) -> dict[str, str]:
    """The demo's samples with V(D)J: every lung sample and its donor's baseline blood sample
    (sample -> contig path relative to the demo folder)."""
    lung = sheet[sheet["tissue"] == "lung"]
    out = {}
    for donor in dict.fromkeys(lung["donor"]):
        blood = sheet[(sheet["donor"] == donor) & (sheet["tissue"] == "blood")]
        if "timepoint" in blood:
            blood = blood[blood["timepoint"].fillna("baseline").astype(str) == "baseline"]
        for s in [blood["sample"].iloc[0], *lung.loc[lung["donor"] == donor, "sample"]]:
            out[s] = str(vdj_sample_path(".", s))
    return out


def simulate_vdj(out_dir: str | Path, sheet: pd.DataFrame, cells: pd.DataFrame, *, params) -> tuple[dict, pd.DataFrame]:
    """Alpha-beta TCRs of the lung donors' baseline blood samples and lung samples.

    Each ILD donor has :data:`VDJ_EXPANDED_CLONES` expanded clones; :data:`VDJ_EXPANDED_SHARE` of its
    CD8.TEM_T2ISG cells, in blood and in the lung, carry one of them (the planted sharing). In a
    null cohort (``params.null``) the lung's expanded clones are another set than the blood's, so
    nothing is shared. Every other T cell has a clone of its own.

    Parameters
    ----------
    sheet
        The sample sheet with the ``tissue`` column.
    cells
        Truth per cell of every sample (``sample, barcode, cell_state``).

    Returns
    -------
    ({sample: contig file path relative to ``out_dir``}, truth per cell: sample, barcode, clone)
    """
    from ._states import STATE_LINEAGE

    out = Path(out_dir)
    design = vdj_design(sheet)
    tissue_of = dict(zip(sheet["sample"], sheet["tissue"]))
    donor_of = dict(zip(sheet["sample"], sheet["donor"]))
    ild = dict(zip(sheet["donor"], sheet["ILD"]))
    paths, truth = {}, []
    for k, donor in enumerate(dict.fromkeys(donor_of[s] for s in design)):
        rng = np.random.default_rng([params.seed, 40_000, k])
        expanded = {comp: [(_cdr3(rng, "CAV"), _cdr3(rng, "CASS")) for _ in range(VDJ_EXPANDED_CLONES)]
                    for comp in ("blood", "lung")}
        if not params.null:
            expanded["lung"] = expanded["blood"]
        for sample, comp in ((s, tissue_of[s]) for s in design if donor_of[s] == donor):
            c = cells[cells["sample"] == sample]
            lineage = c["cell_state"].map(STATE_LINEAGE).fillna("")
            t_cell = lineage.isin(["CD4_T", "CD8_T", "other_T"]).to_numpy() & (c["cell_state"] != "gdT").to_numpy()
            keep = t_cell & (rng.random(len(c)) < VDJ_CAPTURE)
            tra, trb, clone = [], [], []
            for state in c["cell_state"].to_numpy()[keep]:
                if state == "CD8.TEM_T2ISG" and ild[donor] and rng.random() < VDJ_EXPANDED_SHARE:
                    j = int(rng.choice(VDJ_EXPANDED_CLONES, p=np.array([0.4, 0.25, 0.15, 0.12, 0.08])))
                    a, b = expanded[comp][j]
                    clone.append(f"{donor}_{comp if params.null else 'shared'}_{j}")
                else:
                    a, b = _cdr3(rng, "CAV"), _cdr3(rng, "CASS")
                    clone.append("")
                tra.append(a)
                trb.append(b)
            bcs = c["barcode"].astype(str).to_numpy()[keep]
            path = vdj_sample_path(out, sample)
            write_10x_contigs(path, bcs, tra, trb)
            paths[sample] = str(path.relative_to(out))
            truth.append(pd.DataFrame({"sample": sample, "barcode": bcs, "expanded_clone": clone}))
    return paths, pd.concat(truth, ignore_index=True) if truth else pd.DataFrame(columns=["sample", "barcode", "expanded_clone"])
