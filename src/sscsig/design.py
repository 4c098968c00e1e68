"""The study design: donors, contrasts and the donor-level model matrix, shared by every statistic.

A *contrast* (config ``contrasts``) selects case and control donors by sample-sheet columns and
names the covariates of its model. This module is the only place that interprets those selectors:
:meth:`Design.from_sheet` turns the validated sample sheet into one row per donor
(:attr:`Design.donors`) and, per contrast, each donor's group (1 case, 0 control, NaN neither).
The workflow writes the design once (rule ``design``: ``<outdir>/design/``); the statistics stages
read it back with :meth:`Design.read` and never see the sheet or the selectors.

Also here: the model matrix of a contrast (:func:`design_matrix`), Benjamini-Hochberg FDR with
untestable rows (:func:`bh_fdr`), the one parser of true/false sheet values (:func:`parse_bool`),
the pre-specified (contrast, state) hypotheses (:func:`hypothesis_pairs`) and the design problems
a reader must see beside the results (:func:`design_warnings`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError

#: Label of cells without a cell state; they are excluded from every test.
UNASSIGNED = "Unassigned"

TRUE = frozenset({"true", "1", "yes", "t", "y"})
FALSE = frozenset({"false", "0", "no", "f", "n"})


def as_bool(value) -> bool | None:
    """``True``/``False`` for the accepted spellings (true/false, 1/0, yes/no, t/f, y/n; any case),
    ``None`` for anything else."""
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    return None


def parse_bool(value, *, column: str, sample: str) -> bool:
    """:func:`as_bool`, raising :class:`InputError` that names the column and sample otherwise."""
    out = as_bool(value)
    if out is None:
        raise InputError(
            f"sample sheet: column {column!r} must be boolean (true/false), sample {sample!r} has {value!r}"
        )
    return out


def contrast_columns(contrasts: dict) -> tuple[set[str], set[str]]:
    """Sample-sheet columns the contrasts select on and adjust for: ``(selectors, covariates)``."""
    sel, cov = set(), set()
    for spec in contrasts.values():
        sel |= set(spec["case"]) | set(spec["control"])
        cov |= set(spec.get("covariates", []))
    return sel, cov


def design_columns(contrasts: dict, complications: list[str] | tuple[str, ...]) -> list[str]:
    """The sample-sheet columns that define who is compared: ``group``, the complications, then any
    other column a contrast selects its cases or controls on (sorted; covariates are not among them).

    A grouping of the cells that one of these columns cannot be told apart from (a batch whose samples
    all have ``SRC: true``) confounds a comparison; ``annotate(design_columns=)`` warns of such groups.

    Parameters
    ----------
    contrasts
        The validated config's ``contrasts``.
    complications
        The validated config's ``complications``.

    Returns
    -------
    list of str
        Without repeats, in that order.
    """
    selectors, _ = contrast_columns(contrasts)
    first = ["group", *complications]
    return list(dict.fromkeys(first + sorted(selectors - set(first))))


def donor_table(sheet: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per donor (sorted) with the requested sample-sheet columns.

    Raises :class:`InputError` when a donor's samples disagree on a column.
    """
    missing = [c for c in columns if c not in sheet.columns]
    if missing:
        raise InputError(f"sample sheet has no column(s) {missing}")
    rows = {}
    for donor, sub in sheet.groupby("donor", sort=True):
        row = {}
        for c in columns:
            vals = sub[c].dropna().unique()
            if len(vals) > 1:
                raise InputError(
                    f"donor {donor!r} has conflicting values in column {c!r} across its samples: "
                    f"{list(vals)} (samples {list(sub['sample'])})"
                )
            row[c] = vals[0] if len(vals) else np.nan
        rows[donor] = row
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def _equal(values: pd.Series, wanted) -> pd.Series:
    if isinstance(wanted, bool):
        return values.map(lambda v: as_bool(v) is wanted).astype(bool)
    return values.astype(str) == str(wanted)


