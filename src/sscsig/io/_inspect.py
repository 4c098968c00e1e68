"""Check every input file's header before any job runs: feature types, antibody panel, barcodes.

:func:`inspect_sample` reads only the feature table and the barcodes of a library (no counts), so
checking a whole cohort takes a second; :func:`check_inputs` runs it on every sample (and raw
droplet file) of a sheet. The workflow calls it at start-up in sheet mode and ``sscsig validate``
calls it, so a library without antibody capture, a filtered matrix given as ``raw_path`` or
duplicated barcodes stop the run with one line naming the sample and file, before any job runs.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from ..errors import InputError
from ..protein import clean_antibody_name, panel_plan, panel_sentences, rename_sentences, same_antibody_names
from ._read import TECHNICAL_PATTERN, technical_features


@dataclass
class SampleHeader:
    """What a library's header says: its barcodes, RNA feature count and antibodies."""

    path: Path
    barcodes: pd.Index
    n_rna: int
    antibodies: list[str]
    feature_types: list[str] = field(default_factory=list)
    genes: list[str] = field(default_factory=list)

    @property
    def n_barcodes(self) -> int:
        return len(self.barcodes)


def _dec(a) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else str(x) for x in a]


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def _mtx_header(folder: Path, sample: str) -> tuple[list[str], list[str], list[str]]:
    folder = folder / "filtered_feature_bc_matrix" if (folder / "filtered_feature_bc_matrix").is_dir() else folder

    def find(*names):
        for n in names:
            if (folder / n).exists():
                return folder / n
        raise InputError(f"sample {sample!r}: {folder} has none of {list(names)} (not a 10x MTX folder)")

    feats = find("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv")
    with _open_text(feats) as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh if line.strip()]
    with _open_text(find("barcodes.tsv.gz", "barcodes.tsv")) as fh:
        barcodes = [line.strip() for line in fh if line.strip()]
    names = [r[1] if len(r) > 1 else r[0] for r in rows]
    types = [r[2] if len(r) > 2 else "Gene Expression" for r in rows]
    return barcodes, names, types


def _h5_header(path: Path, sample: str) -> tuple[list[str], list[str], list[str]]:
    with h5py.File(path, "r") as f:
        if "matrix" in f and "features" in f["matrix"]:
            m = f["matrix"]
            return _dec(m["barcodes"][:]), _dec(m["features/name"][:]), _dec(m["features/feature_type"][:])
        groups = list(f.keys())
    raise InputError(f"sample {sample!r}: {path} is not a Cell Ranger v3 feature-barcode h5 (groups {groups}; "
                     "a v2 gene-only matrix has no antibody capture features)")


def _h5ad_header(path: Path, sample: str) -> tuple[list[str], list[str], list[str]]:
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        var = read_elem(f["var"])
        obs_index = read_elem(f["obs"]).index
    if "feature_types" not in var:
        raise InputError(f"sample {sample!r}: {path} has no var['feature_types'] column")
    return list(obs_index.astype(str)), list(var.index.astype(str)), list(var["feature_types"].astype(str))


def _h5mu_header(path: Path, sample: str, rna_type: str, protein_type: str):
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        if "mod" not in f:
            raise InputError(f"{path} is not a MuData file (no 'mod' group)")
        mods = list(f["mod"].keys())
        prot_key = next((k for k in ("prot", "adt", "ADT", "protein") if k in mods), None)
        if "rna" not in mods:
            raise InputError(f"sample {sample!r}: {path} has no 'rna' modality (has {mods})")
        if prot_key is None:
            raise InputError(f"sample {sample!r}: {path} has no protein modality ('prot' or 'adt'); "
                             f"sscsig needs {protein_type!r} features")
        rna_var = read_elem(f["mod/rna/var"]).index
        prot_var = read_elem(f["mod"][prot_key]["var"]).index
        rna_obs = read_elem(f["mod/rna/obs"]).index
        prot_obs = read_elem(f["mod"][prot_key]["obs"]).index
    if not rna_obs.equals(prot_obs):
        raise InputError(f"sample {sample!r}: {path}: RNA and protein barcodes differ")
    names = list(rna_var.astype(str)) + list(prot_var.astype(str))
    types = [rna_type] * len(rna_var) + [protein_type] * len(prot_var)
    return list(rna_obs.astype(str)), names, types


