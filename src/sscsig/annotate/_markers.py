"""Hierarchical, marker-driven annotation: lineage from protein + RNA, then fine states per lineage.

For every label the marker file defines components (``protein_pos``, ``protein_neg``,
``protein_any``, ``rna_pos``, ``rna_neg``). Each component is z-scored over the cells being
labelled (all cells for lineages, the lineage's cells for states), the label's score is the mean of
its components, scores are smoothed over the kNN graph of the integrated space (a cell's score
averaged with its neighbours'), and the best label wins. A component none of whose markers is in
the data counts as neutral evidence (0) in a lineage's mean rather than being left out: a lineage
whose defining markers are missing (e.g. other_T without its TCR antibodies) is not scored on its
remaining, shared markers alone. In a state's mean it is left out by default
(``state_missing_components: skip``): sibling states are judged on the evidence the data have for
each (on protein-only data, every state's RNA module is missing). Either way the label's coverage
(components usable / defined, how the unusable ones count) is reported. An antibody a cell's sample did not measure (``qc.panel_policy: majority | union``: NaN in
the protein layer) is left out of that cell's component; a component none of whose antibodies the
cell has is 0 for it (:func:`panel_evidence` lists what each label loses). ``*_confidence`` is the margin between the
best and second-best smoothed score; cells below ``min_confidence`` are ``Unassigned``. Lineages
are also sub-clustered (Leiden restricted to each lineage) for inspection.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from ..design import UNASSIGNED
from ..errors import InputError
from ..protein import (GATE_MIN_DEFAULTS, antibody_genes, antibody_key, find_protein, otsu_separation,
                       otsu_threshold, sample_measured)
from ..scoring import ModuleScorer

log = logging.getLogger(__name__)

COMPONENTS = ("protein_pos", "protein_neg", "protein_any", "rna_pos", "rna_neg")
PROTEIN_LAYERS = ("clr", "dsb", "totalvi_denoised")
#: where a substate's module-high cells are looked for: among its base state's cells, or among all the
#: cells of the lineage (a program such as EGR1/NF-kB that a mistake at the state level must not hide)
SUBSTATE_SCOPES = ("state", "lineage")


#: how a state's or substate's marker component that the data cannot score enters its score
#: (``annotate(state_missing_components=)``): left out of the mean, or counted as 0
STATE_MISSING = ("skip", "zero")

#: ``annotate(substate_group_key=)``: a group needs this many of the cells a substate is looked for
#: among to fit its own programme background; a smaller one keeps the pooled fit
SUBSTATE_GROUP_MIN_CELLS = 50


#: keys of config ``annotation`` that are not :func:`annotate`'s options (its files and the method)
NOT_MARKER_OPTIONS = ("markers", "method", "reference")


def marker_options(annotation: dict, **changes) -> dict:
    """The keyword options of :func:`annotate` in a validated config's ``annotation`` section.

    Every key but ``markers``, ``method`` and ``reference`` (the files and the method), so that a key
    the schema gains reaches :func:`annotate` from every caller (the annotate rule and the benchmarks)
    without a hand-written list to extend.

    Parameters
    ----------
    annotation
        ``validate_config(config)["annotation"]``.
    **changes
        Options that replace the section's values.

    Returns
    -------
    dict
        ``annotate(mdata, markers, **marker_options(...), seed=...)``.
    """
    return {k: v for k, v in annotation.items() if k not in NOT_MARKER_OPTIONS} | changes


def load_markers(path: str | Path) -> dict:
    """Read and check a marker file (``lineages`` and ``states`` per lineage)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"marker file not found: {path}")
    markers = yaml.safe_load(path.read_text()) or {}
    for key in ("lineages", "states"):
        if not markers.get(key):
            raise InputError(f"marker file {path}: '{key}' is missing or empty")
    for name, comp in markers["lineages"].items():
        _check_label(path, f"lineages.{name}", comp)
    for lineage, states in markers["states"].items():
        if lineage not in markers["lineages"]:
            raise InputError(f"marker file {path}: states given for unknown lineage {lineage!r}")
        if not states:
            raise InputError(f"marker file {path}: states.{lineage} is empty")
        for name, comp in states.items():
            _check_label(path, f"states.{lineage}.{name}", comp)
    return markers


def _check_label(path: Path, where: str, comp) -> None:
    if not isinstance(comp, dict):
        raise InputError(f"marker file {path}: {where} must be a mapping of components")
    for sub, sub_comp in (comp.get("substates") or {}).items():
        _check_label(path, f"{where}.substates.{sub}", sub_comp)
    unknown = set(comp) - set(COMPONENTS) - {"substates", "scope", "robust_z", "count_evidence"}
    if "count_evidence" in comp and (not where.startswith("states.") or ".substates." in where
                                     or not isinstance(comp["count_evidence"], bool) or not comp.get("rna_pos")):
        raise InputError(f"marker file {path}: {where}: 'count_evidence' is for states with rna_pos genes, true or "
                         "false (the state's calls need its genes' counts beyond the lineage's background)")
    if "scope" in comp and (".substates." not in where or comp["scope"] not in SUBSTATE_SCOPES):
        raise InputError(f"marker file {path}: {where}: 'scope' is for substates, one of {list(SUBSTATE_SCOPES)}")
    rz = comp.get("robust_z")
    if "robust_z" in comp and (".substates." not in where or isinstance(rz, bool) or not isinstance(rz, (int, float))
                               or rz <= 0):
        raise InputError(f"marker file {path}: {where}: 'robust_z' is for substates, a number > 0 (the substate's "
                         "own threshold instead of annotation.substate_robust_z)")
    if unknown:
        raise InputError(f"marker file {path}: {where} has unknown keys {sorted(unknown)}; allowed {list(COMPONENTS)}")
    if not any(comp.get(c) for c in COMPONENTS):
        raise InputError(f"marker file {path}: {where} has no markers (empty marker list)")


