"""Configuration and sample-sheet validation: JSON schemas in ``config/schemas`` plus cross-checks.

The schema is the one place where settings and their defaults are defined (``default:``);
:func:`validate_config` checks a config against it and fills in every default, so the stages
receive complete sections and no module keeps a copy of the defaults. The Snakefile calls
:func:`validate_config` and :func:`load_sample_sheet` once at start-up (``workflow/rules/common.smk``),
so a typo stops the run with one line that names the file, column, sample or key, before any job
runs and before anything is written.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import yaml

from .design import Design, contrast_columns, contrast_groups, donor_table, parse_bool
from .errors import InputError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "config" / "schemas"
REQUIRED_COLUMNS = ["sample", "donor", "batch", "path"]


@lru_cache(maxsize=None)
def _schema(name: str, schema_dir: str | None = None) -> dict:
    path = Path(schema_dir or SCHEMA_DIR) / name
    return yaml.safe_load(path.read_text())


def _with_defaults(validator_class):
    """A validator that also fills in each property's ``default`` (the jsonschema FAQ recipe, as
    Snakemake's ``validate(set_default=True)``): a section absent from the config gets its schema
    default (``{}``), whose own properties then get theirs."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate_config(config: dict, *, schema_dir: str | Path | None = None) -> dict:
    """Check ``config`` against ``config.schema.yaml``, fill in the schema's defaults (in place) and
    cross-check complications, contrasts, hypotheses and signatures.

    Returns
    -------
    The same dict, completed. Raises :class:`InputError` naming the first offending key.
    """
    schema = _schema("config.schema.yaml", str(schema_dir) if schema_dir else None)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(map(str, e.absolute_path)) or "(top level)"
        raise InputError(f"config: {where}: {e.message}")
    _with_defaults(jsonschema.Draft202012Validator)(schema).validate(config)
    comps = set(config["complications"])
    for name, spec in config["contrasts"].items():
        if spec["complication"] not in comps:
            raise InputError(
                f"config: contrasts.{name}.complication {spec['complication']!r} is not listed in "
                f"complications {sorted(comps)}"
            )
    for h in config["hypotheses"]:
        if h["complication"] not in comps:
            raise InputError(f"config: hypothesis {h} names an unknown complication")
    for name, sig in config["signatures"].items():
        if not sig.get("genes") and not sig.get("gene_set"):
            raise InputError(f"config: signatures.{name} needs 'genes' or 'gene_set' (empty signature)")
        if sig.get("gene_set") and not sig.get("gene_set_file"):
            raise InputError(f"config: signatures.{name}.gene_set needs gene_set_file")
    ref = config["annotation"]["reference"]
    method = config["annotation"]["method"]
    if method != "markers" and not ref["path"]:
        raise InputError(f"config: annotation.method is {method!r} but annotation.reference.path is not set "
                         "(a labelled .h5ad or .h5mu)")
    ann = config["annotation"]
    if ann["gate_layer"] is not None and ann["gate_min"] is None:
        from .protein import GATE_MIN_DEFAULTS

        if ann["gate_layer"] not in GATE_MIN_DEFAULTS:
            raise InputError(f"config: annotation.gate_layer is {ann['gate_layer']!r} but annotation.gate_min is not "
                             f"set (defaults exist for {', '.join(f'{k}, {v:g}' for k, v in GATE_MIN_DEFAULTS.items())}"
                             "; the denoised scale depends on the model)")
    if table := config["annotation"]["standin_table"]:
        if not Path(table).exists():
            raise InputError(f"config: annotation.standin_table: file not found: {table}")
        from .protein import antibody_genes

        antibody_genes(table)  # a malformed table stops here, before any job runs
    if method != "markers":
        for key in ("path", "labels"):
            if ref[key] and not Path(ref[key]).exists():
                raise InputError(f"config: annotation.reference.{key}: file not found: {ref[key]}")
    return config