def _rhapsody_header(path: Path, sample: str, rna_type: str, protein_type: str):
    from ._read import rhapsody_features

    head = pd.read_csv(path, comment="#", nrows=0, index_col=False)
    if "Cell_Index" not in head.columns:
        raise InputError(f"sample {sample!r}: {path} has no 'Cell_Index' column: not a BD Rhapsody MolsPerCell CSV")
    cols = [c for c in head.columns if c != "Cell_Index" and not str(c).startswith("SampleTag")]
    names, types = rhapsody_features(cols, sample=sample, path=path, rna_type=rna_type, protein_type=protein_type)
    barcodes = pd.read_csv(path, comment="#", usecols=["Cell_Index"])["Cell_Index"].astype(str)
    return list(barcodes), names, types


def inspect_sample(path: str | Path, *, sample: str, rna_type: str = "Gene Expression",
                   protein_type: str = "Antibody Capture",
                   technical_pattern: str = TECHNICAL_PATTERN) -> SampleHeader:
    """Read a library's features and barcodes (not its counts) and check them.

    Accepts what :func:`~sscsig.io.read_sample` accepts. Raises :class:`InputError` naming the
    sample and file when it is missing or unreadable, has no RNA or no protein features, no
    barcodes, duplicated barcodes, or duplicated antibody names. The antibodies are the protein
    features but those matching ``technical_pattern``, which :func:`~sscsig.io.read_sample` drops.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"sample {sample!r}: data file not found: {path}")
    low = path.name.lower()
    try:
        if path.is_dir():
            barcodes, names, types = _mtx_header(path, sample)
        elif low.endswith(".h5mu"):
            barcodes, names, types = _h5mu_header(path, sample, rna_type, protein_type)
        elif low.endswith(".h5ad"):
            barcodes, names, types = _h5ad_header(path, sample)
        elif low.endswith(".h5"):
            barcodes, names, types = _h5_header(path, sample)
        elif low.endswith(".csv") or low.endswith(".csv.gz"):
            barcodes, names, types = _rhapsody_header(path, sample, rna_type, protein_type)
        else:
            raise InputError(f"sample {sample!r}: unsupported data path {path} (expected filtered_feature_bc_matrix.h5, "
                             "an MTX folder, .h5ad, .h5mu or a BD Rhapsody MolsPerCell .csv)")
    except InputError:
        raise
    except Exception as exc:  # h5py/OSError/KeyError from a truncated or foreign file
        raise InputError(f"sample {sample!r}: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    types_arr = np.asarray(types)
    found = sorted(set(types))
    if not (types_arr == rna_type).any():
        raise InputError(f"sample {sample!r}: {path} has no {rna_type!r} features (found {found})")
    if not (types_arr == protein_type).any():
        raise InputError(f"sample {sample!r}: {path} has no {protein_type!r} features (found {found}); "
                         "sscsig needs the antibody-derived tags of a CITE-seq library")
    bc = pd.Index(barcodes)
    if len(bc) == 0:
        raise InputError(f"sample {sample!r}: {path} has no barcodes (an empty library)")
    if bc.has_duplicates:
        raise InputError(f"sample {sample!r}: {path} has duplicated barcodes, e.g. "
                         f"{list(bc[bc.duplicated()][:3])}")
    prot_names = [n for n, t in zip(names, types) if t == protein_type]
    technical = technical_features(prot_names, technical_pattern, sample=sample, path=path, protein_type=protein_type)
    antibodies = [clean_antibody_name(n) for n, tech in zip(prot_names, technical) if not tech]
    dup = sorted({a for a in antibodies if antibodies.count(a) > 1})
    if dup:
        raise InputError(f"sample {sample!r}: {path}: duplicated antibody names {dup}")
    return SampleHeader(path=path, barcodes=bc, n_rna=int((types_arr == rna_type).sum()),
                        antibodies=antibodies, feature_types=found,
                        genes=[n for n, t in zip(names, types) if t == rna_type])


def check_inputs(sheet: pd.DataFrame, *, rna_type: str = "Gene Expression",
                 protein_type: str = "Antibody Capture",
                 technical_pattern: str = TECHNICAL_PATTERN,
                 panel_policy: str = "intersection",
                 panel_min_fraction: float = 0.5, min_shared_genes: int = 50) -> list[str]:
    """Inspect every sample (``path``) and its raw droplets (``raw_path``) of a validated sheet.

    Besides :func:`inspect_sample`'s checks: a ``raw_path`` must hold every cell barcode of the
    sample plus background droplets and the same antibodies; a tissue sample (column ``tissue``
    other than blood) must share at least ``min_shared_genes`` genes with the blood samples
    (config ``tissue.map.min_shared_genes``), or it could not be mapped onto them. Returns warnings about antibody
    panels that differ between blood samples (what ``qc.panel_policy`` will do with them; a tissue
    sample's panel is its own: only the shared antibodies enter its mapping).
    """
    headers = {}
    for _, row in sheet.iterrows():
        s = str(row["sample"])
        h = inspect_sample(row["path"], sample=s, rna_type=rna_type, protein_type=protein_type,
                           technical_pattern=technical_pattern)
        headers[s] = h
        raw = row.get("raw_path")
        if isinstance(raw, str) and raw:
            r = inspect_sample(raw, sample=s, rna_type=rna_type, protein_type=protein_type,
                               technical_pattern=technical_pattern)
            missing = h.barcodes.difference(r.barcodes)
            if len(missing):
                raise InputError(f"sample {s!r}: raw_path {raw} lacks {len(missing)} of the sample's "
                                 f"{h.n_barcodes} cell barcodes (e.g. {list(missing[:2])}); is it the raw "
                                 "matrix of the same library?")
            if r.n_barcodes <= h.n_barcodes:
                raise InputError(f"sample {s!r}: raw_path {raw} has no droplets beyond the "
                                 f"{h.n_barcodes} cells; it must be the raw (unfiltered) matrix")
            if set(h.antibodies) - set(r.antibodies):
                raise InputError(f"sample {s!r}: raw_path {raw} lacks antibodies "
                                 f"{sorted(set(h.antibodies) - set(r.antibodies))}")
    blood = set(sheet["sample"].astype(str)) if "tissue" not in sheet.columns else set(
        sheet.loc[sheet["tissue"] == "blood", "sample"].astype(str))
    blood_genes = set().union(*(headers[s].genes for s in blood)) if blood else set()
    for s, h in headers.items():
        if s not in blood:
            shared = len(set(h.genes) & blood_genes)
            if shared < min_shared_genes:
                raise InputError(f"sample {s!r}: {h.path} shares {shared} genes with the blood samples (need at "
                                 f"least {min_shared_genes}, config tissue.map.min_shared_genes): its panel is too "
                                 "small to map its cells onto the blood states")
    return panel_warnings({s: h.antibodies for s, h in headers.items() if s in blood}, panel_policy=panel_policy,
                          panel_min_fraction=panel_min_fraction)


def panel_warnings(panels: dict[str, list[str]], *, panel_policy: str, panel_min_fraction: float = 0.5) -> list[str]:
    """One sentence per sample whose antibody panel differs from the cohort's: what
    ``qc.panel_policy`` (:func:`sscsig.protein.panel_plan`) will drop or keep as missing
    (:func:`sscsig.protein.panel_sentences`), after one per sample whose antibodies take an earlier
    sample's spelling (:func:`sscsig.protein.same_antibody_names`, :func:`sscsig.protein.rename_sentences`)."""
    if not panels:
        return []
    renamed = same_antibody_names(panels)  # as the merge will (HLA.DR in one sample, HLA-DR in another)
    panels = {s: [renamed[s].get(a, a) for a in names] for s, names in panels.items()}
    plan = panel_plan(panels, policy=panel_policy, min_fraction=panel_min_fraction)
    return rename_sentences(renamed) + list(panel_sentences(plan, policy=panel_policy).values())


__all__ = ["SampleHeader", "check_inputs", "inspect_sample", "panel_warnings"]