def _z(x: np.ndarray) -> np.ndarray:
    """Column z-scores; NaN (an antibody the cell's sample did not measure) stays NaN and the mean and
    SD are those of the cells that have a value."""
    x = np.asarray(x, dtype=np.float64)
    if not np.isnan(x).any():
        sd = x.std(0)
        return (x - x.mean(0)) / np.where(sd > 1e-9, sd, 1.0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column with no value at all
        mean, sd = np.nanmean(x, 0), np.nanstd(x, 0)
    sd = np.where(np.isfinite(sd) & (sd > 1e-9), sd, 1.0)
    return (x - np.where(np.isfinite(mean), mean, 0.0)) / sd


#: how each marker component is put on a common scale before the components are averaged
SCORE_CENTRES = ("otsu", "mean")


def _boundary_z(x: np.ndarray) -> np.ndarray:
    """Column scores centred at the boundary between the cells' low and high populations (Otsu's
    threshold) and scaled by the pooled SD within the two (0: at the boundary; +1: one within-population
    SD above it). NaN stays NaN; a constant column is 0.

    Unlike the z-score (centred at the mean), the zero does not move with a population's share: with
    z-scores the members of a majority state sit near 0, as do the non-members of a rare one, so that a
    cell weak in its own markers went to whichever rare state it was not (on real gated data this
    also invented B cells and monocytes among sorted T cells)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full_like(x, np.nan)
    for j in range(x.shape[1]):
        ok = ~np.isnan(x[:, j])
        v = x[ok, j]
        if len(np.unique(v)) < 2:
            out[ok, j] = 0.0
            continue
        t = otsu_threshold(v)
        # the pooled within-population variance: the total less Otsu's between-class share
        within = v.var() * (1.0 - otsu_separation(v, t))
        sd = np.sqrt(within) if within > 1e-12 else v.std()
        out[ok, j] = (v - t) / sd
    return out


#: how an RNA module component is centred (``"mean"``: as ``score_centre`` says)
MODULE_CENTRES = ("mean", "negative")


#: module_centre "negative": a module is centred at the cells that detect none of its genes when at least
#: this share of the cells scored are such cells (else it has no population without it: z-scores)
NEGATIVE_MIN_SHARE = 0.2


def _negative_z(x: np.ndarray, none: np.ndarray) -> np.ndarray:
    """Module scores centred at the median score of the cells that detect none of the module's genes
    (``none``) and scaled by the scores' SD, when at least :data:`NEGATIVE_MIN_SHARE` of the cells
    detect none; z-scores otherwise (a module nearly every cell detects, such as CD74 in monocytes, has
    no population without it). NaN stays NaN; a constant vector is 0.

    So for a sparse programme 0 means "no more than the cells without it", whatever the state's share.
    Z-scores put that level at minus the share's effect, so that a cell with no evidence for any
    state of its lineage went to the rarest (on the half-panel twin, 101 of 171 CD4 T cells with
    none of their states' genes detected were called Treg)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full_like(x, np.nan)
    ok = ~np.isnan(x)
    v = x[ok]
    if len(np.unique(v)) < 2:
        out[ok] = 0.0
        return out
    none = np.asarray(none, dtype=bool)[ok]
    centre = np.median(v[none]) if none.mean() >= NEGATIVE_MIN_SHARE else v.mean()
    sd = v.std()
    out[ok] = (v - centre) / (sd if sd > 1e-12 else 1.0)
    return out


def _row_reduce(z: np.ndarray, how: str) -> np.ndarray:
    """Per cell, the max or mean of its markers' z that were measured; 0 (neutral) where none was."""
    if not np.isnan(z).any():
        return z.max(1) if how == "max" else z.mean(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows
        val = np.nanmax(z, 1) if how == "max" else np.nanmean(z, 1)
    return np.where(np.isnan(val), 0.0, val)


class _Scorer:
    """Caches protein CLR columns and RNA module scores over all cells."""

    def __init__(self, mdata: md.MuData, *, seed: int, min_genes: int, protein_layer: str = "clr",
                 standins: dict[str, list[str]] | None = None, centre: str = "mean", module_centre: str = "mean",
                 counts: ad.AnnData | None = None, library: np.ndarray | None = None,
                 state_missing: str = "skip"):
        self.rna = mdata["rna"]
        if state_missing not in STATE_MISSING:
            raise InputError(f"annotation.state_missing_components {state_missing!r} is not one of "
                             f"{', '.join(STATE_MISSING)}")
        #: :meth:`score_labels` of states and substates: a component the data cannot score is left out ("skip")
        #: of the label's mean or counted as 0 ("zero"); a lineage's is always 0 (:meth:`score`)
        self.state_missing = state_missing
        #: per cell, the total raw counts (:func:`count_evidence`); None: not known
        self.library = None if library is None else np.asarray(library, dtype=float)
        if counts is not None and counts.n_obs != self.rna.n_obs:
            raise ValueError(f"annotate: counts has {counts.n_obs} cells, the cohort's RNA {self.rna.n_obs}")
        self.counts = counts
        self._count_columns: dict[tuple, sp.csr_matrix] = {}  # gene_counts' cache
        self.prot = mdata["prot"]
        if protein_layer not in PROTEIN_LAYERS:
            raise InputError(f"annotation.protein_layer {protein_layer!r} is not one of {', '.join(PROTEIN_LAYERS)}")
        if protein_layer not in self.prot.layers:
            raise InputError(f"annotation.protein_layer {protein_layer!r}: the cohort has no prot.layers"
                             f"[{protein_layer!r}] (dsb needs raw_path in the sheet; totalvi_denoised needs "
                             "integration.method totalvi)")
        if centre not in SCORE_CENTRES:
            raise InputError(f"annotation.score_centre {centre!r} is not one of {', '.join(SCORE_CENTRES)}")
        if module_centre not in MODULE_CENTRES:
            raise InputError(f"annotation.module_centre {module_centre!r} is not one of {', '.join(MODULE_CENTRES)}")
        self.scale = _boundary_z if centre == "otsu" else _z
        self.module_centre = module_centre
        x = self.prot.layers[protein_layer]
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        # denoised protein is on the count scale: log1p makes it comparable to CLR / DSB
        self.clr = np.log1p(x) if protein_layer == "totalvi_denoised" else x
        self.seed = seed
        self.min_genes = min_genes
        self._modules: dict[tuple, np.ndarray] = {}
        self._none: dict[tuple, np.ndarray] = {}  # per module: the cells that detect none of its genes
        self._module_scorer: ModuleScorer | None = None
        self.missing: set[str] = set()
        self.coverage: dict[str, dict] = {}
        self.standin_table = standins
        #: antibody absent from the panel -> the transcript(s) scored in its place
        self.standins: dict[str, str] = {}
        self._standin_cols: dict[str, np.ndarray | None] = {}

    def standin(self, name: str) -> np.ndarray | None:
        """Mean log-normalised expression of the genes encoding antibody ``name`` (``None``: no
        stand-in table, the antibody is not in it, or none of its genes is in the data)."""
        if self.standin_table is None:
            return None
        if name not in self._standin_cols:
            genes = [g for g in self.standin_table.get(antibody_key(name), []) if g in self.rna.var_names]
            col = None
            if genes:
                x = self.rna[:, genes].X
                col = np.asarray(x.mean(1)).ravel().astype(np.float64)
                self.standins[name] = ",".join(genes)
            self._standin_cols[name] = col
        return self._standin_cols[name]

    def protein(self, names: list[str]) -> np.ndarray | None:
        """Cells x markers: the antibodies' normalised values; an antibody the panel lacks is its
        transcript's expression when stand-ins are on and it has one, else left out."""
        cols = []
        for n in names:
            var = find_protein(self.prot.var, n)
            if var is None:
                self.missing.add(f"protein {n}")
                alt = self.standin(n)
                if alt is not None:
                    cols.append(alt)
                continue
            cols.append(self.clr[:, self.prot.var_names.get_loc(var)])
        return np.column_stack(cols) if cols else None

    def positive(self, names: list[str], *, layer: str, min_value: float,
                 thresholds: dict[str, float | np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Cells x markers: the antibody's ``layer`` value >= its threshold (``thresholds[feature]``, a
        number or one per cell; else ``min_value``), and whether the cell's sample measured it (NaN: not
        measured). ``None``: none of them is in the panel."""
        found = [v for v in (find_protein(self.prot.var, n) for n in names) if v is not None]
        if not found:
            return None
        x = self.prot.layers[layer][:, [self.prot.var_names.get_loc(v) for v in found]]
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        measured = ~np.isnan(x)
        # a level per antibody: one number, or one per cell (levels learned per group of samples)
        levels = [np.asarray((thresholds or {}).get(v, min_value), dtype=float) for v in found]
        with np.errstate(invalid="ignore"):
            return measured & np.column_stack([x[:, j] >= t for j, t in enumerate(levels)]), measured

    def scorable(self, genes: list[str]) -> list[str]:
        """The genes of a module the data has, or ``[]`` when fewer than ``min_genes`` are (no module score)."""
        present = [g for g in genes if g in self.rna.var_names]
        return present if len(present) >= self.min_genes else []

    def module(self, genes: list[str]) -> np.ndarray | None:
        key = tuple(sorted(genes))
        if key not in self._modules:
            present = self.scorable(genes)
            self.missing.update(f"gene {g}" for g in genes if g not in self.rna.var_names)
            if not present:
                self._modules[key] = None
            else:
                if self._module_scorer is None:  # scanpy's score_genes, the gene means computed once
                    self._module_scorer = ModuleScorer(self.rna.X, self.rna.var_names)
                self._modules[key] = self._module_scorer.score(present, random_state=self.seed)
        return self._modules[key]

    @property
    def count_source(self) -> ad.AnnData | None:
        """Where raw counts come from: the ``counts`` given to :func:`annotate`, else the RNA (its
        ``layers['counts']``); ``None`` without either."""
        return self.counts if self.counts is not None else self.rna if "counts" in self.rna.layers else None

    def gene_counts(self, genes: list[str]) -> tuple[list[str], sp.spmatrix | None]:
        """Raw counts of those of ``genes`` that the RNA and the counts have, every cell: from the
        ``counts`` given to :func:`annotate`, else ``rna.layers['counts']``; ``None`` without either."""
        source = self.count_source
        if source is None:
            return [], None
        present = [g for g in genes if g in self.rna.var_names and g in source.var_names]
        key = tuple(present)
        if key not in self._count_columns:  # a lineage's state genes, read once
            x = source.X if source is self.counts else source.layers["counts"]
            self._count_columns[key] = sp.csr_matrix(x[:, [source.var_names.get_loc(g) for g in present]])
        return present, self._count_columns[key]

    def gene_total(self, genes: list[str], rows: np.ndarray) -> np.ndarray | None:
        """Per cell of ``rows``, the summed raw counts of those of ``genes`` in the data
        (:meth:`gene_counts`); ``None`` without raw counts or without any of the genes."""
        present, counts = self.gene_counts(genes)
        if counts is None or not present:
            return None
        return np.asarray(counts[rows].sum(1), dtype=np.float64).ravel()

    def detected_none(self, genes: list[str]) -> np.ndarray:
        """Per cell, whether it detects none of the module's genes (in the data)."""
        key = tuple(sorted(genes))
        if key not in self._none:
            present = [g for g in genes if g in self.rna.var_names]
            x = self.rna[:, present].X
            self._none[key] = np.asarray((x > 0).sum(1)).ravel() == 0
        return self._none[key]

    def score(self, comp: dict, rows: np.ndarray, *, label: str | None = None,
              rna_blank: np.ndarray | None = None, missing: str = "zero") -> np.ndarray | None:
        """Mean of the label's components over ``rows``; a component with no marker in the data is
        0 (neutral) in the mean (``missing="zero"``) or left out of it (``"skip"``). ``None`` when no
        component is usable. With ``label``, the coverage (usable / defined components, the unusable
        ones, how they count) is recorded. ``rna_blank``: per row, whether the RNA components are 0
        (neutral) for that cell (:func:`state_evidence`)."""
        parts, defined, unusable = [], 0, []
        for kind in COMPONENTS:
            names = comp.get(kind) or []
            if not names:
                continue
            defined += 1
            if kind.startswith("protein"):
                m = self.protein(names)
                if m is None:
                    unusable.append(kind)
                    continue
                val = _row_reduce(self.scale(m[rows]), "max" if kind == "protein_any" else "mean")
            else:
                m = self.module(names)
                if m is None:
                    unusable.append(kind)
                    continue
                val = (_negative_z(m[rows], self.detected_none(names)[rows]) if self.module_centre == "negative"
                       else self.scale(m[rows][:, None])[:, 0])
                if rna_blank is not None:
                    val = np.where(rna_blank, 0.0, val)
            parts.append(-val if kind.endswith("neg") else val)
        if label is not None:
            subs = [f"{n}->{self.standins[n]}" for kind in COMPONENTS if kind.startswith("protein")
                    for n in comp.get(kind) or [] if n in self.standins]
            self.coverage[label] = {"components_usable": len(parts), "components_defined": defined,
                                    "unusable": ",".join(unusable), "transcript_standins": ",".join(subs),
                                    "unusable_count_as": "0" if missing == "zero" else "left out"}
        return np.sum(parts, axis=0) / (defined if missing == "zero" else len(parts)) if parts else None

    def score_labels(self, labels: dict, rows: np.ndarray, *, kind: str,
                     rna_blank: np.ndarray | None = None) -> tuple[list[str], list[np.ndarray]]:
        """Scores of every label (states, substates) that has markers in the data (others are skipped with
        a warning); a component the data cannot score counts as :attr:`state_missing` says."""
        names, scores = [], []
        for name, comp in labels.items():
            s = self.score(comp, rows, label=name, rna_blank=rna_blank, missing=self.state_missing)
            if s is None:
                log.warning("%s %s: none of its markers is in the data; not assigned", kind, name)
                continue
            names.append(name)
            scores.append(s)
        return names, scores


def _labels(markers: dict):
    """(label, components) of every lineage, state and substate of a marker file."""
    for name, comp in markers["lineages"].items():
        yield name, comp
    for lin, states in markers["states"].items():
        for name, comp in states.items():
            yield f"{lin}/{name}", comp
            for sub, sub_comp in (comp.get("substates") or {}).items():
                yield f"{lin}/{name}/{sub}", sub_comp


def panel_evidence(markers: dict | None, panel: pd.DataFrame | list[dict], *, method: str = "markers",
                   standins: dict[str, str] | None = None) -> pd.DataFrame:
    """The protein evidence each label of the marker file lacks because of the antibody panels.

    Parameters
    ----------
    markers
        :func:`load_markers`' result (unused with ``method="reference"``).
    panel
        The merge's panel table (:func:`sscsig.protein.panel_plan` with a ``target`` column:
        antibodies x samples status, ``kept``; indexed by antibody, or the merge report's records).
    method
        ``annotation.method``. With ``reference`` the rows are the antibodies the mapping's model
        leaves out (those not every sample measured), label ``reference mapping (all)``.
    standins
        :func:`annotate`'s ``report["transcript_standins"]``: antibody -> the transcript(s) scored in
        its place; fills the column ``scored_by_transcript`` (empty: the evidence is lost).

    Returns
    -------
    One row per label and protein marker that not every sample contributes: ``label``
    (``lineage``, ``lineage/state``, ``lineage/state/substate``), ``component``, ``marker``,
    ``status`` (``not in any panel``; ``dropped`` from the whole cohort by ``qc.panel_policy``
    although some samples measured it; ``missing in some samples``: kept and scored where measured)
    and the samples whose panel lacks it, and ``scored_by_transcript``.
    """
    if not isinstance(panel, pd.DataFrame):
        panel = pd.DataFrame(panel).set_index("antibody")
    samples = [c for c in panel.columns if c not in ("target", "n_samples", "kept")]
    if method == "reference":
        out = panel.loc[panel["n_samples"].lt(len(samples)) | ~panel["kept"].astype(bool)]
        return pd.DataFrame({"label": "reference mapping (all)", "component": "model input",
                             "marker": out["target"].astype(str), "status": "not in every sample's panel",
                             "n_samples_without": len(samples) - out["n_samples"],
                             "samples_without": [",".join(s for s in samples if not sample_measured(out.at[a, s]))
                                                 for a in out.index]}).reset_index(drop=True)
    var = pd.DataFrame({"antibody": panel["target"].astype(str).to_numpy()}, index=panel.index)
    rows = []
    for label, comp in _labels(markers):
        for kind in ("protein_pos", "protein_neg", "protein_any"):
            for marker in comp.get(kind) or []:
                feat = find_protein(var, marker)
                if feat is None:
                    status, without = "not in any panel", samples
                else:
                    without = [s for s in samples if not sample_measured(panel.at[feat, s])]
                    if not bool(panel.at[feat, "kept"]):
                        status = "dropped"  # from every sample, because these lacked it
                    elif without:
                        status = "missing in some samples"
                    else:
                        continue
                rows.append({"label": label, "component": kind, "marker": marker, "status": status,
                             "n_samples_without": len(without), "samples_without": ",".join(without),
                             "scored_by_transcript": (standins or {}).get(marker, "") if status != "missing in some samples" else ""})
    out = pd.DataFrame(rows, columns=["label", "component", "marker", "status", "n_samples_without",
                                      "samples_without", "scored_by_transcript"])
    for label, lost in out[out["status"] != "not in any panel"].groupby("label", sort=False):
        log.warning("%s: protein evidence the panels do not give every sample: %s", label,
                    "; ".join(f"{r.marker} ({r.status}, {r.n_samples_without} samples without"
                              + (f"; scored by its transcript {r.scored_by_transcript})" if r.scored_by_transcript else ")")
                              for r in lost.itertuples()))
    return out


def _smooth(scores: np.ndarray, graph: sp.spmatrix, weight: float) -> np.ndarray:
    if weight <= 0:
        return scores
    g = sp.csr_matrix(graph, dtype=np.float64)
    deg = np.asarray(g.sum(1)).ravel()
    g = sp.diags(1 / np.where(deg > 0, deg, 1)) @ g
    neigh = g @ scores
    has = (deg > 0)[:, None]
    return np.where(has, (1 - weight) * scores + weight * neigh, scores)


def _median_sd(x: np.ndarray) -> tuple[float, float]:
    """Median and robust SD (1.4826 x the median absolute deviation)."""
    med = float(np.median(x))
    return med, float(np.median(np.abs(x - med))) * 1.4826


def _robust_z(x: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """``x`` as robust z: centred and scaled by the median / robust SD of ``x[among]`` (all of ``x``
    without a mask)."""
    med, mad = _median_sd(x if among is None else x[among])
    return (x - med) / (mad if mad > 1e-9 else 1.0)


def count_evidence(counts: np.ndarray, library: np.ndarray | None, candidates: np.ndarray, *,
                   alpha: float) -> np.ndarray:
    """Whether each cell's raw counts of a gene programme are more than its background explains.

    A cell's expected count is the background rate times its library size, and it shows the programme
    when the upper tail P(X >= its count) is at most ``alpha`` (Poisson while the background is
    estimated, negative binomial in the end: below). The background rate is the
    programme's share of all counts (summed programme counts over summed library sizes) in the cells
    that do not show it: from all cells at first, then again without the cells found to show it,
    until that set stops changing (the programme's own cells would inflate it; leaving out every
    candidate instead would leave out the stray counts too and make any count evidence). A robust z
    of a log-normalised module score cannot say this in sparse data: where most cells detect none of
    the genes the MAD is tiny, and one count makes an outlier (on the 27 x 800 demo twin, 108
    classical monocytes with one ISG count were called CD14.ISG).

    That split leaves the programme's weakly detected cells (one or two counts) in the background,
    where they can hold the rate high enough that they never pass (on the study twin, activated naive
    B cells: a background of 0.15 counts a cell, where the naive B cells had 0.04, and none of the 18
    activated cells with one or two counts passed). So the rate is then estimated again as the lower
    component of a two-Poisson mixture (each cell's mean its library size times the component's rate),
    fitted by EM from that split: a cell weighs on the background by its probability of belonging to
    it rather than all or nothing. Where no cell shows the programme there is no second component, and
    the split's background stands.

    The final test's null is a negative binomial, not a Poisson: mean the background rate times the
    cell's library size, variance ``mu + phi mu^2`` with ``phi`` estimated from the background cells by
    moments (weighted by their probability of being background; 0, a Poisson, where they show no
    overdispersion). Real counts are overdispersed, and a broad background (the immediate-early genes
    of the EGR1 / NF-kB programme: 1.5-2 counts a monocyte on the twin, ~120 per 10,000 on real
    pbmc10k) passes a Poisson test in its upper tail: on pbmc10k three monocytes of a healthy donor
    whose programme counts were 1.3-2.4 times the median; on Kang 2018 2.2% of the control monocytes
    as ISG-high. With the negative binomial: none, and 0.6%.

    Parameters
    ----------
    counts
        Per cell, the summed raw counts of the programme's genes.
    library
        Per cell, the total raw counts (``obs['total_counts']``); ``None``: equal for every cell.
    candidates
        The cells to test (all cells, candidates or not, estimate the background).
    alpha
        The Poisson upper-tail probability at or below which a cell shows the programme.

    Returns
    -------
    Boolean per cell: a candidate with evidence (non-candidates are ``False``).
    """
    candidates = np.asarray(candidates, dtype=bool)
    return candidates & (count_tail(counts, library, alpha=alpha) <= alpha)


def count_tail(counts: np.ndarray, library: np.ndarray | None, *, alpha: float) -> np.ndarray:
    """Each cell's upper-tail probability under :func:`count_evidence`'s background (its negative
    binomial, or Poisson), the background estimated with ``alpha`` as there: 0 for a cell with counts
    where the background never detects the genes, 1 for a cell without."""
    from scipy.stats import nbinom, poisson

    counts = np.asarray(counts, dtype=float)
    library = np.ones(len(counts)) if library is None else np.asarray(library, dtype=float)
    shows = np.zeros(len(counts), bool)
    for _ in range(50):  # converges in a few rounds: the set only grows while the rate falls
        bg = ~shows
        if library[bg].sum() <= 0:
            break
        rate = counts[bg].sum() / library[bg].sum()
        # a background that never detects the genes: any count is evidence
        new = poisson.sf(counts - 1, rate * library) <= alpha if rate > 0 else counts > 0
        if np.array_equal(new, shows):
            break
        shows = new
    weights = _mixture_background(counts, library, shows)
    background = (~shows).astype(float) if weights is None else 1.0 - weights
    if library @ background <= 0:
        return np.where(shows, 0.0, 1.0)
    mu = (counts @ background) / (library @ background) * library
    if not (mu > 0).any():  # a background that never detects the genes: any count is evidence
        return np.where(counts > 0, 0.0, 1.0)
    # overdispersion of the background cells, by moments: Var = mu + phi mu^2
    phi = max(0.0, float(background @ ((counts - mu) ** 2 - mu) / max(background @ mu**2, 1e-12)))
    if phi > 0:
        return nbinom.sf(counts - 1, 1.0 / phi, 1.0 / (1.0 + phi * mu))
    return poisson.sf(counts - 1, mu)


def _mixture_background(counts: np.ndarray, library: np.ndarray, shows: np.ndarray, *,
                        max_iter: int = 200, tol: float = 1e-6) -> np.ndarray | None:
    """Each cell's probability of showing the programme, for :func:`count_evidence`'s background: the
    upper component of a two-Poisson mixture, ``x_i ~ (1 - pi) Pois(r0 l_i) + pi Pois(r1 l_i)``, fitted
    by EM from the membership ``shows``. ``None`` (keep the split) when every cell or none shows the
    programme, or the components do not separate (``r1 <= r0``)."""
    from scipy.stats import poisson

    if not shows.any() or shows.all():
        return None
    w = shows.astype(float)  # each cell's probability of showing the programme
    for _ in range(max_iter):
        r0 = counts @ (1 - w) / max(library @ (1 - w), 1e-12)
        r1 = counts @ w / max(library @ w, 1e-12)
        if r1 <= r0:
            return None
        pi = w.mean()
        with np.errstate(divide="ignore", invalid="ignore"):
            d = (poisson.logpmf(counts, r0 * library) + np.log1p(-pi)
                 - poisson.logpmf(counts, r1 * library) - np.log(pi))
        new = 1.0 / (1.0 + np.exp(np.clip(np.nan_to_num(d, nan=0.0), -50, 50)))
        done = np.abs(new - w).max() < tol
        w = new
        if done or not 0 < w.mean() < 1:
            break
    return w if 0 < w.mean() < 1 else None


def _evidence_adds_up(z: np.ndarray, tail: np.ndarray, *, robust_z: float, alpha: float) -> np.ndarray:
    """A module-high substate's two kinds of evidence taken together: the robust z of the cell's
    smoothed score (its neighbourhood) and the normal quantile ``q`` of its count test's upper tail
    (``tail``, :func:`count_tail`). A cell passes when it shows the programme in its counts (``tail``
    at most ``alpha``) and ``z + q`` reaches ``robust_z + q(alpha)``, the corner of the two thresholds,
    with ``z`` above 1: strong count evidence makes up for a moderate neighbourhood and the other way
    round. Both at once, ``z > robust_z`` and ``tail <= alpha``, missed a weak programme's cells: on
    the second simulator's seed 1 (an EGR1 / NF-kB programme of small folds) 48 of 90 EGR1+ monocytes
    (2 false calls); with the sum 67 (4)."""
    from scipy.stats import norm

    q = norm.isf(np.clip(tail, 0.0, 1.0))  # inf where the background never detects the genes
    return (tail <= alpha) & (z > 1.0) & (z + q > robust_z + norm.isf(alpha))


def _group_rows(groups: np.ndarray, *, min_cells: int) -> list[np.ndarray]:
    """Positions of each group with at least ``min_cells`` entries in ``groups`` (the rest: none, they stay
    pooled)."""
    values, counts = np.unique(groups, return_counts=True)
    return [np.flatnonzero(groups == v) for v, c in zip(values, counts) if c >= min_cells]


def _gate_substates(
    scorer: "_Scorer", subs: dict, rows: np.ndarray, graph: sp.spmatrix, *, smoothing: float, robust_z: float,
    alpha: float | None = None, dropped: dict | None = None, groups: np.ndarray | None = None,
) -> np.ndarray:
    """Module-high substates of a base state: robust z of the smoothed substate score above
    ``substate_robust_z`` (or the substate's own ``robust_z``); of the substates a cell passes, the
    highest z wins. Returns labels (None = stays base).

    Without ``alpha`` or raw counts, the robust z is over all these cells (median / MAD). With them,
    a cell must also show the programme in its counts (:func:`count_evidence`), the z is taken
    against the cells that do not (their median / MAD), and the z and the count evidence are added
    up (:func:`_evidence_adds_up`), so that a programme most of the cells carry
    is still found (Kang 2018: IFN-beta-stimulated monocytes, half the lineage, had ISG z ~0.4 over
    all monocytes). A substate with antibodies among its markers keeps the robust z over all cells:
    its antibodies are evidence its gene counts cannot weigh (the study file's ILC). ``dropped``
    counts, per substate, the cells the robust z over all cells would call that show no count evidence.

    ``groups`` (per cohort cell; ``annotation.substate_group_key``): within each group that holds at
    least ``SUBSTATE_GROUP_MIN_CELLS`` of these cells, the count test's background is fitted to the
    group's cells alone, and the module score is shifted so that the median of the group's cells
    without count evidence meets that of all such cells, before smoothing; a smaller group keeps the
    pooled fit and score. A batch that expresses the programme's genes less (or more) then neither
    hides its programme cells nor adds false ones, but a programme most of a group's cells carry
    becomes that group's background (docs/annotation.md "Programme background per batch")."""
    sub_graph = graph[rows][:, rows]
    names, scores = scorer.score_labels(subs, rows, kind="substate")
    out = np.full(len(rows), None, dtype=object)
    if not names:
        return out
    thr = np.array([subs[nm].get("robust_z", robust_z) for nm in names], dtype=float)
    z, hit = np.zeros((len(rows), len(names))), np.zeros((len(rows), len(names)), bool)
    parts = [] if groups is None else _group_rows(np.asarray(groups)[rows], min_cells=SUBSTATE_GROUP_MIN_CELLS)
    for j, nm in enumerate(names):
        rna_only = not any(subs[nm].get(kind) for kind in COMPONENTS if kind.startswith("protein"))
        x = scorer.gene_total(subs[nm].get("rna_pos") or [], rows) if alpha is not None and rna_only else None
        if x is None:
            smooth = _smooth(scores[j][:, None], sub_graph, smoothing)[:, 0]
            z[:, j] = _robust_z(smooth)
            hit[:, j] = z[:, j] > thr[j]
            continue
        library = None if scorer.library is None else scorer.library[rows]
        tail = count_tail(x, library, alpha=alpha)
        for idx in parts:  # each large group its own background
            tail[idx] = count_tail(x[idx], None if library is None else library[idx], alpha=alpha)
        shows = tail <= alpha
        score = scores[j].copy()
        if parts and (~shows).any():
            centre = np.median(score[~shows])
            for idx in parts:
                background = idx[~shows[idx]]
                if len(background) >= 10:
                    score[idx] += centre - np.median(score[background])
        smooth = _smooth(score[:, None], sub_graph, smoothing)[:, 0]
        # the robust z against the cells whose counts the background explains
        z[:, j] = _robust_z(smooth, ~shows if (~shows).sum() >= 10 else None)
        hit[:, j] = _evidence_adds_up(z[:, j], tail, robust_z=thr[j], alpha=alpha)
        if dropped is not None:
            dropped[nm] = dropped.get(nm, 0) + int(((_robust_z(smooth) > thr[j]) & ~shows).sum())
    passed = np.where(hit, z, -np.inf)
    best = passed.argmax(1)
    hit = np.isfinite(passed[np.arange(len(rows)), best])
    out[hit] = np.array(names, dtype=object)[best[hit]]
    return out


def _substates(scorer: "_Scorer", states: dict, lab: np.ndarray, rows: np.ndarray, graph: sp.spmatrix, *,
               smoothing: float, robust_z: float, alpha: float | None = None,
               dropped: dict | None = None, groups: np.ndarray | None = None) -> np.ndarray:
    """Module-high substates of one lineage's states. ``scope: state`` (default): among the base
    state's cells; ``scope: lineage``: among all the lineage's cells (robust z over them), whatever
    state they were given, so that a program is found even where the state call was wrong. A
    state-scope hit, the more specific one (``CD16.ISG`` among CD16 monocytes rather than the
    lineage-wide ``CD14.ISG``), takes precedence over a lineage-scope one."""
    lab = lab.copy()
    wide = {}
    narrow_hit = np.zeros(len(lab), bool)
    for sname, comp in states.items():
        subs = comp.get("substates") or {}
        wide.update({k: v for k, v in subs.items() if v.get("scope", "state") == "lineage"})
        narrow = {k: v for k, v in subs.items() if v.get("scope", "state") == "state"}
        base_rows = np.flatnonzero(lab == sname)
        if not narrow or len(base_rows) < 10:
            continue
        sub_lab = _gate_substates(scorer, narrow, rows[base_rows], graph, smoothing=smoothing, robust_z=robust_z,
                                  alpha=alpha, dropped=dropped, groups=groups)
        hit = sub_lab != None  # noqa: E711
        lab[base_rows[hit]] = sub_lab[hit]
        narrow_hit[base_rows[hit]] = True
    if wide and len(rows) >= 10:
        sub_lab = _gate_substates(scorer, wide, rows, graph, smoothing=smoothing, robust_z=robust_z, alpha=alpha,
                                  dropped=dropped, groups=groups)
        hit = (sub_lab != None) & ~narrow_hit  # noqa: E711
        lab[hit] = sub_lab[hit]
    return lab


def lineage_gate(scorer: "_Scorer", comp: dict, *, layer: str, min_value: float,
                 thresholds: dict[str, dict] | None = None, states: dict | None = None) -> tuple[np.ndarray, str]:
    """Absolute protein evidence for one lineage: a cell may take the lineage only if it is positive
    (``layer`` >= ``min_value``) for at least one ``protein_pos`` marker, for at least one
    ``protein_any`` marker, and for no ``protein_neg`` marker. Markers missing from the panel do not
    gate, nor do markers a cell's sample did not measure (a cell none of whose ``protein_pos``
    markers was measured is not gated by them). The ``protein_any`` markers each mark some of the
    lineage's states (the states' own ``protein_pos``): with ``states`` given, a cell whose sample
    measured none of one such state's markers is not refused by them (:func:`_any_unrefuted`).
    ``thresholds``: per antibody feature, the ``admit``
    and ``veto`` levels that replace ``min_value`` for the positive and the negative markers (as
    :func:`gate_thresholds` returns them).

    ``states``: the lineage's states in the marker file. A state that lists as ``protein_neg`` every
    one of the lineage's positive markers a cell's sample measured (plasmablasts are CD20-negative:
    a panel with CD20 but no CD19) would be vetoed whole; such a cell is also admitted if it is
    positive for each of that state's own ``protein_pos`` markers its sample measured. Where the
    panel has none of those, the state's cells stay vetoed and a warning names the state (not
    gating the lineage then would let it be invented: on real sorted T cells without CD11c / CD16,
    CD16.Mono's CD14-negativity would have admitted 7% of them as monocytes).

    Returns (allowed per cell, the markers that gated, with the states admitted by their own
    markers in brackets)."""
    n = scorer.prot.n_obs
    allowed = np.ones(n, bool)
    used = []
    for kind in ("protein_pos", "protein_any", "protein_neg"):
        names = comp.get(kind) or []
        which = "veto" if kind == "protein_neg" else "admit"
        levels = {v: t[which] for v, t in (thresholds or {}).items()}
        res = scorer.positive(names, layer=layer, min_value=min_value, thresholds=levels) if names else None
        if res is None:
            continue
        pos, measured = res
        if kind == "protein_neg":
            used.append(kind)
            allowed &= ~pos.any(1)
            continue
        ok = pos.any(1) | ~measured.any(1)
        found = [find_protein(scorer.prot.var, m) for m in names]
        found = [v for v in found if v is not None]
        if kind == "protein_any":
            ok |= _any_unrefuted(scorer, names, found, measured, states)
        own = []  # the states admitted by their own markers
        for state, sc in (states or {}).items():
            neg = {find_protein(scorer.prot.var, m) for m in sc.get("protein_neg") or []}
            outside = [j for j, v in enumerate(found) if v not in neg]
            uncovered = measured.any(1) & ~measured[:, outside].any(1)  # the state cannot pass this marker set
            if not uncovered.any():
                continue
            sp_ = scorer.positive(sc.get("protein_pos") or [], layer=layer, min_value=min_value, thresholds=levels)
            if sp_ is None:  # nothing to admit its cells by: they stay vetoed (not gating here invented
                # monocytes among real sorted T cells, CD16.Mono being CD14-negative)
                log.warning("lineage gate: %s lists every positive marker of its lineage that the panel has "
                            "(%s) as negative and the panel has none of its own protein_pos: its cells are "
                            "vetoed from the lineage", state, ", ".join(scorer.prot.var.loc[found, "antibody"]))
                continue
            spos, smeas = sp_
            ok |= uncovered & smeas.any(1) & (spos | ~smeas).all(1)
            own.append(state)
        used.append(kind + (f" [or {', '.join(own)} by its own]" if own else ""))
        allowed &= ok
    return allowed, ",".join(used)


def _any_unrefuted(scorer: "_Scorer", names: list[str], found: list[str], measured: np.ndarray,
                   states: dict | None) -> np.ndarray:
    """Per cell, whether :func:`lineage_gate`'s ``protein_any`` markers cannot refuse it: each such marker
    marks part of the lineage (``other_T``: TCR Va7.2 and CD161 its MAIT cells, TCR gd its gd T cells,
    as the states' own ``protein_pos`` say), so a cell negative for the measured ones may still belong to a
    state none of whose markers among them its sample measured (a panel with CD161 but no TCR gd antibody
    would otherwise refuse every CD161-negative gd T cell). ``found``: the panel's features of ``names``,
    ``measured`` their columns."""
    out = np.zeros(measured.shape[0], bool)
    keys = {antibody_key(m) for m in names}
    for comp in (states or {}).values():
        own = [m for m in comp.get("protein_pos") or [] if antibody_key(m) in keys]
        if not own:
            continue
        cols = [found.index(v) for v in (find_protein(scorer.prot.var, m) for m in own) if v in found]
        out |= ~measured[:, cols].any(1) if cols else True
    return out


#: gate_threshold "auto": how far above its negatives (in robust SDs of their values) an antibody's
#: positive cells must sit to count as a population of their own, and the admit / veto levels; the veto
#: level is never below the positive cells' median minus GATE_VETO_WITHIN of their robust SDs
GATE_SEPARATED, GATE_ADMIT, GATE_VETO, GATE_VETO_WITHIN = 2.0, 2.0, 4.0, 2.0
GATE_THRESHOLDS = ("fixed", "auto")
#: annotation.gate_lineages: gate every lineage, or only those none of whose antibodies has a positive
#: population in the cohort (:func:`unseparated_lineages`)
GATE_LINEAGES = ("all", "unseparated")
#: annotation.gate_negatives: a lineage's protein_neg antibodies veto it in every lineage, or only where
#: the gate applies (``gate_lineages``)
GATE_NEGATIVES = ("all", "gated")


def _own_positive_markers(markers: dict) -> dict[str, tuple[list[str], list[str]]]:
    """Per lineage, its own positive markers: the ``protein_pos`` / ``protein_any`` antibodies and the
    ``rna_pos`` genes that no other lineage of the marker file lists as positive (sorted)."""
    positive = {lin: ({n for kind in ("protein_pos", "protein_any") for n in comp.get(kind) or []},
                      set(comp.get("rna_pos") or []))
                for lin, comp in markers["lineages"].items()}
    out = {}
    for lin, (prot, genes) in positive.items():
        others = [v for k, v in positive.items() if k != lin]
        out[lin] = (sorted(prot - set().union(*(p for p, _ in others))),
                    sorted(genes - set().union(*(g for _, g in others))))
    return out


def _lineages_without_own_markers(markers: dict, scorer: "_Scorer") -> dict[str, list[str]]:
    """The lineages none of whose own positive markers is in the data, with those markers.

    A lineage's own positive markers are its ``protein_pos`` / ``protein_any`` antibodies and
    ``rna_pos`` genes that no other lineage lists as positive (other_T's CD3 is also CD4_T's and
    CD8_T's; its own are TCR Va7.2, TCR gd, CD161, TRDC, SLC4A10 and KLRB1). Without any of them the
    lineage's score rests on markers it shares and on negative markers, which cannot tell it from the
    lineages it shares them with: in 1,186 real CD3+ CD8+ CD4- cells with a 14-antibody panel and no
    RNA, annotated as a cohort of their own (pbmc10k, docs/annotation.md "Protein alone on 7,472 real
    PBMCs"), other_T (CD3+ CD4-) took 31% of the cells from CD8 T, the z-scores of CD8 being noise
    within cells that all carry it. An
    antibody the panel lacks counts as present where its transcript stands in (``rna_standins``); a
    gene module as present when :func:`annotate`'s ``min_genes_per_module`` of its genes are. A
    lineage whose positive markers are all shared with others is judged by them and not listed.
    Deterministic.

    Returns
    -------
    ``{lineage: sorted own positive markers}`` for each lineage the data gives no own evidence of.
    """
    out = {}
    for lin, (own_prot, own_genes) in _own_positive_markers(markers).items():
        if not own_prot and not own_genes:
            continue
        if (own_prot and scorer.protein(own_prot) is not None) or scorer.scorable(own_genes):
            continue
        out[lin] = own_prot + own_genes
    return out


def unseparated_lineages(markers: dict, levels: dict[str, dict], scorer: "_Scorer") -> list[str]:
    """The lineages none of whose ``protein_pos`` / ``protein_any`` antibodies in the panel has a
    positive population in the cohort (``separated`` in :func:`gate_thresholds`' ``levels``): a lineage
    the cohort may lack (B cells after rituximab, everything but the sorted type), whose cells the
    relative scores would otherwise pick from noise. A lineage without such antibodies in the panel
    is not among them (the gate has nothing to test it by).

    A lineage is judged by its own antibodies where the panel has any: those no other lineage lists as
    positive (other_T by TCR Va7.2, TCR gd and CD161, not by the CD3 every T cell carries; CD8_T by CD8).
    A shared antibody's positive population says that some lineage carrying it is there, not this one:
    on 2,872 real PBMCs with an 83-antibody panel (Kotliarov 2020, dsb's data; no TCR Va7.2 antibody,
    TCR gd without a positive population) CD3 let other_T go ungated and it took 26% of the CD3+ CD8+
    CD4- CD161-low cells (99.2% CD8 T once judged by TCR gd and CD161; twin variants unchanged, ADTnorm's
    13 studies alone 0.9563 -> 0.9562; docs/annotation.md "Antibody names")."""
    def found(names) -> list[str]:
        return [v for n in names for v in [find_protein(scorer.prot.var, n)] if v is not None and v in levels]

    own = _own_positive_markers(markers)
    out = []
    for lin, comp in markers["lineages"].items():
        judged = found(own[lin][0]) or found([n for kind in ("protein_pos", "protein_any")
                                              for n in comp.get(kind) or []])
        if judged and not any(levels[v]["separated"] for v in judged):
            out.append(lin)
    return out


def _separation(col: np.ndarray, positive: np.ndarray) -> tuple[float, float, float, float, float] | None:
    """An antibody's values ``col`` split into the cells ``positive`` marks (P) and the rest (N), cells
    whose sample did not measure it (NaN) left out: N's median and robust SD, P's median and robust SD,
    and how many of N's robust SDs P's median lies above N's (0 where N's SD is 0). ``None`` with fewer
    than 10 cells on either side (no population to judge)."""
    ok = ~np.isnan(col)
    pos, neg = col[ok & positive], col[ok & ~positive]
    if len(neg) < 10 or len(pos) < 10:
        return None
    med, sd = _median_sd(neg)
    top, pos_sd = _median_sd(pos)
    return med, sd, top, pos_sd, ((top - med) / sd if sd > 0 else 0.0)


def unseparated_states(lineage: dict, states: dict, labels: np.ndarray, rows: np.ndarray, scorer: "_Scorer", *,
                       layer: str, separated: float = GATE_SEPARATED) -> dict[str, list[str]]:
    """The states of one lineage that only their antibodies could find, whose calls show no positive
    population of them: the state analogue of :func:`unseparated_lineages`.

    For a lineage that any of several antibodies admits, each marking one of its states (``lineage``'s
    ``protein_any``: other_T's TCR Va7.2 and CD161 for MAIT, TCR gd for gdT; DC's CD1c and CD123). The
    lineage counts as present when one of them shows a positive population (:func:`unseparated_lineages`),
    and its other states are then called from relative scores, whatever their antibody says: on 2,872
    real PBMCs (Kotliarov 2020, protein only) no cell was TCR gd-positive (99th percentile 2.2 DSB), yet 200
    CD3+ CD4- CD8-dim cells were called gdT with DSB (58 with CLR), other_T being present by CD161.

    A state is judged by its own markers among those antibodies (its ``protein_pos`` / ``protein_any``
    antibodies that no other state of the lineage lists as positive and the lineage lists in
    ``protein_any``), where the panel has some and none of its own ``rna_pos`` genes is in the data
    (:meth:`_Scorer.scorable`; with them the RNA is evidence too). It is listed when, for each such
    antibody, the median ``layer`` value of the cells called the state (``labels`` of the lineage's
    ``rows``; >= 10 of them, fewer count as no population) lies no more than ``separated`` robust SDs
    above that of every other cell of the cohort (cells whose sample did not measure it left out), as
    :func:`gate_thresholds` judges a lineage's antibodies. The state's calls are judged, not the
    lineage's cells, of which a state is a minority. States defined by other antibodies (CD4.TCM by
    CD45RO, CD197 and CD127) are not judged: their antibodies mark phenotypes the whole lineage shares
    in part. Deterministic.

    Returns
    -------
    ``{state: its own antibodies in the panel, as the marker file names them}``.
    """
    labels = np.asarray(labels, dtype=object)
    x = scorer.prot.layers[layer]
    either = set(lineage.get("protein_any") or [])
    out = {}
    for name, (prot, genes) in _own_positive_markers({"lineages": states}).items():
        found = {m: v for m in prot if m in either and (v := find_protein(scorer.prot.var, m)) is not None}
        if not found or scorer.scorable(genes) or not (labels == name).any():
            continue
        called = np.zeros(scorer.prot.n_obs, bool)
        called[rows[labels == name]] = True
        splits = []
        for v in found.values():
            col = x[:, scorer.prot.var_names.get_loc(v)]
            splits.append(_separation(np.asarray(col.toarray() if hasattr(col, "toarray") else col,
                                                 dtype=np.float64).ravel(), called))
        if not any(split is not None and split[4] > separated for split in splits):
            out[name] = list(found)
    return out


def gate_thresholds(scorer: "_Scorer", markers: dict, calls: np.ndarray, *, layer: str, min_value: float,
                    separated: float = GATE_SEPARATED, admit: float = GATE_ADMIT, veto: float = GATE_VETO,
                    veto_within: float = GATE_VETO_WITHIN, rows: np.ndarray | None = None) -> dict[str, dict]:
    """Per antibody, the levels from which the lineage gate counts it positive, learned from the cohort.

    A fixed level (``min_value``) does not follow a lab's staining: on real CLR a dim CD56 left NK
    cells below it, and a CD4 antibody with a high background put CD8 T cells above it (ADTnorm's
    studies, docs/annotation.md "Absent lineages"). Here the marker scores' own lineage calls without the gate
    (``calls``) split the cells, for each antibody that a lineage lists as ``protein_pos`` /
    ``protein_any``, into those called such a lineage (P) and the rest (N). If P's median lies more
    than ``separated`` robust SDs (1.4826 x MAD) above N's median, the antibody has a positive
    population in this cohort and its levels come from N: a cell is admitted from ``admit`` SDs above
    N's median and vetoed (as a ``protein_neg`` marker) from ``veto`` SDs, neither above P's median.
    The veto level is also never below P's median minus ``veto_within`` robust SDs of P: a cell is
    vetoed only where it stains like the antibody's positive cells. N pools every other lineage, and
    some have more background than most (monocytes bind antibodies through their Fc receptors): on
    real pbmc10k, N's level for CD19 (CLR -0.36) lay within monocyte background and vetoed 3 monocytes
    with ``gate_negatives: all``.
    Otherwise P is no population of its own (a lineage the cohort lacks, whose cells the scores picked
    from noise; or the whole cohort, as in sorted cells) and the absolute ``min_value`` decides, for
    all cells alike. Antibodies no lineage lists as positive keep ``min_value``. Cells whose sample did
    not measure an antibody are left out of its estimate. ``rows``: learn from these cells only (one
    group of samples; ``calls`` is still one per cell of the cohort). Deterministic.

    Returns
    -------
    ``{feature: {"admit", "veto", "separated", "z"}}``: ``z`` is P's median above N's in robust SDs.
    """
    x = scorer.prot.layers[layer]
    calls = np.asarray(calls, dtype=object)
    if rows is not None:  # the group's cells before densifying: not the whole layer once per group
        x, calls = x[rows], calls[rows]
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x, dtype=np.float64)
    positive_for: dict[str, set[str]] = {}
    for lin, comp in markers["lineages"].items():
        for kind in ("protein_pos", "protein_any"):
            for name in comp.get(kind) or []:
                var = find_protein(scorer.prot.var, name)
                if var is not None:
                    positive_for.setdefault(var, set()).add(lin)
    out = {}
    for var, lineages in positive_for.items():
        split = _separation(x[:, scorer.prot.var_names.get_loc(var)], np.isin(calls, list(lineages)))
        if split is None:
            continue
        med, sd, top, pos_sd, z = split
        if z > separated:
            vetoed_from = min(max(med + veto * sd, top - veto_within * pos_sd), top)
            out[var] = {"admit": min(med + admit * sd, top), "veto": vetoed_from, "separated": True,
                        "z": round(z, 2)}
        else:
            out[var] = {"admit": min_value, "veto": min_value, "separated": False, "z": round(z, 2)}
    return out


def _group_levels(scorer: "_Scorer", markers: dict, calls: np.ndarray, cohort: dict[str, dict], *,
                  mdata: md.MuData, key: str, layer: str, min_value: float) -> tuple[dict, dict]:
    """:func:`gate_thresholds` per group of ``mdata.obs[key]``: per antibody, one admit and one veto
    level per cell (its group's where the group has a positive population of its own, else the
    cohort's, ``cohort``), and each group's levels for the report."""
    if key not in mdata.obs:
        raise InputError(f"annotation.gate_group_key {key!r} is not a column of the cohort's obs "
                         f"(has {', '.join(map(str, mdata.obs.columns[:12]))}...)")
    groups = mdata.obs[key].astype(str).to_numpy()
    n = len(groups)
    cells = {v: {"admit": np.full(n, t["admit"]), "veto": np.full(n, t["veto"])} for v, t in cohort.items()}
    report = {}
    for g in sorted(set(groups)):
        idx = np.flatnonzero(groups == g)
        report[g] = gate_thresholds(scorer, markers, calls, layer=layer, min_value=min_value, rows=idx)
        for v, t in report[g].items():
            if t["separated"] and v in cells:
                cells[v]["admit"][idx], cells[v]["veto"][idx] = t["admit"], t["veto"]
    log.info("lineage gate thresholds learned per %s (admit / veto where the group has a positive population): %s",
             key, {g: {v: (round(t["admit"], 2), round(t["veto"], 2)) for v, t in lv.items() if t["separated"]}
                   for g, lv in report.items()})
    return cells, report


def _unseparated_cells(scorer: "_Scorer", markers: dict, calls: np.ndarray, lin_names: list[str], *,
                       mdata: md.MuData, layer: str, min_value: float, levels: dict | None,
                       groups: dict | None, key: str | None) -> dict[str, np.ndarray]:
    """``gate_lineages: unseparated``: per lineage, the cells the gate applies to. All cells where the
    lineage is unseparated in the cohort (:func:`unseparated_lineages`); with per-group levels
    (``groups``, :func:`_group_levels`' report, by ``obs[key]``) also the cells of each group in
    which it is unseparated (a B-depleted patient's sample in a cohort that has B cells)."""
    n = len(calls)
    if levels is None:  # gate_threshold fixed: separation is still judged the same way
        levels = gate_thresholds(scorer, markers, calls, layer=layer, min_value=min_value)
    cohort = set(unseparated_lineages(markers, levels, scorer))
    out = {name: np.full(n, name in cohort) for name in lin_names}
    if groups:
        g = mdata.obs[key].astype(str).to_numpy()
        for group, lv in groups.items():
            for name in unseparated_lineages(markers, lv, scorer):
                out[name] |= g == group
    log.info("lineage gate applied only where a lineage's antibodies show no positive population "
             "(gate_lineages: unseparated): %s", {k: int(v.sum()) for k, v in out.items() if v.any()} or "nowhere")
    return out


def _warn_vetoed(gate_report: dict, *, rule: str, share: float = 0.2, min_cells: int = 10) -> None:
    """A warning per lineage whose gate vetoed ``share`` or more (and ``min_cells`` or more) of the cells
    its marker scores call it. Either the cohort lacks the lineage (what the gate is for: sorted cells,
    B-depleted patients) or its antibodies stain below the gate's levels (a weak CD56 on real NK cells, or
    NK cells left with CD56 alone when a panel lacks CD7); the calls cannot tell the two apart, the user
    can. ``rule``: the gate's levels in words, for the message."""
    for name, rep in gate_report.items():
        calls, vetoed = rep["score_calls"], rep["score_calls_vetoed"]
        if vetoed >= min_cells and vetoed >= share * calls:
            log.warning("lineage gate (%s): %d of the %d cells the marker scores call %s fail its gate (%s "
                        "antibodies) and lose the label: either the cohort lacks %s, or their antibodies stain below "
                        "the gate's levels (then lower gate_min, try gate_threshold auto, or turn the gate off)",
                        rule, vetoed, calls, name, rep["gated_by"], name)


def _state_calls(scorer: "_Scorer", states: dict, rows: np.ndarray, graph: sp.spmatrix, *, smoothing: float,
                 min_confidence: float, rna_blank: np.ndarray | None = None, alpha: float | None = None,
                 report: dict | None = None
                 ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]] | None:
    """The marker calls of one lineage's states among ``rows`` (scores z-scored over these cells and
    smoothed on their graph): (state names, calls, confidences, the smoothed scores before any state is
    closed to a cell, cells x states, and per state that needs count evidence the cells whose counts lack
    it, :func:`state_count_evidence`; empty without ``alpha`` or with one state, where no state is closed);
    ``None`` without cells or usable states.
    ``rna_blank``: per row, the cells whose RNA components count as 0 (:meth:`_Scorer.score`).
    ``alpha`` (``annotation.substate_alpha``): a state marked ``count_evidence: true`` in the marker file
    is open only to the cells whose raw counts of its ``rna_pos`` genes pass :func:`count_evidence`'s test
    against these cells' background (:func:`state_count_evidence`); ``report`` collects, per such state,
    how many cells lack the evidence and how many of the scores' calls that took away."""
    if len(rows) == 0:
        return None
    names, cols = scorer.score_labels(states, rows, kind="state", rna_blank=rna_blank)
    if not names:
        return None
    mat = _smooth(np.column_stack(cols), graph[rows][:, rows], smoothing)
    scores = mat.copy()  # before the count evidence closes states to cells
    lacking: dict[str, np.ndarray] = {}
    if alpha is not None and len(names) > 1:
        first = mat.argmax(1)
        for j, name in enumerate(names):
            lacks = state_count_evidence(scorer, states[name], rows, alpha=alpha)
            if lacks is None:
                continue
            lacking[name] = lacks
            if report is not None:
                report[name] = {"cells_without_evidence": int(lacks.sum()), "cells": len(rows),
                                "marker_calls_taken_away": int((lacks & (first == j)).sum())}
        for name, closed in closed_states(lacking, names).items():
            mat[closed, names.index(name)] = -np.inf
    lab, conf = _assign(names, mat, min_confidence)
    return names, lab, conf, scores, lacking


def closed_states(lacking: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Per state that needs count evidence, the cells it is closed to: those whose counts lack its
    evidence (``lacking``, :func:`state_count_evidence`) and that some other state of ``names`` is
    open to. A cell every state is closed to (a lineage whose states all need count evidence, and a
    cell without the counts of any) keeps them all open, so that its scores decide; the same mask
    closes the states in the marker calls and in the refinement (``refine_states(allowed=)``)."""
    out = {}
    for name, lacks in lacking.items():
        # where each other state is open: everywhere for a state without the test
        others = [~lacking[other] if other in lacking else np.ones_like(lacks) for other in names if other != name]
        out[name] = lacks & np.any(others, axis=0) if others else np.zeros_like(lacks)
    return out


#: ``annotate(refine_support=)``: a label's score needs this many finite values for its mixture
SUPPORT_MIN_CELLS = 20


def score_support(scores: np.ndarray, labels: np.ndarray, names: list[str], *, seed: int = 0) -> np.ndarray:
    """Per cell, how clearly its marker score for its own label says "high": the posterior probability
    of the upper component of a two-component Gaussian mixture with a common variance fitted to that
    label's score over all the cells given (scikit-learn's ``GaussianMixture``, ``covariance_type="tied"``,
    seeded). With a common variance the support rises with the score; with a variance per component a
    wide upper component also claimed the low tail, and on the second simulator (antibody signal x0.5)
    13 of 306 NK.dim calls had support, the refinement learned NK.dim from them and called 16% of its
    cells NK.dim (state macro-F1 0.797 -> 0.774 instead of 0.809).

    The marker calls take each cell's best label by z-scored scores, which carry no class
    proportions: a cell of a common state with weak markers scores about as high for a rare
    neighbouring state, and on a continuum (CD14 -> intermediate -> CD16 monocytes, CD56-bright ->
    dim NK cells) the rare state gets several times its cells. The mixture does carry a proportion
    (its weights), so a cell called the rare state on a score the mixture places among the state's
    low population has little support. :func:`refine_states` trains only on calls with support
    (``eligible``), and so learns each state from cells that look like it.

    Parameters
    ----------
    scores
        Cells x labels: the marker scores, before a gate or the count evidence closes labels to
        cells (the mixture models the score's low and high populations over all the cells; NaN and
        infinite values are left out of the fit).
    labels
        Per cell, its call; a cell whose call is not among ``names`` gets NaN.
    names
        The labels, in the order of ``scores``' columns.
    seed
        ``random_state`` of the mixture (its k-means initialisation).

    Returns
    -------
    np.ndarray
        Per cell, the support in [0, 1]; 1 where the label's score has fewer than
        :data:`SUPPORT_MIN_CELLS` finite values or a single value (nothing to fit), NaN where the cell
        has no such label or no finite score for it.
    """
    from sklearn.mixture import GaussianMixture

    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=object)
    out = np.full(len(labels), np.nan)
    for j, name in enumerate(names):
        called = labels == name
        if not called.any():
            continue
        v = scores[:, j]
        ok = np.isfinite(v)
        if ok.sum() < SUPPORT_MIN_CELLS or np.ptp(v[ok]) <= 1e-12:
            out[called & ok] = 1.0
            continue
        gm = GaussianMixture(2, covariance_type="tied", random_state=seed).fit(v[ok, None])
        upper = int(np.argmax(gm.means_.ravel()))
        post = np.full(len(v), np.nan)
        post[ok] = gm.predict_proba(v[ok, None])[:, upper]
        out[called] = post[called]
    return out


def state_count_evidence(scorer: "_Scorer", comp: dict, rows: np.ndarray, *, alpha: float) -> np.ndarray | None:
    """The cells among ``rows`` that a state marked ``count_evidence: true`` is closed to: those whose
    summed raw counts of its ``rna_pos`` genes the background of these cells (a lineage) explains, by
    :func:`count_tail`'s test at ``alpha`` (the module-high substates' test, negative binomial null).
    ``None`` when the state is not so marked or the counts are not there (no raw counts, none of its
    genes in the data).

    For a state that a specific programme expressed at a high level defines: antibody-secreting cells
    (JCHAIN, MZB1, XBP1 ...) carry tens to hundreds of counts of it, while B cells detect one or two
    (real pbmc10k: 29% of its B cells detect JCHAIN, 29% MZB1; docs/annotation.md "Sparse gene modules").
    A z-score of the module ranks such stray counts high within the B lineage, and with ``-CD20`` B
    cells with less CD20 won the state: on the second simulator 83 plasmablast calls for 24, and the
    refinement then learned the state from them (docs/annotation.md "States that need count evidence").
    Not for a state whose genes its neighbours express too (Treg's FOXP3, Int.Mono's HLA class II):
    there the lineage's background absorbs it."""
    x = scorer.gene_total(comp.get("rna_pos") or [], rows) if comp.get("count_evidence") else None
    if x is None:
        return None
    library = None if scorer.library is None else scorer.library[rows]
    return count_tail(x, library, alpha=alpha) > alpha


def _assign(labels: list[str], scores: np.ndarray, min_conf: float) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-scores, axis=1)
    best = scores[np.arange(len(scores)), order[:, 0]]
    second = scores[np.arange(len(scores)), order[:, 1]] if scores.shape[1] > 1 else best - np.inf
    with np.errstate(invalid="ignore"):  # -inf - -inf where a gate admits no label (set apart by the caller)
        conf = best - second
    out = np.array(labels, dtype=object)[order[:, 0]]
    out[conf < min_conf] = UNASSIGNED
    return out, np.where(np.isfinite(conf), conf, 10.0)