@lru_cache(maxsize=None)
def _defaults() -> dict:
    minimal = {"outdir": "results", "seed": 0, "complications": ["X"],
               "contrasts": {"x": {"complication": "X", "case": {"X": True}, "control": {"X": False}}}}
    return validate_config(minimal)


def default(path: str):
    """The schema default of a setting, e.g. ``default("qc.nmads")`` (a copy)."""
    value = _defaults()
    for key in path.split("."):
        value = value[key]
    return copy.deepcopy(value)


def cohort_mode(config: dict) -> str:
    """``demo`` or ``sheet`` (``auto``: sheet when ``samples`` is set)."""
    mode = config.get("cohort", "auto")
    if mode == "auto":
        return "sheet" if str(config.get("samples") or "").strip() else "demo"
    if mode == "sheet" and not str(config.get("samples") or "").strip():
        raise InputError("config: cohort is 'sheet' but no 'samples' sheet is given")
    return mode


def resolve_gene_set_file(path: str | Path, *, base_dir: str | Path = ".") -> Path:
    """A gene-set file: the path as given, else a file shipped in ``sscsig/data`` of that base name."""
    p = Path(base_dir) / path
    if p.exists():
        return p
    shipped = resources.files("sscsig") / "data" / Path(path).name
    if not shipped.is_file():
        raise InputError(f"gene set file {p} not found (nor shipped with sscsig)")
    return Path(str(shipped))


