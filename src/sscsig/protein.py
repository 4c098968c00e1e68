"""Antibody-derived tags: names, normalisation (CLR, DSB) and the cohort's normalised protein matrix.

Shared by the stages that read protein: QC (positivity for protein doublets, DSB), integration (the
protein PCs), annotation (marker scores), pseudobulk (per-donor protein means) and the report.

* CLR per cell (Seurat's margin 2): ``log1p(x) - mean(log1p(x))`` over the panel
  (:func:`clr_per_cell`), always computed.
* Panels that differ between samples (``qc.panel_policy: majority | union``): an antibody a sample
  did not measure is ``prot.obsm['protein_measured']`` False there, 0 in the counts and NaN in the
  normalised layers; :func:`complete_panel` marks the antibodies every cell has, the only ones an
  embedding or a model across samples uses.
* DSB (Mulè et al., Nat Commun 2022; the steps of muon's implementation, without importing muon)
  when the sample's empty droplets are given (sample-sheet ``raw_path``): :func:`select_empty_droplets`
  and :func:`dsb_normalise`.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import InputError

#: Prefix of protein features, so that they never collide with gene symbols (``ADT_CD4`` vs ``CD4``).
ADT_PREFIX = "ADT_"
_TOTALSEQ = re.compile(r"[_.-]?TotalSeq[_.-]?[ABC]?$", re.IGNORECASE)
PROTEIN_NORMS = ("auto", "dsb", "clr")
#: the lineage gate's level (annotation.gate_min) where the config leaves it null, per normalised layer:
#: DSB in units of the empty droplets' background SD (6: docs/annotation.md "Absent lineages"); CLR 1 (the twin and
#: ADTnorm's 13 real studies, docs/annotation.md "Without raw droplets"). totalvi_denoised has none: its scale depends
#: on the model, so the level must be given.
GATE_MIN_DEFAULTS = {"dsb": 6.0, "clr": 1.0}


def clean_antibody_name(name: str) -> str:
    """``CD8a_TotalSeqB`` -> ``CD8a``: strip the TotalSeq suffix Cell Ranger references carry."""
    return _TOTALSEQ.sub("", str(name))


#: a tag some tools put on every antibody's name (dsb's data: ``CD3_PROT``; ``ADT_CD3``, ``CD3-ADT``)
_NAME_TAG = re.compile(r"^(?:adt|prot|protein)[-_. ]+|[-_. ]+(?:adt|prot|protein)$", re.IGNORECASE)
#: a part of a compound name that can name a target alone: letters then a digit (CD3, CD197, CCR7, IL7Ra)
_NAME_PART = re.compile(r"[A-Za-z]+[0-9][A-Za-z0-9]*")


@functools.lru_cache(maxsize=4096)
def antibody_names(name: str) -> tuple[str, ...]:
    """The names one antibody of a panel answers to, its own name first.

    Panels name their antibodies in their own ways; besides the name itself (TotalSeq suffix and a
    tag such as ``_PROT`` or ``ADT_`` off), these are the names inside and before parentheses
    (``IL7Ralpha (CD127)``, ``MHCII (HLA-DR)``: CiteFuse's ECCITE-seq panel) and the parts of a name
    joined by ``-``, ``_``, ``/`` or a space that are letters then a digit (``CD197-CCR7``,
    ``CD127-IL7Ra``: Seurat's bmcite; ``CD3-1``, ``CD3-2``: two clones, or a name made unique next
    to the gene of the same name). ``HLA-DR`` and ``PD-1`` have no such parts.

    Examples
    --------
    >>> antibody_names("IL7Ralpha (CD127)")
    ('IL7Ralpha (CD127)', 'CD127', 'IL7Ralpha')
    >>> antibody_names("CD197-CCR7_TotalSeqC")
    ('CD197-CCR7', 'CD197', 'CCR7')
    """
    base = _NAME_TAG.sub("", clean_antibody_name(name).strip()).strip() or str(name).strip()
    names = [base]
    paren = re.fullmatch(r"(.*?)\s*\(([^()]*)\)", base)
    if paren:
        names += [paren.group(2).strip(), paren.group(1).strip()]
    for n in list(names):
        parts = re.split(r"[-_/ ]+", n)
        if len(parts) > 1:
            names += [q for q in parts if _NAME_PART.fullmatch(q)]
    return tuple(dict.fromkeys(n for n in names if n))


@functools.lru_cache(maxsize=4096)
def _name_keys(name: str) -> tuple[str, ...]:
    """:func:`antibody_key` of each of :func:`antibody_names`' names, its own name's first."""
    return tuple(antibody_key(n) for n in antibody_names(name))


@functools.lru_cache(maxsize=None)
def antibody_aliases() -> dict[str, frozenset[str]]:
    """:func:`antibody_key` of a target -> the keys of every name it goes by, from the shipped table
    (``sscsig/data/antibody_genes.tsv``): the target, its ``aliases`` (CD197: CCR7; CD279: PD-1) and its
    gene where it is encoded by one gene (CD56: NCAM1; CD127: IL7R), so that a panel that names an
    antibody by its gene is read too."""
    groups: dict[str, set[str]] = {}
    for target, (genes, aliases) in _antibody_table(None).items():
        group = {antibody_key(n) for n in (target, *aliases, *(genes if len(genes) == 1 else []))}
        for k in group:
            groups.setdefault(k, set()).update(group)
    return {k: frozenset(v) for k, v in groups.items()}


def _match_level(antibody: str, name: str, want: str, aliases: frozenset[str]) -> int | None:
    """How well a panel's ``antibody`` matches the target ``name`` (key ``want``); lower is better,
    ``None``: not at all."""
    if antibody.lower() == name.lower():
        return 0
    keys = _name_keys(antibody)
    if keys[0] == want:
        return 1
    if keys[0].rstrip("ab") == want:  # CD8a, CD8b for CD8
        return 2
    if want in keys[1:]:
        return 3
    if aliases.intersection(keys):
        return 4
    return None


def find_protein(prot_var: pd.DataFrame, name: str) -> str | None:
    """The ``ADT_*`` feature of the target ``name`` (as a marker file writes it), or ``None``.

    Best match first: the antibody's name itself, case-insensitively; the name with punctuation,
    TotalSeq suffix and tags such as ``_PROT`` off (``HLA.DR`` for HLA-DR, ``CD3_PROT`` for CD3);
    ``CD8a`` / ``CD8b`` for CD8; a name inside parentheses or a part of a compound name
    (:func:`antibody_names`: ``IL7Ralpha (CD127)``, ``CD197-CCR7``, ``CD3-1``); an alias or the
    gene of the target (:func:`antibody_aliases`: ``CCR7`` for CD197, ``PD-1`` for CD279). Among
    antibodies that match equally well, the panel's first.
    """
    want = antibody_key(name)
    aliases = antibody_aliases().get(want, frozenset()) - {want}
    best: tuple[int, str] | None = None
    for var_name, ab in zip(prot_var.index, prot_var["antibody"].astype(str)):
        level = _match_level(ab, name, want, aliases)
        if level is not None and (best is None or level < best[0]):
            best = (level, var_name)
            if level == 0:
                break
    return None if best is None else best[1]


def antibody_key(name: str) -> str:
    """An antibody name reduced for matching tables to panels: TotalSeq suffix off, lower case, ``-``/``_``/``.`` removed."""
    return re.sub(r"[-_. ]", "", clean_antibody_name(name).lower())


def match_antibodies(names, panel) -> dict[str, str]:
    """Another table's antibody names matched to a panel's, by :func:`antibody_key`.

    A reference or atlas names its antibodies its own way: ``ADT_CD4`` (sscsig), ``CD4`` or
    ``CD4_TotalSeqC`` (Cell Ranger), ``CD4-1`` (``var_names_make_unique`` after a gene of the same
    name), ``CD197-CCR7`` (Seurat's bmcite), ``CD3_PROT`` (dsb). Each name is matched on its key with
    the ``ADT_`` prefix off; a name no key matches is tried once more without a ``-<digits>`` suffix,
    and then by the other names either side answers to (:func:`antibody_names`: a tag such as ``_PROT``
    off, a name in parentheses, a part of a compound name; and :func:`antibody_aliases`: ``CCR7`` for
    CD197), as :func:`find_protein` finds a marker file's targets.

    Parameters
    ----------
    names
        The names to match (e.g. a reference's protein ``var_names``).
    panel
        The names to match them to (e.g. the cohort's ``ADT_*`` features).

    Returns
    -------
    ``{name: panel name}`` for the names that match, each panel name at most once (the first name in
    ``names`` order that matches it; an exact key before a suffix-stripped one).
    """
    def key(n: str) -> str:
        n = str(n)
        return antibody_key(n[len(ADT_PREFIX):] if n.startswith(ADT_PREFIX) else n)

    by_key: dict[str, str] = {}
    for p in panel:
        by_key.setdefault(key(p), str(p))
    out: dict[str, str] = {}
    taken: set[str] = set()
    for strip in (False, True):
        for n in map(str, names):
            if n in out:
                continue
            k = key(re.sub(r"-\d+$", "", n) if strip else n)
            hit = by_key.get(k)
            if hit is not None and hit not in taken:
                out[n] = hit
                taken.add(hit)

    def other_names(n: str) -> set[str]:  # antibody_names drops the ADT_ prefix with the other tags
        keys = set(_name_keys(n))
        return keys.union(*(antibody_aliases().get(k, frozenset()) for k in keys))

    panel_names = [(str(p), other_names(str(p))) for p in panel]
    for n in map(str, names):
        if n in out:
            continue
        mine = other_names(n)
        hit = next((p for p, theirs in panel_names if p not in taken and mine & theirs), None)
        if hit is not None:
            out[n] = hit
            taken.add(hit)
    return out


def antibody_genes(path: str | Path | None = None) -> dict[str, list[str]]:
    """Antibody target -> the gene(s) encoding it, keyed by :func:`antibody_key` of the name and its aliases.

    Parameters
    ----------
    path
        A tab-separated table with columns ``antibody``, ``genes`` (comma-separated) and ``aliases``
        (comma-separated, may be empty); ``#`` lines are comments. ``None``: the table shipped with
        sscsig (``sscsig/data/antibody_genes.tsv``: common TotalSeq / CITE-seq targets; CD45 isoforms
        and glycan epitopes left out).

    Returns
    -------
    ``{key: [gene, ...]}`` for every antibody and alias.
    """
    out: dict[str, list[str]] = {}
    for target, (genes, aliases) in _antibody_table(path).items():
        for name in (target, *aliases):
            out[antibody_key(name)] = genes
    return out


def _antibody_table(path: str | Path | None) -> dict[str, tuple[list[str], list[str]]]:
    """:func:`antibody_genes`' table read: target -> (genes, aliases)."""
    from importlib import resources

    src = resources.files("sscsig") / "data" / "antibody_genes.tsv" if path is None else Path(path)
    try:
        table = pd.read_csv(src, sep="\t", comment="#", dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as e:
        raise InputError(f"antibody-gene table {src}: {e}") from None
    if missing := {"antibody", "genes"} - set(table.columns):
        raise InputError(f"antibody-gene table {src}: no column {', '.join(sorted(missing))}")
    out: dict[str, tuple[list[str], list[str]]] = {}
    for row in table.itertuples():
        genes = [g.strip() for g in row.genes.split(",") if g.strip()]
        if not genes:
            raise InputError(f"antibody-gene table {src}: antibody {row.antibody!r} has no gene")
        aliases = [a.strip() for a in str(getattr(row, "aliases", "") or "").split(",") if a.strip()]
        out[row.antibody.strip()] = (genes, aliases)
    return out


def clr_per_cell(x, *, measured: np.ndarray | None = None) -> np.ndarray:
    """Centred log-ratio per cell, ``log1p(x) - mean(log1p(x))`` over the panel (Seurat's margin 2).

    Parameters
    ----------
    x
        Cells x antibodies counts.
    measured
        Cells x antibodies, False where the cell's sample did not measure the antibody. The centre is
        then the mean over the antibodies every cell has (so that a shared antibody's value does not
        depend on how large a sample's panel was) and unmeasured values are NaN.
    """
    dense = x.toarray() if sp.issparse(x) else np.asarray(x)
    logx = np.log1p(dense.astype(np.float64))
    if measured is None or np.all(measured):
        return (logx - logx.mean(1, keepdims=True)).astype(np.float32)
    measured = np.asarray(measured, dtype=bool)
    everywhere = measured.all(0)
    if not everywhere.any():
        raise InputError("no antibody is measured in every sample: CLR has no shared reference")
    out = logx - logx[:, everywhere].mean(1, keepdims=True)
    out[~measured] = np.nan
    return out.astype(np.float32)


PANEL_POLICIES = ("intersection", "majority", "union")


#: the statuses of :func:`panel_plan` (antibody x sample)
MEASURED, MEASURED_DROPPED = "measured", "measured, dropped"
MISSING_KEPT, NOT_MEASURED = "not measured, kept as missing", "not measured"


def sample_measured(status) -> bool:
    """Whether a :func:`panel_plan` status says the sample measured the antibody (kept or not)."""
    return str(status) in (MEASURED, MEASURED_DROPPED)


def same_antibody_names(panels: dict[str, list[str]]) -> dict[str, dict[str, str]]:
    """Per sample, its antibodies that an earlier sample spells otherwise, and that spelling.

    Two names are the same antibody when they agree but for case, punctuation, a TotalSeq suffix
    or a tag such as ``_PROT`` (``HLA-DR``, ``HLA.DR``, ``HLA_DR``; :func:`antibody_key` of
    :func:`antibody_names`' first name). Without this, two samples whose feature references spell a
    target differently would each lose it under ``qc.panel_policy: intersection``. A name whose key
    two antibodies of the same sample share (CiteFuse's ``PD-1 (CD279)`` and ``PD1 (CD279)``) is
    left as it is, and so is every spelling of it elsewhere.

    Parameters
    ----------
    panels
        ``sample -> antibody names`` (``var['antibody']``), in the cohort's sample order.

    Returns
    -------
    ``sample -> {name: the first sample's spelling}`` (empty where nothing is renamed).
    """
    def key(n: str) -> str:
        return _name_keys(n)[0]

    ambiguous = {k for names in panels.values() for k, c in Counter(map(key, names)).items() if c > 1}
    first: dict[str, str] = {}
    out: dict[str, dict[str, str]] = {}
    for sample, names in panels.items():
        out[sample] = {}
        for n in names:
            k = key(n)
            if k in ambiguous:
                continue
            first.setdefault(k, n)
            if first[k] != n:
                out[sample][n] = first[k]
    return out


def rename_sentences(renamed: dict[str, dict[str, str]]) -> list[str]:
    """One sentence per sample with antibodies :func:`same_antibody_names` renames; said at start-up
    (:func:`sscsig.io.panel_warnings`) and again by the merge."""
    return [f"sample {s}: antibodies an earlier sample spells otherwise take its spelling (the same target): "
            + ", ".join(f"{a} -> {b}" for a, b in names.items()) for s, names in renamed.items() if names]


def panel_plan(panels: dict[str, list[str]], *, policy: str = "intersection",
               min_fraction: float = 0.5) -> pd.DataFrame:
    """Which antibodies the cohort keeps when the samples' panels differ (``qc.panel_policy``).

    Parameters
    ----------
    panels
        ``sample -> antibodies (features) it measured``.
    policy
        ``intersection``: keep the antibodies every sample measured. ``majority``: keep those measured
        in at least ``min_fraction`` of the samples; a sample that lacks one has it missing (NaN in
        the normalised layers, scored only where measured). ``union``: keep every antibody so.
    min_fraction
        Share of samples (0-1) for ``majority``.

    Returns
    -------
    Antibodies (the union, first-seen order) x samples: ``measured``, ``measured, dropped`` (the sample
    has it, the cohort does not keep it), ``not measured, kept as missing`` or ``not measured``
    (dropped); plus ``n_samples`` (how many measured it) and ``kept``.
    """
    if policy not in PANEL_POLICIES:
        raise InputError(f"qc.panel_policy must be one of {', '.join(PANEL_POLICIES)}, not {policy!r}")
    if not 0 < min_fraction <= 1:
        raise InputError(f"qc.panel_min_fraction must be in (0, 1], not {min_fraction}")
    order = list(dict.fromkeys(a for abs_ in panels.values() for a in abs_))
    has = pd.DataFrame({s: [a in set(abs_) for a in order] for s, abs_ in panels.items()}, index=order, dtype=bool)
    n = has.sum(1)
    need = {"intersection": len(panels), "union": 1,
            "majority": int(np.ceil(min_fraction * len(panels) - 1e-9))}[policy]
    kept = n >= max(need, 1)
    status = pd.DataFrame(index=order, columns=list(panels), dtype=object)
    for s in panels:
        status[s] = np.where(has[s], np.where(kept, MEASURED, MEASURED_DROPPED), np.where(kept, MISSING_KEPT, NOT_MEASURED))
    status["n_samples"] = n.astype(int)
    status["kept"] = kept
    status.index.name = "antibody"
    return status


def panel_sentences(plan: pd.DataFrame, *, policy: str) -> dict[str, str]:
    """One sentence per sample whose panel differs from the cohort's, from a :func:`panel_plan`
    table: the antibodies the sample lacks that others have, what ``policy`` drops from the whole
    cohort and what it keeps as missing values in this sample. Said at start-up
    (:func:`sscsig.io.panel_warnings`) and again by the merge, atop every table."""
    name = lambda a: str(a).removeprefix(ADT_PREFIX)  # noqa: E731
    samples = [c for c in plan.columns if c not in ("n_samples", "kept")]
    dropped = [name(a) for a in plan.index if not plan.at[a, "kept"]]
    out = {}
    for s in samples:
        lack = [a for a in plan.index if not sample_measured(plan.at[a, s])]
        kept_missing = [name(a) for a in lack if plan.at[a, "kept"]]
        if not lack and not dropped:
            continue
        msg = (f"sample {s!r} lacks {len(lack)} antibodies other samples have ({', '.join(map(name, lack))})"
               if lack else f"sample {s!r}")
        how = []
        if dropped:
            how.append(f"{', '.join(dropped)} dropped from the whole cohort")
        if kept_missing:
            how.append(f"{', '.join(kept_missing)} kept as missing values here (scored only where measured)")
        out[s] = f"{msg}; qc.panel_policy = {policy}: {'; '.join(how)}"
    return out


def measured_mask(prot: ad.AnnData) -> np.ndarray | None:
    """Cells x antibodies, False where the cell's sample did not measure the antibody (``None``: the
    cohort's samples share one panel)."""
    m = prot.obsm.get("protein_measured")
    if m is None:
        return None
    m = np.asarray(m, dtype=bool)
    return None if m.all() else m


def complete_panel(prot) -> np.ndarray:
    """Per antibody: measured in every cell of the cohort (``prot.var['measured_in_all']``; all True
    when the samples share one panel). Embeddings, batch correction and models that compare cells
    across samples use these antibodies only."""
    if "measured_in_all" in prot.var:
        return prot.var["measured_in_all"].to_numpy(bool)
    return np.ones(prot.n_vars, bool)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of a 1-D sample (between-class variance maximised over 256 bins)."""
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(np.asarray(values, dtype=np.float64), nbins=256))


def otsu_separation(values: np.ndarray, threshold: float) -> float:
    """Between-class variance over total variance of ``values`` split at ``threshold`` (Otsu's
    effectiveness measure, 0-1): ~0.64 for a single normal population, near 1 for two well
    separated ones; 0 when one side is empty."""
    x = np.asarray(values, dtype=np.float64)
    hi = x > threshold
    w1 = hi.mean()
    var = x.var()
    if w1 in (0.0, 1.0) or var == 0:
        return 0.0
    return float(w1 * (1 - w1) * (x[hi].mean() - x[~hi].mean()) ** 2 / var)


def normalised_protein(prot) -> tuple[np.ndarray, pd.Index, str]:
    """The cohort's normalised protein without isotype controls: ``(values, names, layer used)``.

    DSB (``layers['dsb']``) where the QC stage made it, CLR (``layers['clr']``) otherwise. Only the
    antibodies every sample measured (:func:`complete_panel`), so the matrix has no missing values.
    """
    layer = "dsb" if "dsb" in prot.layers else "clr"
    keep = ~prot.var["isotype"].to_numpy(bool) & complete_panel(prot)
    return np.asarray(prot.layers[layer])[:, keep], prot.var_names[keep], layer


def protein_norm_method(choice: str, *, has_empty: bool, sample: str) -> str:
    """Resolve ``qc.protein_norm`` (``auto`` | ``dsb`` | ``clr``) for one sample."""
    if choice not in PROTEIN_NORMS:
        raise InputError(f"qc.protein_norm must be 'auto', 'dsb' or 'clr', not {choice!r}")
    if choice == "dsb" and not has_empty:
        raise InputError(f"sample {sample!r}: qc.protein_norm is 'dsb' but the sample sheet gives no "
                         "raw_path (raw droplets) for it")
    if choice == "auto":
        return "dsb" if has_empty else "clr"
    return choice


def select_empty_droplets(raw, cells: pd.Index, *, empty_max_log10_rna: float = 2.5,
                          empty_log10_adt: tuple[float, float] = (1.5, 3.0), min_empty: int = 100,
                          sample: str = "?"):
    """The background droplets of a raw library, as in the DSB vignette.

    Parameters
    ----------
    raw
        The sample's raw droplets (MuData with ``rna`` and ``prot``).
    cells
        Barcodes (obs names) of the cells, which are never background.
    empty_max_log10_rna, empty_log10_adt, min_empty
        Background droplets have ``log10`` RNA UMIs below ``empty_max_log10_rna`` and ``log10`` ADT
        counts within ``empty_log10_adt``; fewer than ``min_empty`` of them is an error (config
        ``qc.dsb``).

    Returns
    -------
    The protein AnnData of the background droplets.
    """
    rna_n = np.log10(np.asarray(raw["rna"].X.sum(1)).ravel() + 1)
    adt_n = np.log10(np.asarray(raw["prot"].X.sum(1)).ravel() + 1)
    lo, hi = empty_log10_adt
    keep = (~raw.obs_names.isin(cells)) & (rna_n < empty_max_log10_rna) & (adt_n >= lo) & (adt_n < hi)
    if keep.sum() < min_empty:
        raise InputError(
            f"sample {sample!r}: {int(keep.sum())} empty droplets in its raw_path with log10 ADT in "
            f"[{lo}, {hi}) and log10 RNA < {empty_max_log10_rna} (need qc.dsb.min_empty = "
            f"{min_empty}); is raw_path the raw (unfiltered) matrix?")
    return raw["prot"][keep].copy()


def _gmm2_1d(z: np.ndarray, resp: np.ndarray, *, tied: bool, tol: float = 1e-3, max_iter: int = 100,
             reg_covar: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """A 2-component Gaussian mixture fitted to each row of ``z`` (one 1-D sample per row) by EM from
    the initial responsibilities ``resp`` (proteins x 2, the same for every row), each row stopping
    when its mean log-likelihood changes by less than ``tol``: scikit-learn's ``GaussianMixture``
    (``covariance_type`` ``tied`` or ``full``), all rows at once. Returns the rows' lower component
    means and BICs."""
    n = z.shape[1]
    eps = 10 * np.finfo(float).eps

    def m_step(r):
        nk = r.sum(1) + eps  # rows x 2
        mu = np.einsum("cpk,cp->ck", r, z) / nk
        if tied:
            var = ((z ** 2).sum(1, keepdims=True) - (nk * mu ** 2).sum(1, keepdims=True)) / nk.sum(1, keepdims=True)
            var = np.repeat(var, 2, axis=1)
        else:
            var = np.einsum("cpk,cpk->ck", r, (z[:, :, None] - mu[:, None, :]) ** 2) / nk
        return nk / nk.sum(1, keepdims=True), mu, var + reg_covar

    def log_lik(w, mu, var):
        pc = 1.0 / np.sqrt(var)  # the precision's Cholesky factor in 1-D
        lp = -0.5 * (np.log(2 * np.pi) + (z[:, :, None] * pc[:, None, :] - (mu * pc)[:, None, :]) ** 2) \
            + np.log(pc)[:, None, :] + np.log(w)[:, None, :]
        norm = np.logaddexp(lp[..., 0], lp[..., 1])
        return norm.mean(1), lp - norm[..., None]

    r0 = np.broadcast_to(resp, (len(z), n, 2))
    nk = r0.sum(1) + eps
    w, mu, var = m_step(r0)
    w = nk / n  # the initialisation divides by the sample size, later M-steps by the weights' sum
    lower = np.full(len(z), -np.inf)
    active = np.ones(len(z), bool)
    for _ in range(max_iter):
        bound, log_resp = log_lik(w, mu, var)
        w2, mu2, var2 = m_step(np.exp(log_resp))
        w, mu, var = (np.where(active[:, None], a, b) for a, b in ((w2, w), (mu2, mu), (var2, var)))
        change = bound - lower
        lower = np.where(active, bound, lower)
        active &= ~(np.abs(change) < tol)
        if not active.any():
            break
    score, _ = log_lik(w, mu, var)
    n_params = 4 if tied else 5
    return mu.min(1), -2 * score * n + n_params * np.log(n)


def background_means(z: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """DSB's per-cell background level: the lower mean of a 2-component Gaussian mixture of the cell's
    protein values (rows of ``z``), with tied or separate variances, whichever has the lower BIC.

    Equal to fitting scikit-learn's ``GaussianMixture(2, covariance_type="tied" | "full",
    init_params="random", random_state=seed)`` to each cell in turn (what :func:`muon.prot.pp.dsb`
    does; a test checks it), but all cells at once: 0.6 s instead of 12.6 s for 2,000 real cells
    with 87 antibodies (2-core AMD EPYC), where the per-cell fits made DSB the slowest step of QC.
    """
    z = np.asarray(z, dtype=np.float64)
    resp = np.random.RandomState(seed).uniform(size=(z.shape[1], 2))
    resp /= resp.sum(1, keepdims=True)
    mean_tied, bic_tied = _gmm2_1d(z, resp, tied=True)
    mean_full, bic_full = _gmm2_1d(z, resp, tied=False)
    return np.where(bic_tied < bic_full, mean_tied, mean_full)


def dsb_normalise(cells, empty, *, pseudocount: float = 10, denoise: bool = True, seed: int = 0) -> np.ndarray:
    """DSB-normalised protein of ``cells`` (float32, cells x proteins) with ``empty`` as background.

    Step I: ``log(x + pseudocount)`` standardised by the mean and sd (``ddof=1``) of each protein in
    the empty droplets. Step II (``denoise``): per cell, the background mean is the lower mean of a
    2-component Gaussian mixture of the cell's Step-I values (tied and full variance both fitted with
    random initialisation seeded by ``seed``; the one with the lower BIC kept); the technical component
    is the first whitened principal component of the isotype controls and that mean (the mean alone
    without isotypes), centred, and its linear fit to each protein is removed (the intercept, i.e. the
    value at the cohort's mean background, is kept). Proteins are matched by name.

    The steps, options and random states of :func:`muon.prot.pp.dsb` (muon 0.1.9), which tests
    check this equals to 1e-5 (generated and real cells). Written out for speed: importing muon
    imports pynndescent, whose numba functions compile at import (12 s of every QC job on a 2-core
    machine, 17 of the 18 s a 150-cell sample took), and its mixture is fitted one cell at a time
    (:func:`background_means` fits all cells at once: 2,872 real cells with 87 antibodies in 1.1 s).
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression

    missing = [v for v in cells.var_names if v not in empty.var_names]
    if missing:
        raise InputError(f"DSB: proteins of the cells absent from the raw droplets: {missing[:5]}")
    dense = lambda m: np.asarray(m.toarray() if sp.issparse(m) else m, dtype=np.float64)  # noqa: E731
    background = np.log(dense(empty[:, cells.var_names].X) + pseudocount)
    z = (np.log(dense(cells.X) + pseudocount) - background.mean(0)) / background.std(0, ddof=1)
    if denoise:
        bg = background_means(z, seed=seed)
        iso = cells.var["isotype"].to_numpy(bool) if "isotype" in cells.var else np.zeros(cells.n_vars, bool)
        covar = (PCA(n_components=1, whiten=True).fit_transform(np.hstack([z[:, iso], bg[:, None]]))
                 if iso.any() else bg[:, None])
        covar = covar - covar.mean(0)  # muon's fit centres it in place (copy_X=False); the PC is centred
        z = z - covar @ LinearRegression().fit(covar, z).coef_.T
    return z.astype(np.float32)


__all__ = ["ADT_PREFIX", "GATE_MIN_DEFAULTS", "MEASURED", "MEASURED_DROPPED", "MISSING_KEPT", "NOT_MEASURED", "PANEL_POLICIES", "PROTEIN_NORMS", "antibody_aliases", "antibody_names", "background_means", "clean_antibody_name", "clr_per_cell", "complete_panel", "dsb_normalise",
           "find_protein", "measured_mask", "normalised_protein", "otsu_separation", "otsu_threshold",
           "panel_plan", "panel_sentences", "rename_sentences", "same_antibody_names", "protein_norm_method", "sample_measured", "select_empty_droplets"]