def refine_states(features: np.ndarray, labels: np.ndarray, confidence: np.ndarray, *, states: list[str],
                  quantile: float = 0.5, c: float = 0.03, min_cells: int = 8, blocks: np.ndarray | None = None,
                  subclasses: np.ndarray | None = None, allowed: np.ndarray | None = None,
                  eligible: np.ndarray | None = None, fixed: np.ndarray | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Marker calls refined by a classifier trained on the confident ones (Garnett's idea, Pliner et al.
    2019: marker rules pick representative cells, a regularised linear model classifies every cell).

    The equal-weight marker score uses a few markers per state; the classifier weighs all of the
    lineage's marker genes and antibodies at once, learning from the cohort itself which of them
    separate its states (what matters when a panel lacks a state's defining antibodies).

    Parameters
    ----------
    features
        Cells x features of one lineage (marker genes, antibodies); standardised here. NaN: an antibody
        a cell's sample did not measure; such cells are classified by a model fitted without those
        columns (one per pattern of missing columns; its training cells are those that have the rest).
    labels
        The marker calls of these cells; only cells called one of ``states`` are refined and trained
        on (``Unassigned`` and other labels stay as they are).
    confidence
        The calls' best-minus-second scores.
    states
        The lineage's base states (the classes).
    quantile
        Per state, the calls whose confidence is at or above this quantile of that state's calls are
        the training cells (0.5: the more confident half).
    c
        Inverse L2 penalty of scikit-learn's ``LogisticRegression``.
    min_cells
        A state needs at least this many training cells to be learned (Garnett's
        ``min_observations``, 8): a state with fewer keeps its marker calls, and no cell is moved
        into it (a classifier learns a rare state from a handful of cells badly, and its L2-shrunk
        intercept hands the state's cells to larger ones).
    blocks
        Per feature column, the block it belongs to (e.g. 0: genes, 1: antibodies). After
        standardising, each block is weighted to carry an equal share of the total variance
        (``n_features / n_blocks``), so that a few antibodies are not outvoted by many genes under the
        L2 penalty: unweighted, on real PBMCs (pbmc10k, 14 antibodies, ~150 marker genes) the
        classifier moved CD3+ CD8-protein-high cells into CD4 T. ``None``: one block.
    subclasses
        Per cell, a finer label within its label (e.g. its marker state within the lineage). The
        classifier then learns these finer classes (each with ``min_cells``) and a cell takes the
        label of its most probable finer class (the confidence: that probability minus the best of
        another label's finer classes), so that a label made of distinct populations (other_T:
        MAIT, gd T and CD4-CD8- T cells) is not forced into one linear class: without it, on the
        study twin, the double-negative T cells went to CD4 / CD8 T (dnT F1 0.87 -> 0.13).
    allowed
        Cells x ``states``: where False, the cell cannot take that label (the lineage gate).
    eligible
        Per cell, whether it may be a training cell (besides its confidence): the calls with support by
        :func:`score_support`. The confidence quantile is taken over all of a state's calls, so a state
        whose calls all have support trains as without it. ``None``: every call may.
    fixed
        Per cell, whether its call stands: the classifier does not relabel it (it may still be a training
        cell; where the classifier agrees with the call, the confidence is the classifier's, else the
        call's own). :func:`annotate` holds so the supported marker calls of a state that needs count
        evidence, which rest on the counts of the state's own programme. ``None``: no call is held.
    seed
        ``random_state`` of the classifier (lbfgs is deterministic; kept for the record).

    Returns
    -------
    New labels and confidences (the classifier's best-minus-second probability for refined cells).
    Unchanged when fewer than two states have ``min_cells`` training cells or there are no features.
    """
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels, dtype=object).copy()
    confidence = np.asarray(confidence, dtype=float).copy()
    cand = np.isin(labels, states)
    train = np.zeros(len(labels), bool)
    for s in states:
        idx = cand & (labels == s)
        if idx.any():
            train |= idx & (confidence >= np.quantile(confidence[idx], quantile))
    # the classes learned: the labels, or (label, finer label) pairs; each needs min_cells training cells
    fine = (labels.astype(str) if subclasses is None else
            np.char.add(np.char.add(labels.astype(str), "\x1f"), np.asarray(subclasses).astype(str))).astype(object)
    if eligible is not None:
        train &= np.asarray(eligible, dtype=bool)
    learned = [f for f in dict.fromkeys(fine[train]) if (train & (fine == f)).sum() >= max(min_cells, 1)]
    to_label = {f: f.split("\x1f")[0] for f in learned}
    cand &= np.isin(fine, learned)
    train &= cand
    if features.shape[1] == 0 or len(set(to_label.values())) < 2:
        return labels, confidence
    x = _z(features)
    blocks = np.zeros(x.shape[1], int) if blocks is None else np.asarray(blocks)
    if len(blocks) != x.shape[1]:
        raise ValueError(f"blocks has {len(blocks)} entries for {x.shape[1]} features")
    missing = np.isnan(x)
    # one classifier per panel: a cell whose sample did not measure some antibodies is classified by a
    # model trained without them (on the training cells that have the rest), not with imputed values
    fixed = np.zeros(len(labels), bool) if fixed is None else np.asarray(fixed, dtype=bool)
    patterns, which = np.unique(missing[cand], axis=0, return_inverse=True)
    cand_idx = np.flatnonzero(cand)
    for i, pattern in enumerate(patterns):
        cols = ~pattern
        rows = cand_idx[np.ravel(which) == i]
        fit = train & ~missing[:, cols].any(1)
        if not cols.any() or len({to_label[f] for f in fine[fit]}) < 2:
            continue  # nothing to learn from for these cells: they keep their calls
        kinds, inv, size = np.unique(blocks[cols], return_inverse=True, return_counts=True)
        xs = x[:, cols] * np.sqrt(cols.sum() / (len(kinds) * size[inv]))
        clf = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(xs[fit], fine[fit].astype(str))
        # each label's score: its most probable finer class (a sum would favour labels of many finer
        # classes wherever the shrunk model is unsure); columns in the labels' order
        names = list(dict.fromkeys(to_label[f] for f in clf.classes_))
        fine_prob = clf.predict_proba(xs[rows])
        prob = np.column_stack([fine_prob[:, [to_label[f] == name for f in clf.classes_]].max(1) for name in names])
        if allowed is not None:  # a label no training cell had stays out
            prob = np.where(np.asarray(allowed)[rows][:, [list(states).index(name) for name in names]], prob, 0.0)
        top = np.sort(prob, axis=1)
        best = np.array(names, dtype=object)[prob.argmax(1)]
        # a cell no class of the classifier is allowed for keeps its call, as does a fixed cell the
        # classifier would move (one it agrees with takes the classifier's confidence)
        ok = (top[:, -1] > 0) & (~fixed[rows] | (best == labels[rows]))
        labels[rows[ok]] = best[ok]
        confidence[rows[ok]] = (top[:, -1] - (top[:, -2] if prob.shape[1] > 1 else 0.0))[ok]
    return labels, confidence


#: how cells with no evidence for any state of their lineage are called (``annotate(no_evidence=)``)
NO_EVIDENCE = ("likeliest", "scores")


def _supported(scores: np.ndarray, labels: np.ndarray, names: list[str], level: float | None, *, seed: int,
               report: dict, key: str) -> np.ndarray | None:
    """The calls with :func:`score_support` at or above ``level`` (``None``: no check); ``report[key]``
    counts, per label, its calls without support."""
    if level is None:
        return None
    support = score_support(scores, labels, names, seed=seed)
    with np.errstate(invalid="ignore"):
        ok = support >= level
    lacking = {name: int(((labels == name) & ~ok).sum()) for name in names}
    report[key] = {name: k for name, k in lacking.items() if k}
    return ok


def _rna_pos_genes(states: dict) -> set[str]:
    """The ``rna_pos`` genes of these states (name -> marker components)."""
    return {g for comp in states.values() for g in comp.get("rna_pos") or []}


def state_genes(markers: dict) -> list[str]:
    """The ``rna_pos`` genes of every state and substate in the marker file (``markers['states']``),
    sorted: the genes whose raw counts :func:`annotate` reads (``no_evidence``, ``substate_alpha``)."""
    subs = [comp.get("substates") or {} for states in markers["states"].values() for comp in states.values()]
    return sorted(set().union(*map(_rna_pos_genes, markers["states"].values()), *map(_rna_pos_genes, subs)))


def state_evidence(scorer: "_Scorer", states: dict, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell of ``rows`` (one lineage's cells), the RNA and protein evidence its states' markers can give.

    Returns (``total``, ``no_rna``, ``measured``): the cell's raw counts of all the states' ``rna_pos`` genes,
    whether that is 0 (``False`` throughout without raw counts, :meth:`_Scorer.gene_counts`, or without such
    genes in the data), and whether its sample measured any of the states' antibodies. A cell with ``no_rna``
    and antibodies measured has its state decided by the antibodies (``annotate(no_evidence="likeliest")``); one
    with neither has no evidence at all (:func:`no_evidence_cells`)."""
    antibodies = sorted({a for comp in states.values() for kind in COMPONENTS if kind.startswith("protein")
                         for a in comp.get(kind) or []})
    m = scorer.protein(antibodies)  # an antibody of some state measured in the cell: protein evidence
    measured = np.zeros(len(rows), bool) if m is None else ~np.isnan(m[rows]).all(1)
    total = scorer.gene_total(sorted(_rna_pos_genes(states)), rows)
    if total is None:
        return np.zeros(len(rows)), np.zeros(len(rows), bool), measured
    return total, total == 0, measured


def no_evidence_cells(scorer: "_Scorer", states: dict, labels: np.ndarray, rows: np.ndarray, *,
                      min_cells: int = 8, max_iter: int = 100) -> tuple[np.ndarray, str | None, dict[str, float]]:
    """The cells of one lineage with no evidence for any of its states, and the state such cells most
    likely belong to.

    A cell has no evidence when it detects none of the states' ``rna_pos`` genes (raw counts 0) and
    its sample measured none of their antibodies. Its marker scores are then no evidence either:
    z-scored modules put such a cell nearest the state whose genes the fewest cells detect, the
    rarest (on the half-panel twin all 170 such CD4 T cells were called Treg, although 110 were
    central memory). What it does say is that the cell's state is one whose genes often go
    undetected. The lineage's cells are modelled as a mixture of its states, each with a Poisson rate
    per state gene (times the cell's library size, where known) and a share of the lineage, fitted by
    EM started from the marker calls; the cells without evidence are part of the fit. Each such cell's
    posterior over the states is its share times the probability of detecting nothing; their sum per
    state is the number of such cells expected to belong to it, and they go to the state with the most.

    The mixture, not the calls as they are, because the calls of a rare state collect a common state's
    weakly detected cells (z-scored modules again): on the half-panel twin of seed 1 (no CD56 / CD16
    antibody) 117 of 340 NK.dim cells were called NK.bright, most with one or two counts, so a rate
    taken from the NK.bright calls (a zero-truncated Poisson of their counts, this function before)
    expected more undetected NK.bright than NK.dim cells, and 52 NK.dim cells without evidence became
    NK.bright. The EM gives those weak cells back to the state whose genes they detect.

    Parameters
    ----------
    scorer
        The annotation's scorer (it needs raw counts: :meth:`_Scorer.gene_counts`; library sizes from
        :attr:`_Scorer.library` where given).
    states
        The lineage's states (name -> marker components) that were scored.
    labels
        The marker calls of ``rows``: where the EM starts.
    rows
        The lineage's cells (indices into the cohort).
    min_cells
        A state needs this many cells called it with some of the genes detected to be a component.
    max_iter
        Most EM iterations (it stops earlier when the log-likelihood changes by less than 1e-6 per cell).

    Returns
    -------
    Per row, whether the cell has no evidence; the state those cells most likely belong to
    (``None``: none of them, no raw counts, or fewer than two states to weigh); and the expected
    number of the cells without evidence per state (the posterior sums).
    """
    from scipy.special import logsumexp

    labels = np.asarray(labels, dtype=object)
    total, no_rna, measured = state_evidence(scorer, states, rows)
    none = no_rna & ~measured
    if not none.any():
        return none, None, {}
    genes, counts = scorer.gene_counts(sorted(_rna_pos_genes(states)))
    names = [s for s in states if ((labels == s) & (total > 0)).sum() >= max(min_cells, 1)]
    if counts is None or not genes or len(names) < 2:
        return none, None, {}
    inside = np.isin(labels, names) | none  # other calls (Unassigned, substates' parents kept) sit out
    x = np.asarray(counts[rows[inside]].todense(), dtype=np.float64)
    lib = np.ones(len(rows)) if scorer.library is None else scorer.library[rows]
    lib = lib[inside] / max(float(np.median(lib[inside])), 1e-12)
    resp = (labels[inside][:, None] == np.array(names, dtype=object)[None, :]).astype(float)
    resp[none[inside]] = 1.0 / len(names)  # the cells without evidence start undecided
    last = -np.inf
    for _ in range(max_iter):
        weight = resp.sum(0)
        share = np.maximum(weight / weight.sum(), 1e-12)
        rate = np.maximum(resp.T @ x, 1e-9) / np.maximum(resp.T @ lib, 1e-12)[:, None]  # states x genes
        # log P(cell, state) up to each cell's log(x!), the same for every state: it cancels in the
        # responsibilities and in the change of the log-likelihood
        loglik = np.log(share)[None, :] + x @ np.log(rate).T - lib[:, None] * rate.sum(1)[None, :]
        norm = logsumexp(loglik, axis=1)
        resp = np.exp(loglik - norm[:, None])
        if norm.sum() - last < 1e-6 * len(x):
            break
        last = norm.sum()
    undetected = dict(zip(names, map(float, resp[none[inside]].sum(0))))
    return none, max(undetected, key=undetected.get), undetected


def _marker_genes(markers: dict, *, lineage: str | None = None, standins: dict[str, str] | None = None) -> set[str]:
    """The genes (``rna_pos``, ``rna_neg``) of every label of the marker file; with ``lineage``, of
    that lineage's states and substates only; with ``standins`` (antibody -> ``"GENE1,GENE2"``), also
    the transcripts that stood in for the labels' absent antibodies."""
    part = markers if lineage is None else {"lineages": {}, "states": {lineage: markers["states"][lineage]}}
    genes = set()
    for _, comp in _labels(part):
        genes.update(g for kind in ("rna_pos", "rna_neg") for g in comp.get(kind) or [])
        genes.update(g for kind in COMPONENTS if kind.startswith("protein") for n in comp.get(kind) or []
                     for g in (standins or {}).get(n, "").split(",") if g)
    return genes


def _lineage_features(scorer: "_Scorer", genes: set[str], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The refinement's features for some cells: log-normalised expression of ``genes`` (those in the
    data) and every antibody of the scored layer measured in some of these cells (NaN where a cell's
    sample did not measure it); and each column's block (0: gene, 1: antibody) for :func:`refine_states`."""
    keep = [g for g in scorer.rna.var_names if g in genes]
    x = scorer.rna[rows, keep].X
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    p = scorer.clr[rows]
    p = p[:, ~np.isnan(p).all(0)]
    return np.hstack([x, p]), np.r_[np.zeros(x.shape[1], int), np.ones(p.shape[1], int)]


def confounded_groups(obs: pd.DataFrame, *, key: str, columns: tuple[str, ...] | list[str],
                      sample_key: str = "sample") -> list[dict]:
    """Groups of ``obs[key]`` that a design column cannot be told apart from.

    A group is listed for a column when every one of its samples (``obs[sample_key]``; its cells
    without that column) has the same value of the column while the cohort has more than one: a
    programme the samples of that value carry would be fitted as the group's background by
    ``annotate(substate_group_key=key)``.

    Parameters
    ----------
    obs
        The cohort's cells.
    key
        The grouping column (``batch``, ``sample``).
    columns
        Design columns (the group, the complications); those not in ``obs`` are skipped.
    sample_key
        The sample column.

    Returns
    -------
    list of dict
        ``{"group", "column", "value", "samples"}`` per confounded group and column, in order.
    """
    out = []
    unit = sample_key if sample_key in obs else None
    for column in columns:
        if column not in obs or column in (key, unit):
            continue
        per_unit = (obs[[key, unit, column]].drop_duplicates() if unit else obs[[key, column]]).astype(str)
        if per_unit[column].nunique() < 2:
            continue
        for group, rows in per_unit.groupby(key, sort=True):
            values = rows[column].unique()
            if len(values) == 1:
                out.append({"group": str(group), "column": column, "value": str(values[0]),
                            "samples": int(rows[unit].nunique()) if unit else 0})
    return out


def annotate(mdata: md.MuData, markers: dict, *, smoothing: float = 0.5, min_confidence: float = 0.0,
             min_genes_per_module: int = 2, substate_robust_z: float = 3.0, substate_alpha: float | None = 0.01,
             protein_layer: str = "clr",
             score_centre: str = "mean", module_centre: str = "mean", gate_layer: str | None = "clr",
             gate_min: float | None = None, gate_threshold: str = "auto", gate_group_key: str | None = None,
             gate_lineages: str = "unseparated", gate_negatives: str = "all",
             lineage: np.ndarray | None = None, lineage_confidence: np.ndarray | None = None,
             refine: bool = True, refine_quantile: float = 0.5, refine_c: float = 0.03, refine_min_cells: int = 8,
             refine_lineages: bool = True, refine_lineage_choices: int = 2, refine_support: float | None = 0.8,
             no_evidence: str = "likeliest",
             state_missing_components: str = "skip", substate_group_key: str | None = None,
             design_columns: tuple[str, ...] | list[str] = (), rna_standins: bool = False,
             standin_table: str | None = None, counts: ad.AnnData | None = None, seed: int = 0) -> dict:
    """Add ``obs['lineage']``, ``obs['cell_state']`` and their confidences to ``mdata`` in place.

    Needs ``rna.X`` log-normalised, the protein layer ``protein_layer`` (``clr``; ``dsb``;
    ``totalvi_denoised``, scored as log1p) and ``obsp['connectivities']``. The keyword options are
    config ``annotation`` (besides ``markers``, the file :func:`load_markers` reads).

    Parameters
    ----------
    mdata
        Integrated, clustered cohort.
    markers
        :func:`load_markers`' result.
    smoothing
        Weight of the kNN neighbours' mean score in a cell's smoothed score (0: no smoothing).
    min_confidence
        Cells whose best-minus-second smoothed score is below this are ``Unassigned``.
    min_genes_per_module
        An RNA component needs this many of its genes in the data, else it is left out.
    substate_robust_z
        Robust z (median/MAD within the base state) above which a cell joins a module-high substate
        (a substate's own ``robust_z`` in the marker file replaces it for that substate). With count
        evidence (``substate_alpha``) the two add up: a cell passes when its z plus its count test's
        normal quantile reaches ``substate_robust_z`` plus that of ``substate_alpha``, with z above 1
        (:func:`_evidence_adds_up`; docs/annotation.md "Module-high substates").
    substate_alpha
        A module-high substate also needs its genes' raw counts beyond the background of the cells it
        is looked for among: Poisson upper-tail probability at most this, given the cell's library
        size (``obs['total_counts']``, else the counts' row sums; :func:`count_evidence`); and its
        robust z is then taken against the cells without such counts, not all cells. ``None``: the
        robust z over all the cells alone, as before this option. A substate with antibodies among its
        markers is left to its robust z. Needs raw counts (``counts`` or
        ``rna.layers['counts']``); without them the robust z alone decides, with a warning. Why: a
        robust z of a sparse module calls cells with one count (on the demo twin, 27 x 800, 108
        classical monocytes became CD14.ISG: F1 0.79; with 0.01, 0.92), and a z over all cells misses
        a programme half of them carry (real Kang 2018: 0 of 337 IFN-beta-stimulated monocytes called
        CD14.ISG; with 0.01, 332, and 6 of 312 controls; docs/annotation.md "Module-high substates"). The
        report's ``substates_without_count_evidence``: per substate, the cells the z over all cells
        would have called that show no count evidence. The same test closes a state marked
        ``count_evidence: true`` in the marker file (the plasmablasts) to the cells of its lineage
        without such counts (:func:`state_count_evidence`; the report's ``states_needing_count_evidence``).
    protein_layer
        The normalised protein layer scored.
    score_centre
        How each marker component (an antibody, a gene module) is put on a common scale over the
        cells scored (all cells for the lineages, a lineage's cells for its states) before a label's
        components are averaged: ``"mean"`` (default), z-scores (centred at the mean, which sits
        among the negative cells of a rare marker and among the positive cells of a common one);
        ``"otsu"``, centred at Otsu's threshold between the low and the high cells and scaled by the
        SD within the two, so that 0 means "at the boundary" whatever share of the cells is
        positive. On the 13 gated real studies (``benchmarks/annotation_gates.py``) ``otsu`` raised
        the lineage F1 of 11 analysed alone and cut the B cells and monocytes invented among sorted
        T cells from 17% / 18% to 3% / 6%; it is not the default because it lowered real pbmc10k's
        lineage F1 (0.933 -> 0.918 / 0.916, WNN / totalVI), failed the real-cell CD4 / CD8 tests with
        a marker file adjusted for it, and was worse on RNA-only data (docs/annotation.md "Marker scores").
    module_centre
        How an RNA module component (``rna_pos``, ``rna_neg``) is centred: ``"mean"`` (default), as
        ``score_centre`` says for every component; ``"negative"``, at the median score of the cells
        that detect none of its genes, where at least a fifth of the cells scored do (z-scores where
        fewer do), so that a cell without a state's programme scores about 0 for it whatever the
        state's share (:func:`_negative_z`). Antibodies still follow ``score_centre``. Better on
        every twin variant and on Kang 2018's lineages, worse on real pbmc10k's fine states (docs/annotation.md
        "Sparse gene modules"), so not the default.
    gate_layer, gate_min
        Absolute protein evidence for the lineages (``None``: off; default ``"clr"``, for the lineages
        ``gate_lineages`` says). With ``"dsb"`` (values in units
        of the empty droplets' background SD), a cell can only take a lineage it is positive for
        (``gate_min`` or more) by at least one of the lineage's ``protein_pos`` (and
        ``protein_any``) antibodies and negative for its ``protein_neg`` ones; a cell that no
        lineage admits is ``Unassigned``. A lineage absent from the cohort (B cells after
        rituximab) is then not invented from ranks, and CD4 / CD8 follow the co-receptor protein.
        The report's ``lineage_gate`` gives, per lineage, the cells its scores call it
        (``score_calls``) and how many of them the gate vetoed (``score_calls_vetoed``); a warning
        names each lineage that lost >= 20% of them (>= 10 cells): a lineage the cohort lacks, or
        antibodies that stain below the gate's levels.
        ``gate_min`` ``None`` (the default): the layer's usual level, 6 for ``"dsb"``, 1 for ``"clr"``
        (:data:`GATE_MIN_DEFAULTS`); ``"totalvi_denoised"`` needs it given.
    gate_threshold
        ``"fixed"``: ``gate_min`` for every antibody. ``"auto"`` (default): each antibody's levels
        learned from the cohort where a positive population stands out from the cells the scores
        call other lineages, ``gate_min`` where none does (:func:`gate_thresholds`; the report's
        ``gate_thresholds``). Made for ``gate_layer: "clr"`` without raw droplets (docs/annotation.md "Absent
        lineages").
    gate_lineages
        ``"all"``: the gate applies to every lineage. ``"unseparated"`` (default; before this version
        there was no gate by default): only to the lineages none of whose antibodies
        shows a positive population in the cohort (judged by the lineage's own antibodies where the
        panel has any: not other_T by CD3; :func:`unseparated_lineages`; with
        ``gate_group_key``, also within each group where it shows none): the lineages a cohort may
        lack. A cohort in which every lineage has an antibody that stands out is then called exactly
        as without the gate (the twin's variants but the B-depleted and the sorted one, ADTnorm's 13
        studies pooled; a lineage whose antibodies each mark only part of it, as the study marker
        file's DC, can be gated although present), while invented lineages go: B in the B-depleted
        twin 0.44% -> 0%, CD8 T in the sorted one 11% -> 99.9%.
        ``"all"`` also applies the learned levels' co-receptor logic to every cell (better on most
        real studies analysed alone, worse where an antibody stains dimly; docs/annotation.md "Absent lineages").
        The report's ``lineage_gate`` gives per lineage ``cells_gated``.
        Whatever the setting, a state that the lineage's ``protein_any`` antibodies mark (other_T's MAIT
        and gdT, DC's pDC) and whose own antibody shows no positive population among its marker calls (before the refinement) keeps only
        the calls positive for it at ``gate_min`` (on protein alone; :func:`unseparated_states`); the rest are
        ``Unassigned`` and the report's ``states_without_positive_antibody`` gives per such state its
        antibodies and the cells unassigned and kept.
    gate_negatives
        ``"all"`` (default): in the lineages ``gate_lineages`` leaves ungated, the gate's veto still
        applies: a cell positive for one of a lineage's ``protein_neg`` antibodies (at its veto level,
        :func:`gate_thresholds`' ``veto`` under ``"auto"``) cannot take that lineage, so that a CD3+
        cell is not NK, B, monocyte or DC whatever its RNA. A lineage's scores average its negative
        antibodies, so one positive among them is diluted by the others: on the demo twin 37 CD3+
        CD8+ cytotoxic T cells whose CD3D / CD8A / CD8B went undetected were called NK (NK's
        CD3-negativity averaged with CD14 and CD19); ``"all"`` calls them CD8 T. ``"gated"``: the
        veto only where the gate applies (``gate_lineages``), the default before the veto level was
        kept within the positive cells' range (:func:`gate_thresholds`; without that, real
        monocytes were vetoed: docs/annotation.md "Absent lineages"). A cell that every lineage vetoes is
        ``Unassigned``.
    gate_group_key
        With ``gate_threshold: "auto"``: an ``obs`` column (``"batch"``, ``"sample"``) whose groups
        learn their own levels, for cohorts stained with different antibody lots. An antibody with a
        positive population in a group gets that group's levels; where it has none (a group of sorted
        or B-depleted samples) the cohort's levels stay. The report's
        ``gate_thresholds_per_group``. ``None`` (default): one set of levels for the cohort.
    lineage, lineage_confidence
        Lineages already called (``annotation.method: both``: from a reference mapping), one per
        cell, with their confidence; the marker file's lineage step is then skipped and its states
        are called within these lineages. A lineage the marker file has no states for (e.g. a
        reference's progenitors) becomes the cell's state as it is.
    refine, refine_quantile, refine_c, refine_min_cells, refine_lineages
        Refine the marker calls with :func:`refine_states` (on by default): each lineage's states
        (before the module-high substates are looked for) by a logistic regression on that lineage's
        marker genes and the antibodies, genes and antibodies weighted as two equal blocks, trained
        on the state calls at or above the ``refine_quantile`` of their state's confidence, with
        inverse penalty ``refine_c``; a state with fewer than ``refine_min_cells`` such calls keeps
        its marker calls. With ``refine_lineages`` (on by default) the lineages are refined first
        (when this function calls them; within what the gate and the veto admit, so a lineage they
        keep out gains no cell), on every gene of the marker file and the antibodies, learned per
        marker state. It was off while there was no gate by default: without one, the refinement
        learned the B cells the scores invented among sorted T cells (17% -> 28%); with the gate and
        the veto it raised the lineage F1 of 9 of 13 real studies analysed alone (docs/annotation.md "Refining
        the calls"). The marker calls are kept in
        ``obs['cell_state_markers']`` (and ``obs['lineage_markers']``).
    refine_lineage_choices
        The lineage refinement chooses, per cell, among this many of its best lineages by marker score
        (2: the markers' pick and its runner-up; 0: every lineage the gate admits). The classifier
        extrapolates for cells unlike any of its training cells: on a second simulator's cohort with
        half the antibodies, the plasmablasts (marker lineage B, but too few among the confident calls
        to teach their class) went to CD8 T, their third- to fifth-ranked lineage. On 13 real ADTnorm
        studies and Kang 2018, of the 241 cells the unrestricted refinement moved to a lineage the
        markers ranked third or lower, 9 were right after and 40 before (of the 505 moved to the
        runner-up, 262 after, 102 before). With 2: Kang 2018 lineage macro-F1 0.817 -> 0.843;
        docs/annotation.md "Refining the calls" has the other cohorts.
    refine_support
        A call trains the refinement only where :func:`score_support` gives it at least this support:
        the posterior of the upper component of a two-Gaussian mixture of its own label's marker
        score (over the lineage's cells for a state, over all cells for a lineage). The marker scores
        carry no class proportions, so a rare state beside a common one (intermediate monocytes,
        CD56-bright NK cells) got several times its cells, and the refinement learned it from them;
        the mixture's weights carry the proportion. ``None``: every call at or above the quantile
        trains (the default before). The report's ``refine_training_without_support`` counts, per
        lineage (and ``"lineage"`` for the lineage calls), each label's calls without support
        (docs/annotation.md "Training calls with support"). A state that needs count evidence
        (``count_evidence: true``) is decided by it rather than by the refinement: a supported marker call
        keeps the state (:func:`refine_states`'s ``fixed``; the report's ``refine_count_evidence`` counts
        them), and a cell without the counts is not moved into it (its ``allowed``, :func:`closed_states`).
    state_missing_components
        How a state's (or substate's) marker component that the data cannot score (its antibodies not in
        the panel, too few of its genes) enters the state's score: ``"skip"`` (default), left out of
        the mean, so each state is judged on the evidence the data have for it; ``"zero"``, counted as
        0. A lineage's missing component always counts as 0 (a lineage scored on fewer markers is
        not let win by them: on real pbmc10k, leaving them out of the lineages' means too lowered the
        lineage macro-F1 0.933 -> 0.901). Either way the coverage is reported
        (``annotation_report['marker_coverage']``, the log, the panel-evidence table). On 13 real
        protein-only studies (ADTnorm, 9 antibodies, no RNA) "skip" raised the fine-label macro-F1
        against experts' gates 0.519 -> 0.630 (every study), pooled 0.296 -> 0.372; docs/annotation.md
        "Missing marker components".
    substate_group_key
        An obs column (``batch``, ``sample``) whose groups each fit their own programme background for
        the module-high substates: the count test's background and the module score's centre within
        each group of at least ``SUBSTATE_GROUP_MIN_CELLS`` of the cells a substate is looked for among
        (:func:`_gate_substates`); ``None`` (default): one background for the cohort. For batches whose
        genes are measured at different levels, when the design is balanced across them. It reads a
        programme most of a group's cells carry as that group's background: on real Kang 2018, whose
        IFN-beta-stimulated cells were a lane of their own, per lane the stimulated monocytes called
        ISG fell from 98.5% to 18%; per donor, each of whom gave both samples, 98.5% stayed and the
        controls' false calls fell 1.0% -> 0.6%. ``design_columns`` names the columns such a group must
        not be confounded with (docs/annotation.md "Programme background per batch").
    design_columns
        With ``substate_group_key``: obs columns of the design (the group, the complications). A group
        all of whose samples share one value of such a column that the cohort varies is logged with a
        warning and listed in the report (``substate_groups['confounded']``): a programme that value
        carries would be read as the group's background there.
    no_evidence
        How a cell with no evidence for any state of its lineage is called: it detects none of the states'
        genes and its sample measured none of their antibodies (common where a panel lacks a lineage's state
        antibodies and the states' genes are sparse). ``"likeliest"`` (default): the state most of whose
        cells are expected to show no evidence, estimated from the cohort (:func:`no_evidence_cells`; a
        state is estimated from its calls that detect some of the genes, when there are at least
        ``refine_min_cells``), with confidence 0, so ``Unassigned`` under ``min_confidence`` > 0; these
        cells are not used by the refinement. ``"scores"``: the marker scores decide, as before this option
        (z-scored modules hand such cells to the rarest state: on the half-panel twin, 170 CD4 T cells
        without evidence all went to Treg, 110 of them central memory; state macro-F1 0.845 -> 0.86 with
        ``"likeliest"``). With ``"likeliest"``, a cell that detects none of the states' genes but whose
        sample measured some of their antibodies is called by the antibodies: its gene modules count as
        0 (neutral), since z-scored they would pull it to the rare state as above (on the half-panel
        twin, 27 CD16+ NK.dim cells without NK gene counts had been called NK.bright; state macro-F1
        0.889 -> 0.899; :func:`state_evidence`). The report's ``no_evidence`` gives per lineage the
        cells without evidence, the state and each state's expected number of such cells;
        ``states_by_antibodies_alone`` the cells per lineage called by the antibodies alone.
    rna_standins, standin_table
        Score a marker-file antibody that no sample's panel has (or that ``qc.panel_policy`` dropped)
        by the transcript of its gene instead (CD197 -> CCR7, CD25 -> IL2RA, ...; the table
        :func:`sscsig.protein.antibody_genes` reads: ``standin_table``, or the shipped one),
        scaled like an antibody. Antibodies without a gene-level equivalent (CD45RA/RO) and genes
        not in the data stay missing. Not used by the lineage gate, which needs protein.
    counts
        Raw RNA counts of (at least) the marker file's state genes (:func:`state_genes`), cells in the
        cohort's order, for ``no_evidence``: the rule reads these columns alone rather than the whole
        counts layer (:func:`sscsig.io.read_modality` with ``var_names``). ``None``:
        ``mdata['rna'].layers['counts']``; without either, ``no_evidence`` cannot apply.
    seed
        Seed of the control genes of ``scanpy.tl.score_genes``.

    Returns
    -------
    A report: markers missing from the data, the transcripts that stood in for absent antibodies,
    the lineages not called because the data has none of their own positive markers
    (``lineages_not_called``), cells per label, cells unassigned.
    """
    if substate_alpha is not None and not 0 < substate_alpha < 1:
        raise InputError(f"annotation.substate_alpha {substate_alpha!r} must be between 0 and 1 (or null)")
    library = (None if substate_alpha is None else mdata.obs["total_counts"].to_numpy(float)
               if "total_counts" in mdata.obs
               else np.asarray(mdata["rna"].layers["counts"].sum(1)).ravel() if "counts" in mdata["rna"].layers
               else None)
    scorer = _Scorer(mdata, seed=seed, min_genes=min_genes_per_module, protein_layer=protein_layer,
                     standins=antibody_genes(standin_table) if rna_standins else None, centre=score_centre,
                     module_centre=module_centre, counts=counts, library=library,
                     state_missing=state_missing_components)
    if substate_alpha is not None and scorer.count_source is None:
        log.warning("annotation.substate_alpha: no raw counts (rna.layers['counts']), so the module-high "
                    "substates are called on their robust z alone")
    substate_groups, substate_group_report = None, {}
    if substate_group_key is not None:
        if substate_group_key not in mdata.obs:
            raise InputError(f"annotation.substate_group_key {substate_group_key!r} is not a column of the "
                             f"cohort's obs (columns: {', '.join(map(str, mdata.obs.columns))})")
        if substate_alpha is None or scorer.count_source is None:
            raise InputError("annotation.substate_group_key needs the count test (substate_alpha and raw counts): "
                             "it fits the test's background per group")
        substate_groups = mdata.obs[substate_group_key].astype(str).to_numpy()
        substate_group_report = {"key": substate_group_key, "min_cells": SUBSTATE_GROUP_MIN_CELLS,
                                 "confounded": confounded_groups(mdata.obs, key=substate_group_key,
                                                                 columns=design_columns)}
        for column in dict.fromkeys(r["column"] for r in substate_group_report["confounded"]):
            rows_ = [r for r in substate_group_report["confounded"] if r["column"] == column]
            log.warning("annotation.substate_group_key %s: in %d of its %d groups every sample has the same %s (%s), "
                        "so a programme those samples carry is read as the group's background there: compare the "
                        "substates' shares across %s with care, or set substate_group_key null",
                        substate_group_key, len(rows_), len(np.unique(substate_groups)), column,
                        ", ".join(f"{r['group']}: {r['value']}" for r in rows_[:8]) + (", ..." if len(rows_) > 8 else ""),
                        column)
    no_count_evidence: dict[str, int] = {}
    refine_count_evidence: dict[str, dict[str, int]] = {}
    state_counts: dict[str, dict] = {}  # states that need count evidence (count_evidence: true)
    refined: dict[str, int] = {}
    without_support: dict[str, dict[str, int]] = {}  # per lineage (and "lineage"): calls kept from training
    lineage_markers = None
    gate_runs = gate_layer is not None and lineage is None  # not on lineages given by a reference
    graph = sp.csr_matrix(mdata.obsp["connectivities"])
    n = mdata.n_obs
    all_rows = np.arange(n)
    if gate_threshold not in GATE_THRESHOLDS:
        raise InputError(f"annotation.gate_threshold {gate_threshold!r} is not one of {', '.join(GATE_THRESHOLDS)}")
    if gate_layer is not None and gate_min is None:
        if gate_layer not in GATE_MIN_DEFAULTS:
            raise InputError(f"annotation.gate_layer {gate_layer!r} has no default gate_min: set annotation.gate_min "
                             f"(defaults exist for {', '.join(GATE_MIN_DEFAULTS)})")
        gate_min = GATE_MIN_DEFAULTS[gate_layer]
    if gate_lineages not in GATE_LINEAGES:
        raise InputError(f"annotation.gate_lineages {gate_lineages!r} is not one of {', '.join(GATE_LINEAGES)}")
    if no_evidence not in NO_EVIDENCE:
        raise InputError(f"annotation.no_evidence {no_evidence!r} is not one of {', '.join(NO_EVIDENCE)}")
    if gate_negatives not in GATE_NEGATIVES:
        raise InputError(f"annotation.gate_negatives {gate_negatives!r} is not one of {', '.join(GATE_NEGATIVES)}")
    if gate_group_key is not None and gate_threshold != "auto":
        raise InputError("annotation.gate_group_key needs gate_threshold: auto (levels learned per group)")
    gate_report = {}
    gate_levels: dict[str, dict] = {}  # the cohort's learned levels (gate_threshold auto)
    gate_cells: dict[str, dict] = {}  # the levels the gate applies: the cohort's, or one per cell by group
    group_levels: dict[str, dict] = {}
    not_called: dict[str, list[str]] = {}
    if lineage is None:
        not_called = _lineages_without_own_markers(markers, scorer)
        for name, own in not_called.items():
            log.warning("lineage %s: none of its own positive markers (%s) is in the data, so nothing tells it from "
                        "the lineages it shares its other markers with; not called (nor its states)", name,
                        ", ".join(own))
        if len(not_called) == len(markers["lineages"]):
            raise InputError("no lineage of the marker file has any of its own positive markers in the data, so "
                             "nothing tells the lineages apart (missing: " + "; ".join(
                                 f"{k}: {', '.join(v)}" for k, v in not_called.items())
                             + "): use a marker file for this panel, or annotation.rna_standins")
        markers = {**markers, "lineages": {k: v for k, v in markers["lineages"].items() if k not in not_called},
                   "states": {k: v for k, v in markers["states"].items() if k not in not_called}}
        lin_names, lin_scores = [], []
        for name, comp in markers["lineages"].items():
            s = scorer.score(comp, all_rows, label=name)
            if s is None:
                raise InputError(f"lineage {name!r}: none of its markers is in the data")
            lin_names.append(name)
            lin_scores.append(s)
        lin_mat = _smooth(np.column_stack(lin_scores), graph, smoothing)
        lin_raw = lin_mat.copy()  # before the gate closes lineages to cells (the support's mixtures)
        if gate_layer is not None:
            if gate_layer not in scorer.prot.layers:
                raise InputError(f"annotation.gate_layer {gate_layer!r}: the cohort has no prot.layers[{gate_layer!r}] "
                                 "(dsb needs raw_path in the sheet)")
            ungated = np.asarray(lin_names, dtype=object)[lin_mat.argmax(1)]  # what the scores alone call
            if gate_threshold == "auto":
                gate_levels = gate_cells = gate_thresholds(scorer, markers, ungated, layer=gate_layer,
                                                           min_value=gate_min)
                if gate_group_key is not None:
                    gate_cells, group_levels = _group_levels(scorer, markers, ungated, gate_levels, mdata=mdata,
                                                             key=gate_group_key, layer=gate_layer, min_value=gate_min)
                log.info("lineage gate thresholds learned from the cohort (admit / veto; separated: a positive "
                         "population stands out, else gate_min): %s",
                         {v: (round(t["admit"], 2), round(t["veto"], 2), t["separated"])
                          for v, t in gate_levels.items()})
            applies = {name: np.ones(n, bool) for name in lin_names}  # per lineage: the cells its gate applies to
            if gate_lineages == "unseparated":
                applies = _unseparated_cells(scorer, markers, ungated, lin_names, mdata=mdata, layer=gate_layer,
                                             min_value=gate_min,
                                             levels=gate_levels if gate_threshold == "auto" else None,
                                             groups=group_levels if gate_group_key is not None else None,
                                             key=gate_group_key)
            for j, name in enumerate(lin_names):
                allowed, used = np.ones(n, bool), ""
                if applies[name].any():
                    allowed, used = lineage_gate(scorer, markers["lineages"][name], layer=gate_layer,
                                                 min_value=gate_min, thresholds=gate_cells,
                                                 states=markers["states"].get(name))
                    allowed |= ~applies[name]
                negatives = markers["lineages"][name].get("protein_neg")
                if gate_negatives == "all" and negatives and not applies[name].all():
                    # the veto alone where the rest of the gate does not apply: a CD3+ cell is not NK
                    veto_ok, _ = lineage_gate(scorer, {"protein_neg": negatives}, layer=gate_layer,
                                              min_value=gate_min, thresholds=gate_cells)
                    allowed &= veto_ok | applies[name]
                    used = used or "protein_neg"
                lin_mat[~allowed, j] = -np.inf
                called = ungated == name
                gate_report[name] = {"gated_by": used, "cells_gated": int(applies[name].sum()),
                                     "cells_allowed": int(allowed.sum()), "score_calls": int(called.sum()),
                                     "score_calls_vetoed": int((called & ~allowed).sum())}
            _warn_vetoed(gate_report, rule=(f"{gate_layer}, levels learned per antibody, else >= {gate_min:g}"
                                            if gate_threshold == "auto" else f"{gate_layer} >= {gate_min:g}"))
        lineage, lin_conf = _assign(lin_names, lin_mat, min_confidence)
        if gate_layer is not None:
            none = ~np.isfinite(lin_mat).any(1)
            lineage[none] = UNASSIGNED
            lin_conf[none] = 0.0
            log.info("lineage gate (%s >= %g): %d cells admitted by no lineage -> Unassigned; per lineage %s",
                     gate_layer, gate_min, int(none.sum()), gate_report)
        if refine and refine_lineages:  # learned per marker state: a lineage of several populations is not one class
            lineage_markers = lineage.copy()
            sub = np.full(n, "", dtype=object)
            for lin, states in markers["states"].items():
                rows = np.flatnonzero(lineage == lin)
                calls = _state_calls(scorer, states, rows, graph, smoothing=smoothing, min_confidence=min_confidence,
                                     alpha=substate_alpha)
                if calls is not None:
                    sub[rows] = calls[1]
            features, blocks = _lineage_features(scorer, _marker_genes(markers, standins=scorer.standins), all_rows)
            choices = np.isfinite(lin_mat)
            if refine_lineage_choices:  # the markers' best few; ties broken by the lineages' order
                rank = np.argsort(np.argsort(-np.where(choices, lin_mat, -np.inf), axis=1, kind="stable"), axis=1)
                choices &= rank < refine_lineage_choices
            eligible = _supported(lin_raw, lineage, lin_names, refine_support, seed=seed,
                                  report=without_support, key="lineage")
            lineage, lin_conf = refine_states(features, lineage, lin_conf, states=lin_names, quantile=refine_quantile,
                                              c=refine_c, min_cells=refine_min_cells, blocks=blocks, subclasses=sub,
                                              allowed=choices, eligible=eligible, seed=seed)
            refined["lineage"] = int((lineage != lineage_markers).sum())
        state = np.full(n, UNASSIGNED, dtype=object)
    else:
        lineage = np.asarray(lineage, dtype=object)
        if len(lineage) != n:
            raise ValueError(f"lineage has {len(lineage)} values for {n} cells")
        if gate_layer is not None:
            log.info("annotation.gate_layer %r not applied: the lineages were given (annotation.method "
                     "both takes them from the reference)", gate_layer)
            gate_report = {"not_applied": "lineages given by the caller (reference)"}
        lin_conf = np.ones(n) if lineage_confidence is None else np.asarray(lineage_confidence, dtype=float)
        # a lineage without states in the marker file (a reference's own type) is the cell's state
        state = np.where(np.isin(lineage, list(markers["states"])), UNASSIGNED, lineage).astype(object)
    state_conf = np.zeros(n)
    before = np.full(n, None, dtype=object)
    without_antibody: dict[str, dict] = {}
    no_evidence_report: dict[str, dict] = {}
    blanked: dict[str, int] = {}
    for lin, states in markers["states"].items():
        rows = np.flatnonzero(lineage == lin)
        rna_blank = None
        if no_evidence == "likeliest":  # no state gene detected: the RNA modules are no evidence, the antibodies decide
            _, no_rna, measured = state_evidence(scorer, states, rows)
            rna_blank = no_rna & measured
            if rna_blank.any():
                blanked[lin] = int(rna_blank.sum())
        calls = _state_calls(scorer, states, rows, graph, smoothing=smoothing, min_confidence=min_confidence,
                             rna_blank=rna_blank, alpha=substate_alpha, report=state_counts)
        if calls is None:
            continue
        names, lab, conf, state_scores, lacking = calls
        blank, likeliest = np.zeros(len(rows), bool), None
        if no_evidence == "likeliest":
            blank, likeliest, undetected = no_evidence_cells(scorer, {k: states[k] for k in names}, lab, rows,
                                                             min_cells=refine_min_cells)
            if likeliest is not None:
                # confidence 0: no evidence (Unassigned under min_confidence > 0); set apart from the refinement
                lab = np.where(blank, UNASSIGNED, lab).astype(object)
                conf = np.where(blank, 0.0, conf)
                no_evidence_report[lin] = {"cells": int(blank.sum()), "state": likeliest,
                                           "undetected_expected": {k: round(v, 1) for k, v in undetected.items()}}
        # a state's antibodies are judged on the marker calls: the refinement learns the state from the calls
        # with the most of them, so its calls sit at the top of the background whether or not the antibody stains
        judged = lab.copy()
        if refine:
            before[rows] = _substates(scorer, states, lab, rows, graph, smoothing=smoothing,
                                      robust_z=substate_robust_z, alpha=substate_alpha, groups=substate_groups)
            features, blocks = _lineage_features(scorer, _marker_genes(markers, lineage=lin, standins=scorer.standins),
                                                 rows)
            eligible = _supported(state_scores, lab, names, refine_support, seed=seed, report=without_support, key=lin)
            allowed = fixed = None
            if lacking:  # the count test _state_calls ran: a cell closed to a state by it (no finite marker
                # score for the state) cannot be moved into it, and a supported marker call of the state,
                # resting on the cell's counts of its programme, is held against the classifier
                allowed = np.ones((len(rows), len(names)), bool)
                for name, closed in closed_states(lacking, names).items():
                    allowed[:, names.index(name)] = ~closed
                fixed = np.zeros(len(rows), bool)
                for name, lacks in lacking.items():
                    held = (lab == name) & ~lacks & (True if eligible is None else eligible)
                    fixed |= held
                    if held.any():
                        refine_count_evidence[name] = {"held": int(held.sum())}
            lab, conf = refine_states(features, lab, conf, states=names, quantile=refine_quantile, c=refine_c,
                                      min_cells=refine_min_cells, blocks=blocks, allowed=allowed, eligible=eligible,
                                      fixed=fixed, seed=seed)
        if likeliest is not None:
            lab = np.where(blank, likeliest if min_confidence <= 0 else UNASSIGNED, lab).astype(object)
            if refine:
                before[rows] = np.where(blank, lab, before[rows])
        lab = _substates(scorer, states, lab, rows, graph, smoothing=smoothing, robust_z=substate_robust_z,
                         alpha=substate_alpha, dropped=no_count_evidence, groups=substate_groups)
        unfound = (unseparated_states(markers["lineages"][lin], states, judged, rows, scorer, layer=gate_layer)
                   if gate_runs else {})
        for sname, antibodies in unfound.items():
            # a state its antibodies show no population of: only cells positive for one (at gate_min) keep it
            pos, measured = scorer.positive(antibodies, layer=gate_layer, min_value=gate_min)
            drop = (lab == sname) & ~pos[rows].any(1) & measured[rows].any(1)
            lab, conf = np.where(drop, UNASSIGNED, lab).astype(object), np.where(drop, 0.0, conf)
            without_antibody[sname] = {"antibodies": antibodies, "cells_unassigned": int(drop.sum()),
                                       "cells_kept": int((lab == sname).sum())}
            if drop.any():
                log.warning("state %s: its antibodies (%s) show no positive population among its calls, so its %d calls "
                            "below %s %g are Unassigned (%d kept): the cohort may lack %s, or the antibody stains dimly",
                            sname, ", ".join(antibodies), without_antibody[sname]["cells_unassigned"], gate_layer,
                            gate_min, without_antibody[sname]["cells_kept"], sname)
        if refine:
            refined[lin] = int((lab != before[rows]).sum())
        state[rows] = lab
        state_conf[rows] = conf
    mdata.obs["lineage"] = pd.Categorical(lineage)
    mdata.obs["lineage_confidence"] = lin_conf.astype(np.float32)
    mdata.obs["cell_state"] = pd.Categorical(state)
    mdata.obs["cell_state_confidence"] = state_conf.astype(np.float32)
    if refine:
        mdata.obs["cell_state_markers"] = pd.Categorical(np.where(before == None, state, before))  # noqa: E711
        if lineage_markers is not None:
            mdata.obs["lineage_markers"] = pd.Categorical(lineage_markers)
        log.info("refinement changed the calls of %s cells (key 'lineage': lineage calls; a lineage's name: "
                 "state calls within it)", refined)
        if without_support:
            log.info("refinement: calls kept from training because their own score's mixture places them among "
                     "the label's low cells (support < %g): %s", refine_support, without_support)
        for k, v in refine_count_evidence.items():
            log.info("%s (count_evidence): its %d supported marker calls are held against the refinement (cells "
                     "without the counts may not be moved into it)", k, v["held"])
    for k, v in state_counts.items():
        log.info("%s (count_evidence): %d of its lineage's %d cells show its genes' counts beyond the lineage's "
                 "background; %d marker calls without them took the next state", k,
                 v["cells"] - v["cells_without_evidence"], v["cells"], v["marker_calls_taken_away"])
    wanted = [f"states.{lin}.{k}" for lin, st in markers["states"].items() for k, c in st.items()
              if c.get("count_evidence")]
    if wanted and (substate_alpha is None or scorer.count_source is None):
        log.warning("%s: count_evidence not applied (%s); the marker scores call them alone", ", ".join(wanted),
                    "annotation.substate_alpha is null" if substate_alpha is None else "no raw counts")
    if scorer.missing:
        log.warning("markers absent from the data: %s", ", ".join(sorted(scorer.missing)))
    if scorer.standins:
        log.info("antibodies absent from the panel, scored by their transcripts: %s",
                 ", ".join(f"{k} -> {v}" for k, v in sorted(scorer.standins.items())))
    partial = {k: v for k, v in scorer.coverage.items() if v["components_usable"] < v["components_defined"]}
    for k, v in partial.items():
        log.warning("%s: %d of %d marker components usable (missing: %s); its score %s",
                    k, v["components_usable"], v["components_defined"], v["unusable"],
                    "counts them as 0" if v["unusable_count_as"] == "0" else "is the mean of the usable ones")
    return {
        "missing_markers": sorted(scorer.missing),
        "transcript_standins": dict(sorted(scorer.standins.items())),
        "lineages_not_called": not_called,
        "lineage_gate": gate_report,
        "gate_thresholds": gate_levels,
        "gate_thresholds_per_group": group_levels,
        "refined_cells": refined,
        "refine_training_without_support": without_support,
        "no_evidence": no_evidence_report,
        "states_by_antibodies_alone": blanked,
        "states_without_positive_antibody": without_antibody,
        "substates_without_count_evidence": no_count_evidence,
        "refine_count_evidence": refine_count_evidence,
        "states_needing_count_evidence": state_counts,
        "substate_groups": substate_group_report,
        "marker_coverage": scorer.coverage,
        "lineage_counts": mdata.obs["lineage"].value_counts().to_dict(),
        "cell_state_counts": mdata.obs["cell_state"].value_counts().to_dict(),
    }


def subcluster(mdata: md.MuData, *, resolution: float = 0.5, seed: int = 0) -> None:
    """Leiden within each lineage (``obs['subcluster']``, e.g. ``Mono,3``) on the cohort graph."""
    import anndata as ad
    import scanpy as sc

    proxy = ad.AnnData(obs=pd.DataFrame({"lineage": mdata.obs["lineage"].astype(str).to_numpy()},
                                        index=mdata.obs_names), shape=(mdata.n_obs, 0))
    proxy.obsp["connectivities"] = mdata.obsp["connectivities"]
    proxy.obsp["distances"] = mdata.obsp["distances"]
    proxy.uns["neighbors"] = {"connectivities_key": "connectivities", "distances_key": "distances",
                              "params": {"method": "umap"}}
    proxy.obs["lineage_cat"] = proxy.obs["lineage"].astype("category")
    cats = list(proxy.obs["lineage_cat"].cat.categories)
    sc.tl.leiden(proxy, resolution=resolution, flavor="igraph", n_iterations=2, random_state=seed,
                 key_added="sub", restrict_to=("lineage_cat", cats))
    mdata.obs["subcluster"] = pd.Categorical(proxy.obs["sub"].astype(str).to_numpy())