def read_gene_sets(path: str | Path) -> dict[str, list[str]]:
    """Gene sets from a TSV: ``name<TAB>gene gene ...`` per line, ``#`` comments."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, genes = line.partition("\t")
        out[name.strip()] = genes.split()
    return out


def resolve_signatures(spec: dict, *, base_dir: str | Path = ".") -> dict[str, dict]:
    """Config ``signatures`` -> ``{name: {genes, states}}``; ``gene_set`` entries read from ``gene_set_file``."""
    out = {}
    for name, sig in spec.items():
        genes = list(sig.get("genes") or [])
        if sig.get("gene_set"):
            try:
                path = resolve_gene_set_file(sig["gene_set_file"], base_dir=base_dir)
            except InputError as exc:
                raise InputError(f"signature {name!r}: {exc}") from None
            sets = read_gene_sets(path)
            if sig["gene_set"] not in sets:
                raise InputError(f"signature {name!r}: gene set {sig['gene_set']!r} not in {path}")
            genes += sets[sig["gene_set"]]
        if not genes:
            raise InputError(f"signature {name!r}: empty gene list")
        if not sig.get("states"):
            raise InputError(f"signature {name!r}: no cell states to score it in")
        out[name] = {"genes": list(dict.fromkeys(genes)), "states": list(sig["states"])}
    return out


BLOOD = "blood"


def blood_rows(sheet: pd.DataFrame) -> pd.DataFrame:
    """The blood samples of a validated sheet (all of them when it has no ``tissue`` column)."""
    if "tissue" not in sheet.columns:
        return sheet
    return sheet[sheet["tissue"] == BLOOD].reset_index(drop=True)


def tissue_rows(sheet: pd.DataFrame) -> pd.DataFrame:
    """The tissue (non-blood) samples of a validated sheet; empty without a ``tissue`` column."""
    if "tissue" not in sheet.columns:
        return sheet.iloc[:0].assign(tissue=pd.Series(dtype=str))
    return sheet[sheet["tissue"] != BLOOD].reset_index(drop=True)


def _check_tissues(df: pd.DataFrame, tissues, source: str) -> pd.DataFrame:
    """Normalise the ``tissue`` column (empty = blood) and check names and matched blood samples."""
    df["tissue"] = df["tissue"].fillna(BLOOD).astype(str).str.strip().str.lower().replace("", BLOOD)
    known = {BLOOD, *(t.lower() for t in (tissues or ()))}
    bad = df.loc[~df["tissue"].isin(known)]
    if len(bad):
        row = bad.iloc[0]
        raise InputError(f"{source}: sample {row['sample']!r}: tissue {row['tissue']!r} is not configured "
                         f"(config tissue.tissues has {sorted(known - {BLOOD})}; add it there with its QC)")
    with_blood = set(df.loc[df["tissue"] == BLOOD, "donor"])
    orphan = df.loc[(df["tissue"] != BLOOD) & ~df["donor"].isin(with_blood)]
    if len(orphan):
        raise InputError(f"{source}: tissue sample(s) {list(orphan['sample'])} belong to donor(s) "
                         f"{sorted(set(orphan['donor']))} with no blood sample; a tissue is mapped onto its "
                         "donor's blood states, so each tissue donor needs a blood sample in the sheet")
    return df


def check_sample_sheet(df: pd.DataFrame, *, complications: list[str], contrasts: dict,
                       source: str = "sample sheet", base_dir: str | Path = ".",
                       check_files: bool = True, baseline: str = "baseline", tissues=None) -> pd.DataFrame:
    """Cross-checks beyond the row schema (config ``complications`` and ``contrasts``); returns the
    sheet with typed columns and resolved paths. With a ``timepoint`` column, an empty timepoint
    is ``baseline`` and every donor needs exactly one blood sample at ``baseline``. With a ``tissue``
    column (empty = ``blood``), every other tissue must be one of ``tissues`` (config
    ``tissue.tissues``) and belong to a donor with a blood sample."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{source}: required column(s) {missing} missing (has {list(df.columns)})")
    df = df.copy()
    for c in REQUIRED_COLUMNS:
        empty = df[c].isna() | (df[c].astype(str).str.strip() == "")
        if empty.any():
            raise InputError(f"{source}: column {c!r} is empty in row(s) {list(np.flatnonzero(empty) + 2)}")
        df[c] = df[c].astype(str)
    dup = df["sample"][df["sample"].duplicated()].unique()
    if len(dup):
        raise InputError(f"{source}: duplicate sample id(s) {list(dup)}")
    for comp in complications:
        if comp not in df.columns:
            raise InputError(f"{source}: no column for complication {comp!r} (listed in config complications)")
        df[comp] = [parse_bool(v, column=comp, sample=s) for v, s in zip(df[comp], df["sample"])]
    sel, cov = contrast_columns(contrasts)
    for col in sorted(sel | cov):
        if col not in df.columns:
            raise InputError(f"{source}: column {col!r} used by a contrast is missing")
    if "tissue" in df.columns:
        df = _check_tissues(df, tissues, source)
    if "timepoint" in df.columns:
        df["timepoint"] = df["timepoint"].fillna(baseline).astype(str).str.strip().replace("", baseline)
        for donor, sub in blood_rows(df).groupby("donor"):
            n = int((sub["timepoint"] == baseline).sum())
            if n != 1:
                raise InputError(f"{source}: donor {donor!r} has {n} samples at the baseline timepoint "
                                 f"{baseline!r} (config longitudinal.baseline); the group tests need exactly "
                                 f"one (samples {list(sub['sample'])}, timepoints {list(sub['timepoint'])})")
            dup = sub["timepoint"][sub["timepoint"].duplicated()].unique()
            if len(dup):
                raise InputError(f"{source}: donor {donor!r} has several samples at timepoint(s) {list(dup)}")
    if "age" in df.columns:
        df["age"] = pd.to_numeric(df["age"], errors="raise") if df["age"].notna().any() else df["age"]
    # donor-level attributes must agree across a donor's samples
    donor_cols = sorted((sel | cov | set(complications) | {"group", "age", "sex"}) & set(df.columns))
    for donor, sub in df.groupby("donor"):
        for col in donor_cols:
            vals = sub[col].dropna().astype(str).unique()
            if len(vals) > 1:
                raise InputError(
                    f"{source}: donor {donor!r} has conflicting {col!r} values {list(vals)} "
                    f"across samples {list(sub['sample'])}"
                )
    for spec_name, spec in contrasts.items():
        for col in spec.get("covariates", []):
            if df[col].isna().any():
                bad = list(df.loc[df[col].isna(), "sample"])
                raise InputError(
                    f"{source}: covariate {col!r} of contrast {spec_name!r} is missing (NaN) for samples {bad}"
                )
    donors = donor_table(df, sorted(sel | cov | set(complications)))
    for spec_name, spec in contrasts.items():
        try:
            contrast_groups(donors, spec_name, spec)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
    base = Path(base_dir)
    for col in ("path", "raw_path", "vdj_path"):
        if col not in df.columns:
            continue
        resolved = []
        for s, v in zip(df["sample"], df[col]):
            if pd.isna(v) or str(v).strip() == "":
                resolved.append("")
                continue
            p = Path(str(v))
            p = p if p.is_absolute() else base / p
            if check_files and not p.exists():
                raise InputError(f"{source}: sample {s!r}: {col} {p} does not exist")
            resolved.append(str(p))
        df[col] = resolved
    return df