def _matches(donors: pd.DataFrame, spec: dict, contrast: str, side: str) -> pd.Series:
    mask = pd.Series(True, index=donors.index)
    for col, val in spec.items():
        if col not in donors.columns:
            raise InputError(f"contrast {contrast!r}: {side} refers to unknown sample-sheet column {col!r}")
        values = donors[col]
        wanted = val if isinstance(val, list) else [val]
        if not any(_equal(values, w).any() for w in wanted):
            present = sorted(map(str, values.dropna().unique()))
            raise InputError(
                f"contrast {contrast!r}: {side} value {val!r} never occurs in column {col!r} "
                f"(values present: {present})"
            )
        mask &= np.logical_or.reduce([_equal(values, w) for w in wanted])
    return mask


def contrast_groups(donors: pd.DataFrame, name: str, spec: dict) -> pd.Series:
    """Per donor: ``1`` case, ``0`` control, NaN neither.

    Raises :class:`InputError` for an unknown column, a value that never occurs, or donors that
    match both sides.
    """
    case = _matches(donors, spec["case"], name, "case")
    control = _matches(donors, spec["control"], name, "control")
    both = donors.index[case & control]
    if len(both):
        raise InputError(f"contrast {name!r}: donors {list(both)} match both case and control")
    out = pd.Series(np.nan, index=donors.index)
    out[case] = 1.0
    out[control] = 0.0
    return out


def design_matrix(donors: pd.DataFrame, group: pd.Series, covariates: list[str] | tuple[str, ...],
                  contrast: str) -> pd.DataFrame:
    """Intercept, ``case`` (the group) and covariates: numeric ones centred, categorical ones one-hot
    with the first level dropped. Rows follow ``donors``."""
    x = pd.DataFrame({"const": 1.0, "case": group}, index=donors.index)
    for cov in covariates:
        if cov not in donors.columns:
            raise InputError(f"contrast {contrast!r}: covariate {cov!r} is not a sample-sheet column")
        col = donors[cov]
        if col.isna().any():
            bad = list(col.index[col.isna()])
            raise InputError(f"contrast {contrast!r}: covariate {cov!r} is missing (NaN) for donors {bad}")
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all():
            x[cov] = num - num.mean()
        else:
            x = x.join(pd.get_dummies(col.astype(str), prefix=cov, drop_first=True, dtype=float))
    return x


