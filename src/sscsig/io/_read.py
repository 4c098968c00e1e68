"""Read one sample's CITE-seq library into a MuData with ``rna`` and ``prot`` modalities.

Accepted inputs: Cell Ranger ``filtered_feature_bc_matrix.h5``, the ``filtered_feature_bc_matrix/``
MTX folder (or its parent), ``.h5ad`` with ``var['feature_types']``, ``.h5mu`` with ``rna`` and
``prot`` (or ``adt``) modalities, and the BD Rhapsody pipeline's ``*MolsPerCell*.csv`` (``.csv`` or
``.csv.gz``: ``##`` header lines, a ``Cell_Index`` column, AbSeq columns named
``<target>:<clone>|<gene>|<catalogue>|pAbO`` that become the protein modality under ``<target>``,
every other column a gene; ``SampleTag`` columns are dropped). Protein features are renamed ``ADT_<target>`` (TotalSeq suffixes
stripped) so that they never collide with gene symbols; the original name stays in
``var['antibody']``. Isotype controls are flagged in ``var['isotype']``.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import InputError
from ..protein import ADT_PREFIX, clean_antibody_name

log = logging.getLogger(__name__)


def cell_names(sample, barcodes) -> pd.Index:
    """The cohort's name of each cell, ``<sample>_<barcode>``: unique across samples, given by
    :func:`read_sample` and kept by every later file. ``sample`` is one name or one per barcode."""
    barcodes = pd.Index(np.asarray(barcodes)).astype(str)
    samples = pd.Index(np.broadcast_to(np.asarray(sample, dtype=object), (len(barcodes),))).astype(str)
    return pd.Index(samples + "_" + barcodes)


def read_cell_table(path: str | Path, **read_csv) -> pd.DataFrame:
    """A per-cell TSV with ``sample`` and ``barcode`` columns (e.g. the demo twin's truth tables),
    indexed by :func:`cell_names` so that it lines up with a cohort's ``obs_names``; both columns
    are read as text (numeric Rhapsody barcodes included). ``read_csv``: more options for pandas."""
    table = pd.read_csv(path, sep="\t", dtype={"sample": str, "barcode": str}, **read_csv)
    table.index = cell_names(table["sample"], table["barcode"])
    return table


def read_h5mu_modalities(path: str | Path) -> md.MuData:
    """The modalities of an .h5mu, read one by one (files whose global obs index is named
    differently from the modalities' cannot be read whole by mudata without pulling columns)."""
    import h5py

    with h5py.File(path, "r") as f:
        if "mod" not in f:
            raise InputError(f"{path} is not a MuData file (no 'mod' group)")
        names = list(f["mod"].keys())
    mods = {}
    for name in names:
        a = md.read_h5ad(path, name)
        a.obs.index.name = None
        a.var.index.name = None
        mods[name] = a
    return md.MuData(mods)


ABSEQ = re.compile(r"^(?P<target>[^:|]+):(?P<clone>[^|]*)\|(?P<gene>[^|]*)\|(?P<catalogue>[^|]*)\|pAbO$")


def rhapsody_features(columns, *, sample: str, path, rna_type: str = "Gene Expression",
                      protein_type: str = "Antibody Capture") -> tuple[list[str], list[str]]:
    """Feature names and types of a Rhapsody CSV's count columns: AbSeq columns
    (``<target>:<clone>|<gene>|<catalogue>|pAbO``) become ``<target>`` of ``protein_type``; others
    are genes (``SYMBOL|...`` keeps the symbol). An AbSeq-like column (ending in ``pAbO``) that does
    not parse is an error that names it."""
    names, types = [], []
    for col in map(str, columns):
        if col.endswith("pAbO"):
            m = ABSEQ.match(col)
            if m is None:
                raise InputError(f"sample {sample!r}: {path}: AbSeq column {col!r} does not read as "
                                 "<target>:<clone>|<gene>|<catalogue>|pAbO")
            names.append(m["target"].strip())
            types.append(protein_type)
        else:
            names.append(col.split("|")[0].strip())
            types.append(rna_type)
    return names, types


def read_rhapsody_csv(path: str | Path, *, sample: str, rna_type: str = "Gene Expression",
                      protein_type: str = "Antibody Capture") -> md.MuData:
    """A BD Rhapsody ``MolsPerCell`` CSV as a MuData with ``rna`` and ``prot`` (raw counts).

    AbSeq columns (``CD14:MPHIP9|CD14|AMM2050|pAbO``) are named by their target (``CD14``) and typed
    ``protein_type``; a column that ends in ``pAbO`` but does not have the AbSeq layout is an error
    that names it. Gene columns written as ``SYMBOL|...`` keep the symbol.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, comment="#", index_col=False)
    except Exception as exc:
        raise InputError(f"sample {sample!r}: cannot read {path} as a Rhapsody CSV: {type(exc).__name__}: {exc}") from exc
    if "Cell_Index" not in df.columns:
        raise InputError(f"sample {sample!r}: {path} has no 'Cell_Index' column: not a BD Rhapsody MolsPerCell CSV "
                         f"(first columns {list(df.columns[:3])})")
    df = df.set_index("Cell_Index")
    df = df.loc[:, [c for c in df.columns if not str(c).startswith("SampleTag")]]
    names, types = rhapsody_features(df.columns, sample=sample, path=path, rna_type=rna_type,
                                     protein_type=protein_type)
    try:
        x = sp.csr_matrix(df.to_numpy(dtype=np.float64))
    except ValueError as exc:
        raise InputError(f"sample {sample!r}: {path}: non-numeric counts ({exc})") from exc
    obs = pd.DataFrame(index=df.index.astype(str))
    is_prot = np.array([t == protein_type for t in types])
    names = np.array(names)
    with warnings.catch_warnings():  # a gene and an antibody may share a name (CD14); read_sample renames ADT_*
        warnings.filterwarnings("ignore", message="var_names are not unique")
        return md.MuData({"rna": ad.AnnData(x[:, ~is_prot], obs=obs, var=pd.DataFrame(index=names[~is_prot])),
                          "prot": ad.AnnData(x[:, is_prot], obs=obs.copy(), var=pd.DataFrame(index=names[is_prot]))})


#: features.technical_pattern's default (the schema's): CITE-seq-Count's read-counting rows
TECHNICAL_PATTERN = r"(?i)^(unmapped|bad_struct|no_match|total_reads)$"


def technical_features(names, pattern: str, *, sample: str, path, protein_type: str) -> np.ndarray:
    """Which of a library's protein features (``names``) match ``features.technical_pattern``: rows that
    count the tag library's reads, not an antibody. Raises :class:`InputError` naming the sample and
    file when every one does (no antibody would be left)."""
    technical = np.array([bool(re.search(pattern, str(n))) for n in names], dtype=bool)
    if len(technical) and technical.all():
        raise InputError(f"sample {sample!r}: {path}: every {protein_type!r} feature matches "
                         f"features.technical_pattern {pattern!r}; no antibody is left")
    return technical


def _read_any(path: Path, sample: str, *, rna_type: str = "Gene Expression",
              protein_type: str = "Antibody Capture") -> ad.AnnData | md.MuData:
    import scanpy as sc

    if not path.exists():
        raise InputError(f"sample {sample!r}: data file not found: {path}")
    try:
        with warnings.catch_warnings():
            # a gene and an antibody of one name (CD4, CCR7) are duplicates only until the modalities are
            # split (_split); anndata's advice to make them unique would rename the antibody
            warnings.filterwarnings("ignore", message="Variable names are not unique")
            if path.is_dir():
                mtx = path / "filtered_feature_bc_matrix" if (path / "filtered_feature_bc_matrix").is_dir() else path
                return sc.read_10x_mtx(mtx, gex_only=False, var_names="gene_symbols", make_unique=False)
            if path.name.lower().endswith(".h5"):
                return sc.read_10x_h5(path, gex_only=False)
        suffix = path.name.lower()
        if suffix.endswith(".h5mu"):
            return read_h5mu_modalities(path)
        if suffix.endswith(".h5ad"):
            return ad.read_h5ad(path)
        if suffix.endswith(".csv") or suffix.endswith(".csv.gz"):
            return read_rhapsody_csv(path, sample=sample, rna_type=rna_type, protein_type=protein_type)
    except InputError:
        raise
    except Exception as exc:  # h5py/OSError/KeyError from a truncated or foreign file
        raise InputError(f"sample {sample!r}: cannot read {path}: {type(exc).__name__}: {exc}") from exc
    raise InputError(
        f"sample {sample!r}: unsupported data path {path} "
        "(expected filtered_feature_bc_matrix.h5, an MTX folder, .h5ad, .h5mu or a BD Rhapsody MolsPerCell .csv)"
    )


def _raw_counts(a: ad.AnnData) -> ad.AnnData:
    """Bare copy of a modality with raw counts in X (``layers['counts']`` when present)."""
    x = a.layers["counts"] if "counts" in a.layers else a.X
    return ad.AnnData(X=x, obs=pd.DataFrame(index=a.obs_names), var=a.var.copy())


def _split(obj, *, sample: str, path: Path, rna_type: str, protein_type: str):
    if isinstance(obj, md.MuData):
        mods = dict(obj.mod)
        prot_key = next((k for k in ("prot", "adt", "ADT", "protein") if k in mods), None)
        if "rna" not in mods:
            raise InputError(f"sample {sample!r}: {path} has no 'rna' modality (has {list(mods)})")
        if prot_key is None:
            raise InputError(
                f"sample {sample!r}: {path} has no protein modality ('prot' or 'adt'); "
                f"sscsig needs {protein_type!r} features"
            )
        return _raw_counts(mods["rna"]), _raw_counts(mods[prot_key])
    if "feature_types" not in obj.var:
        raise InputError(f"sample {sample!r}: {path} has no var['feature_types'] column")
    ftypes = obj.var["feature_types"].astype(str)
    rna = obj[:, (ftypes == rna_type).to_numpy()].copy()
    prot = obj[:, (ftypes == protein_type).to_numpy()].copy()
    if rna.n_vars == 0:
        raise InputError(f"sample {sample!r}: {path} has no {rna_type!r} features")
    if prot.n_vars == 0:
        found = sorted(set(ftypes))
        raise InputError(
            f"sample {sample!r}: {path} has no {protein_type!r} features (found {found}); "
            "sscsig needs the antibody-derived tags of a CITE-seq library"
        )
    return rna, prot


def _check_counts(x, *, sample: str, path: Path, what: str) -> sp.csr_matrix:
    x = sp.csr_matrix(x)
    data = x.data
    if data.size and (np.any(data < 0) or not np.all(np.isfinite(data)) or np.any(data != np.round(data))):
        raise InputError(
            f"sample {sample!r}: {path}: {what} values are not non-negative integers; "
            "sscsig expects raw counts (UMIs), not normalised data"
        )
    return x.astype(np.float32)


def read_sample(
    path: str | Path,
    *,
    sample: str,
    rna_type: str = "Gene Expression",
    protein_type: str = "Antibody Capture",
    isotype_pattern: str = r"(?i)isotype|IgG[0-9]",
    technical_pattern: str = TECHNICAL_PATTERN,
) -> md.MuData:
    """Read one sample's library.

    Parameters
    ----------
    path
        Data file or folder (see module docstring).
    sample
        Sample id, used in error messages and as obs-name prefix (``<sample>_<barcode>``).
    rna_type, protein_type
        ``feature_types`` values of RNA and protein features (config ``features``).
    isotype_pattern
        Regular expression that marks isotype-control antibodies (config ``features``).
    technical_pattern
        Regular expression for protein-type features that count the tag library's reads rather than
        an antibody (CITE-seq-Count's ``unmapped``, ``bad_struct``, ``no_match``, ``total_reads``;
        config ``features``): dropped, with a warning. Kept, ``total_reads`` alone was half of each
        cell's "antibody" counts in CiteFuse's ECCITE-seq data and would enter the CLR, the QC's
        protein totals and the embedding as an antibody.

    Returns
    -------
    MuData with ``rna`` and ``prot``, raw counts in ``X`` (float32 CSR), ``obs['sample']`` and
    ``obs['barcode']``.
    """
    path = Path(path)
    obj = _read_any(path, sample, rna_type=rna_type, protein_type=protein_type)
    rna, prot = _split(obj, sample=sample, path=path, rna_type=rna_type, protein_type=protein_type)
    if not rna.obs_names.equals(prot.obs_names):
        raise InputError(f"sample {sample!r}: {path}: RNA and protein barcodes differ")
    rna.X = _check_counts(rna.X, sample=sample, path=path, what="RNA")
    prot.X = _check_counts(prot.X, sample=sample, path=path, what="protein")
    if rna.var_names.has_duplicates:
        dups = rna.var_names[rna.var_names.duplicated()].unique()
        log.warning(
            "sample %s: %d duplicated gene symbols made unique with suffixes (e.g. %s)",
            sample, len(dups), ", ".join(map(str, dups[:5])),
        )
        rna.var_names_make_unique()
    technical = technical_features(prot.var_names, technical_pattern, sample=sample, path=path,
                                   protein_type=protein_type)
    if technical.any():
        log.warning("sample %s: %s: protein features that count reads, not an antibody, dropped (features."
                    "technical_pattern): %s", sample, path, ", ".join(map(str, prot.var_names[technical])))
        prot = prot[:, ~technical].copy()
    antibodies = [clean_antibody_name(n) for n in prot.var_names]
    prot.var = pd.DataFrame(
        {
            "antibody": antibodies,
            "isotype": [bool(re.search(isotype_pattern, a)) for a in antibodies],
        },
        index=pd.Index([ADT_PREFIX + a for a in antibodies]),
    )
    if prot.var_names.has_duplicates:
        raise InputError(f"sample {sample!r}: {path}: duplicated antibody names {list(prot.var_names[prot.var_names.duplicated()])}")
    rna.var = pd.DataFrame({"gene_ids": rna.var.get("gene_ids", rna.var_names).astype(str).to_numpy()},
                           index=rna.var_names)
    barcodes = rna.obs_names.astype(str)
    names = cell_names(sample, barcodes)
    for a in (rna, prot):
        a.obs = pd.DataFrame(index=names)
    mdata = md.MuData({"rna": rna, "prot": prot})
    mdata.obs["sample"] = sample
    mdata.obs["barcode"] = barcodes.to_numpy()
    return mdata


def read_json(path: str | Path):
    """The JSON document at ``path`` (a rule's report or warnings, as :func:`write_json` writes them)."""
    return json.loads(Path(path).read_text())