def load_sample_sheet(path: str | Path, config: dict | None = None, *, complications: list[str] | None = None,
                      contrasts: dict | None = None, baseline: str = "baseline", tissues=None,
                      check_files: bool = True, schema_dir: str | Path | None = None) -> pd.DataFrame:
    """Read, schema-validate and cross-check a sample sheet; relative paths are resolved against
    the sheet's folder.

    Parameters
    ----------
    path
        The sheet (TSV).
    config
        A validated config (:func:`validate_config`), whose ``complications``, ``contrasts``,
        ``longitudinal.baseline`` and ``tissue.tissues`` are used; or give them as keyword arguments
        (``tissues``: the tissue names besides blood; none = only blood samples are accepted).
    check_files
        Also require every ``path`` / ``raw_path`` to exist.
    """
    if config is not None:
        complications, contrasts = config["complications"], config["contrasts"]
        baseline = config["longitudinal"]["baseline"]
        tissues = list((config.get("tissue") or {}).get("tissues") or default("tissue.tissues"))
    if complications is None or contrasts is None:
        raise TypeError("load_sample_sheet needs a config or complications= and contrasts=")
    path = Path(path)
    if not path.exists():
        raise InputError(f"sample sheet not found: {path}")
    df = pd.read_csv(path, sep="\t", dtype=str, comment=None).dropna(how="all")
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"sample sheet {path}: required column(s) {missing} missing (has {list(df.columns)})")
    typed = df.copy()
    for col in ("age", "time"):
        if col in typed.columns:
            num = pd.to_numeric(typed[col], errors="coerce")
            bad = typed[col].notna() & num.isna()
            if bad.any():
                raise InputError(f"sample sheet {path}: column {col!r} is not numeric for samples "
                                 f"{list(typed.loc[bad, 'sample'])}")
            typed[col] = num
    validator = jsonschema.Draft202012Validator(
        _schema("samples.schema.yaml", str(schema_dir) if schema_dir else None))
    for _, row in typed.iterrows():
        record = {k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
        err = next(iter(validator.iter_errors(record)), None)
        if err is not None:
            where = ".".join(map(str, err.absolute_path)) or "row"
            raise InputError(f"sample sheet {path}: sample {row.get('sample')!r}: {where}: {err.message}")
    return check_sample_sheet(typed, complications=complications, contrasts=contrasts,
                              source=f"sample sheet {path}", base_dir=path.parent, check_files=check_files,
                              baseline=baseline, tissues=tissues)


def design_from_sheet(sheet: pd.DataFrame, config: dict) -> Design:
    """The :class:`~sscsig.design.Design` of a validated sheet's blood samples under a validated config."""
    return Design.from_sheet(blood_rows(sheet), contrasts=config["contrasts"], complications=config["complications"],
                             batch_key=config["integration"]["batch_key"],
                             baseline=config["longitudinal"]["baseline"])


__all__ = ["BLOOD", "REQUIRED_COLUMNS", "blood_rows", "check_sample_sheet", "cohort_mode", "default", "design_from_sheet",
           "load_sample_sheet", "read_gene_sets", "tissue_rows", "resolve_gene_set_file", "resolve_signatures",
           "validate_config"]
