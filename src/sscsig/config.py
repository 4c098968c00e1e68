"""Configuration and sample-sheet validation (JSON schemas in ``config/schemas`` plus cross-checks).

Everything here runs before any expensive step: the Snakefile calls :func:`validate_config` and
:func:`load_sample_sheet` at parse time, so a typo stops the run with a message that names the
file, column, sample or key, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import yaml

from .ingest import InputError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "config" / "schemas"
REQUIRED_COLUMNS = ["sample", "donor", "batch", "path"]
TRUE = {"true", "1", "yes", "t", "y"}
FALSE = {"false", "0", "no", "f", "n"}


def _schema(name: str, schema_dir: str | Path | None = None) -> dict:
    path = Path(schema_dir or SCHEMA_DIR) / name
    return yaml.safe_load(path.read_text())


def validate_config(config: dict, *, schema_dir: str | Path | None = None) -> None:
    """Validate ``config`` against ``config.schema.yaml`` and cross-check hypotheses/contrasts."""
    validator = jsonschema.Draft202012Validator(_schema("config.schema.yaml", schema_dir))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(map(str, e.absolute_path)) or "(top level)"
        raise InputError(f"config: {where}: {e.message}")
    comps = set(config["complications"])
    for name, spec in config["contrasts"].items():
        if spec["complication"] not in comps:
            raise InputError(
                f"config: contrasts.{name}.complication {spec['complication']!r} is not listed in "
                f"complications {sorted(comps)}"
            )
    for h in config.get("hypotheses", []):
        if h["complication"] not in comps:
            raise InputError(f"config: hypothesis {h} names an unknown complication")
    for name, sig in (config.get("signatures") or {}).items():
        if not sig.get("genes") and not sig.get("gene_set"):
            raise InputError(f"config: signatures.{name} needs 'genes' or 'gene_set' (empty signature)")
        if sig.get("gene_set") and not sig.get("gene_set_file"):
            raise InputError(f"config: signatures.{name}.gene_set needs gene_set_file")


def cohort_mode(config: dict) -> str:
    """``demo`` or ``sheet`` (``auto``: sheet when ``samples`` is set)."""
    mode = config.get("cohort", "auto")
    if mode == "auto":
        return "sheet" if str(config.get("samples") or "").strip() else "demo"
    if mode == "sheet" and not str(config.get("samples") or "").strip():
        raise InputError("config: cohort is 'sheet' but no 'samples' sheet is given")
    return mode


def parse_bool(value, *, column: str, sample: str) -> bool:
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise InputError(
        f"sample sheet: column {column!r} must be boolean (true/false), sample {sample!r} has {value!r}"
    )


def contrast_columns(config: dict) -> tuple[set[str], set[str]]:
    """Sample-sheet columns used by contrasts as selectors and as covariates."""
    sel, cov = set(), set()
    for spec in config["contrasts"].values():
        sel |= set(spec["case"]) | set(spec["control"])
        cov |= set(spec.get("covariates", []))
    return sel, cov


def check_sample_sheet(df: pd.DataFrame, config: dict, *, source: str = "sample sheet",
                       base_dir: str | Path = ".", check_files: bool = True) -> pd.DataFrame:
    """Cross-checks beyond the row schema; returns the sheet with typed columns and resolved paths."""
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
    for comp in config["complications"]:
        if comp not in df.columns:
            raise InputError(f"{source}: no column for complication {comp!r} (listed in config complications)")
        df[comp] = [parse_bool(v, column=comp, sample=s) for v, s in zip(df[comp], df["sample"])]
    sel, cov = contrast_columns(config)
    for col in sorted(sel | cov):
        if col not in df.columns:
            raise InputError(f"{source}: column {col!r} used by a contrast is missing")
    if "age" in df.columns:
        df["age"] = pd.to_numeric(df["age"], errors="raise") if df["age"].notna().any() else df["age"]
    # donor-level attributes must agree across a donor's samples
    donor_cols = sorted((sel | cov | set(config["complications"]) | {"group", "age", "sex"}) & set(df.columns))
    for donor, sub in df.groupby("donor"):
        for col in donor_cols:
            vals = sub[col].dropna().astype(str).unique()
            if len(vals) > 1:
                raise InputError(
                    f"{source}: donor {donor!r} has conflicting {col!r} values {list(vals)} "
                    f"across samples {list(sub['sample'])}"
                )
    for spec_name, spec in config["contrasts"].items():
        for col in spec.get("covariates", []):
            if df[col].isna().any():
                bad = list(df.loc[df[col].isna(), "sample"])
                raise InputError(
                    f"{source}: covariate {col!r} of contrast {spec_name!r} is missing (NaN) for samples {bad}"
                )
    from .abundance import contrast_groups, donor_table

    donors = donor_table(df, sorted(sel | cov | set(config["complications"])))
    for spec_name, spec in config["contrasts"].items():
        try:
            contrast_groups(donors, spec_name, spec)
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None
    base = Path(base_dir)
    for col in ("path", "raw_path"):
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


def design_warnings(sheet: pd.DataFrame, config: dict, *, batch_key: str = "batch") -> list[str]:
    """Design problems that do not stop a run but must be read beside its results.

    A contrast whose case and control donors come from disjoint batches (or a complication whose
    status is constant within every batch) is perfectly confounded with batch: no model can tell the
    complication from the batch effect, and integration may remove the signal.
    """
    from .abundance import contrast_groups, donor_table

    if batch_key not in sheet.columns:
        return []
    out = []
    sel, cov = contrast_columns(config)
    donors = donor_table(sheet, sorted(sel | cov | set(config["complications"]) | {batch_key}))
    for name, spec in config["contrasts"].items():
        g = contrast_groups(donors, name, spec).dropna()
        b = donors.loc[g.index, batch_key].astype(str)
        case_b, ctrl_b = set(b[g == 1]), set(b[g == 0])
        if case_b and ctrl_b and not (case_b & ctrl_b):
            out.append(f"contrast {name!r} is perfectly confounded with {batch_key}: case donors only in "
                       f"{sorted(case_b)}, control donors only in {sorted(ctrl_b)}; its results cannot "
                       "separate the complication from the batch effect")
    for comp in config["complications"]:
        per_batch = donors.groupby(donors[batch_key].astype(str))[comp].nunique()
        if donors[comp].nunique() > 1 and (per_batch == 1).all() and len(per_batch) > 1:
            out.append(f"complication {comp!r} is perfectly confounded with {batch_key} (every batch has "
                       "donors of one status only)")
    return out


def load_sample_sheet(path: str | Path, config: dict, *, check_files: bool = True,
                      schema_dir: str | Path | None = None) -> pd.DataFrame:
    """Read, schema-validate and cross-check a sample sheet; relative paths are resolved against
    the sheet's folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"sample sheet not found: {path}")
    df = pd.read_csv(path, sep="\t", dtype=str, comment=None).dropna(how="all")
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"sample sheet {path}: required column(s) {missing} missing (has {list(df.columns)})")
    typed = df.copy()
    if "age" in typed.columns:
        num = pd.to_numeric(typed["age"], errors="coerce")
        bad = typed["age"].notna() & num.isna()
        if bad.any():
            raise InputError(f"sample sheet {path}: column 'age' is not numeric for samples {list(typed.loc[bad, 'sample'])}")
        typed["age"] = num
    validator = jsonschema.Draft202012Validator(_schema("samples.schema.yaml", schema_dir))
    for i, row in typed.iterrows():
        record = {k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
        err = next(iter(validator.iter_errors(record)), None)
        if err is not None:
            where = ".".join(map(str, err.absolute_path)) or "row"
            raise InputError(f"sample sheet {path}: sample {row.get('sample')!r}: {where}: {err.message}")
    return check_sample_sheet(typed, config, source=f"sample sheet {path}", base_dir=path.parent,
                              check_files=check_files)