def bh_fdr(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over the finite entries; NaN (untestable) stays NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


@dataclass
class Contrast:
    """One contrast: its donors' groups (1 case, 0 control, NaN neither) and its model."""

    name: str
    complication: str
    covariates: tuple[str, ...]
    groups: pd.Series

    @property
    def n_case(self) -> int:
        return int((self.groups == 1).sum())

    @property
    def n_control(self) -> int:
        return int((self.groups == 0).sum())

    @property
    def formula(self) -> str:
        """The model of the neighbourhood and pseudobulk tests, ``~ <covariates> + condition``."""
        return "~" + " + ".join([*self.covariates, "condition"])


@dataclass
class Design:
    """Donors (one row each, the sheet's donor-level columns) and the contrasts' groups.

    ``samples``: the validated sheet with column ``in_group_tests`` (with a ``timepoint`` column,
    only each donor's baseline sample enters the group tests; the others are followed over time).
    """

    donors: pd.DataFrame
    contrasts: dict[str, Contrast]
    warnings: list[str] = field(default_factory=list)
    samples: pd.DataFrame | None = None

    def cells_in_tests(self, obs: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the cells whose sample enters the group tests (all without timepoints)."""
        if self.samples is None:
            return np.ones(len(obs), bool)
        keep = set(self.samples.loc[self.samples["in_group_tests"].astype(bool), "sample"].astype(str))
        return obs["sample"].astype(str).isin(keep).to_numpy()

    @classmethod
    def from_sheet(cls, sheet: pd.DataFrame, *, contrasts: dict, complications: list[str],
                   batch_key: str = "batch", baseline: str = "baseline") -> "Design":
        """The design of a validated sample sheet (:func:`sscsig.config.load_sample_sheet`).

        Parameters
        ----------
        sheet
            One row per sample with ``sample``, ``donor`` and the columns the contrasts use.
        contrasts
            Config ``contrasts``: name -> ``{complication, case, control, covariates}``.
        complications
            Config ``complications`` (boolean sheet columns, kept in :attr:`donors`).
        batch_key
            Sheet column of the batches, for :func:`design_warnings`.
        baseline
            With a ``timepoint`` column: the timepoint of the samples that enter the group tests
            (config ``longitudinal.baseline``).
        """
        sel, cov = contrast_columns(contrasts)
        extra = {"group", "age", "sex"} & set(sheet.columns)
        samples = sheet.copy()
        samples["in_group_tests"] = (samples["timepoint"].astype(str) == baseline).to_numpy() \
            if "timepoint" in samples else True
        tested = samples[samples["in_group_tests"]]
        design = cls.from_donors(donor_table(tested, sorted(sel | cov | set(complications) | extra)),
                                 contrasts=contrasts)
        design.warnings = design_warnings(tested, design, complications=complications, batch_key=batch_key)
        design.samples = samples
        return design

    @classmethod
    def from_donors(cls, donors: pd.DataFrame, *, contrasts: dict) -> "Design":
        """The design of a donor table (index: donor id; the columns the contrasts use)."""
        out = {name: Contrast(name=name, complication=spec.get("complication", ""),
                              covariates=tuple(spec.get("covariates", [])),
                              groups=contrast_groups(donors, name, spec))
               for name, spec in contrasts.items()}
        return cls(donors=donors, contrasts=out)

    def write(self, *, donors: str | Path, groups: str | Path, contrasts: str | Path, warnings: str | Path,
              samples: str | Path | None = None, config: dict | None = None) -> None:
        """The design as files: donors (TSV), groups (donor x contrast TSV: 1, 0 or empty), contrasts
        (TSV: complication, covariates, donors per group), warnings (JSON list) and the samples (the
        sheet with ``in_group_tests``)."""
        from .io import atomic_path, write_tsv

        if samples is not None and self.samples is not None:
            write_tsv(self.samples, samples, config=config, step="design")
        write_tsv(self.donors.rename_axis("donor"), donors, index=True, config=config, step="design")
        g = pd.DataFrame({n: c.groups for n, c in self.contrasts.items()}, index=self.donors.index)
        write_tsv(g.rename_axis("donor"), groups, index=True, config=config, step="design")
        write_tsv(pd.DataFrame([{"contrast": c.name, "complication": c.complication,
                                 "covariates": " ".join(c.covariates), "n_case": c.n_case,
                                 "n_control": c.n_control, "formula": c.formula}
                                for c in self.contrasts.values()]),
                  contrasts, config=config, step="design")
        with atomic_path(warnings) as tmp:
            tmp.write_text(json.dumps(self.warnings, indent=1))

    @classmethod
    def read(cls, *, donors: str | Path, groups: str | Path, contrasts: str | Path,
             warnings: str | Path | None = None, samples: str | Path | None = None,
             complications: list[str] | None = None) -> "Design":
        """Read what :meth:`write` wrote. ``complications``: columns to type as booleans (read as
        such anyway when they hold only True/False)."""
        d = pd.read_csv(donors, sep="\t", index_col="donor", keep_default_na=True)
        d.index = d.index.astype(str)
        for c in complications or []:
            if c in d.columns and d[c].dtype != bool:
                d[c] = d[c].map(as_bool)
        g = pd.read_csv(groups, sep="\t", index_col="donor")
        g.index = g.index.astype(str)
        spec = pd.read_csv(contrasts, sep="\t", keep_default_na=False)
        out = {}
        for _, r in spec.iterrows():
            name = str(r["contrast"])
            out[name] = Contrast(name=name, complication=str(r["complication"]),
                                 covariates=tuple(str(r["covariates"]).split()),
                                 groups=g[name].astype(float).reindex(d.index))
        w = json.loads(Path(warnings).read_text()) if warnings else []
        s = None
        if samples is not None:
            s = pd.read_csv(samples, sep="\t", dtype=str)
            s["in_group_tests"] = s["in_group_tests"].map(as_bool)
        return cls(donors=d, contrasts=out, warnings=w, samples=s)

    def subset(self, names) -> "Design":
        """The same donors with only the named contrasts."""
        return Design(donors=self.donors, contrasts={n: self.contrasts[n] for n in names},
                      warnings=self.warnings, samples=self.samples)


def read_samples(path: str | Path, *, complications: list[str]) -> pd.DataFrame:
    """The design's ``samples.tsv`` (the validated sheet) with the sheet's types: text columns,
    numeric ``age``, boolean complications."""
    df = pd.read_csv(path, sep="\t", dtype=str)
    if "age" in df.columns and df["age"].notna().any():
        df["age"] = pd.to_numeric(df["age"], errors="raise")
    for comp in complications:
        df[comp] = [parse_bool(v, column=comp, sample=s) for v, s in zip(df[comp], df["sample"])]
    if "in_group_tests" in df.columns:
        df["in_group_tests"] = df["in_group_tests"].map(as_bool)
    return df


def design_warnings(sheet: pd.DataFrame, design: Design, *, complications: list[str],
                    batch_key: str = "batch") -> list[str]:
    """Design problems that do not stop a run but must be read beside its results.

    A contrast whose case and control donors come from disjoint batches (or a complication whose
    status is constant within every batch) is perfectly confounded with batch: no model can tell the
    complication from the batch effect, and integration may remove the signal. A donor's batches are
    those of all its samples.
    """
    if batch_key not in sheet.columns:
        return []
    out = []
    batches = sheet.groupby("donor")[batch_key].agg(lambda b: set(b.astype(str)))
    for name, c in design.contrasts.items():
        g = c.groups.dropna()
        case_b = set().union(*batches.reindex(g.index[g == 1]).dropna()) if (g == 1).any() else set()
        ctrl_b = set().union(*batches.reindex(g.index[g == 0]).dropna()) if (g == 0).any() else set()
        if case_b and ctrl_b and not (case_b & ctrl_b):
            out.append(f"contrast {name!r} is perfectly confounded with {batch_key}: case donors only in "
                       f"{sorted(case_b)}, control donors only in {sorted(ctrl_b)}; its results cannot "
                       "separate the complication from the batch effect")
    for comp in complications:
        status = sheet[comp].astype(str)
        per_batch = status.groupby(sheet[batch_key].astype(str)).nunique()
        if status.nunique() > 1 and (per_batch == 1).all() and len(per_batch) > 1:
            out.append(f"complication {comp!r} is perfectly confounded with {batch_key} (every batch has "
                       "donors of one status only)")
    return out


def contrasts_of(contrasts: dict, complication: str) -> list[str]:
    """Names of the contrasts of one complication, in config order."""
    return [n for n, spec in contrasts.items() if spec["complication"] == complication]


def hypothesis_pairs(hypotheses: list[dict], contrasts: dict) -> list[tuple[str, str]]:
    """``(contrast, state)`` of every pre-specified hypothesis, in each contrast of its complication."""
    return [(c, h["cell_state"]) for h in hypotheses for c in contrasts_of(contrasts, h["complication"])]


__all__ = ["UNASSIGNED", "Contrast", "Design", "as_bool", "bh_fdr", "contrast_columns", "contrast_groups",
           "contrasts_of", "design_columns", "design_matrix", "design_warnings", "donor_table", "hypothesis_pairs",
           "parse_bool", "read_samples"]
