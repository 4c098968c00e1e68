"""Tissue-only cell types (macrophages, parenchyma) from a marker file, with absolute thresholds."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from ..errors import InputError
from ..rna import log_normalised

log = logging.getLogger(__name__)

#: ``tissue_type`` of a cell that no tissue-only type claims (it is mapped onto the blood states)
IMMUNE = "immune"


def load_tissue_markers(path: str | Path) -> dict[str, dict]:
    """Read ``config/markers_tissue.yaml``: ``types: {name: {genes: [...], versus: {set: [...]},
    immune: bool}}`` (``immune``: a tissue-resident immune type such as macrophages, mapped into the
    blood latent space with the immune cells but never given a blood state).

    Returns ``{type: {"genes": [...], "versus": {name: [...]}, "immune": bool}}``; a type without
    genes, or a file without ``types``, is an error that names the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"tissue marker file not found: {path}")
    spec = yaml.safe_load(path.read_text()) or {}
    types = spec.get("types")
    if not isinstance(types, dict) or not types:
        raise InputError(f"{path}: no 'types' mapping (tissue-only cell types and their marker genes)")
    out = {}
    for name, t in types.items():
        genes = list((t or {}).get("genes") or [])
        if not genes:
            raise InputError(f"{path}: tissue type {name!r} has no marker genes")
        if name == IMMUNE:
            raise InputError(f"{path}: {IMMUNE!r} is reserved for cells mapped onto the blood states")
        out[name] = {"genes": genes, "versus": {k: list(v) for k, v in ((t or {}).get("versus") or {}).items()},
                     "immune": bool((t or {}).get("immune", False))}
    return out


def log_cp10k(rna: ad.AnnData) -> sp.csr_matrix:
    """log1p(counts per 10,000) of a counts matrix (``layers['counts']`` when present, else ``X``):
    :func:`sscsig.rna.log_normalised` (the integration's normalisation); a cell without counts stays 0."""
    return log_normalised(sp.csr_matrix(rna.layers["counts"] if "counts" in rna.layers else rna.X, dtype=np.float32))


def _set_score(logx: sp.csr_matrix, var_names: pd.Index, genes: list[str]) -> tuple[np.ndarray, list[str]]:
    idx = var_names.get_indexer(genes)
    used = [g for g, i in zip(genes, idx) if i >= 0]
    idx = idx[idx >= 0]
    if len(idx) == 0:
        return np.full(logx.shape[0], np.nan), used
    return np.asarray(logx[:, idx].mean(1)).ravel(), used


def call_tissue_types(rna: ad.AnnData, markers: dict[str, dict], *, min_type_score: float = 1.0,
                      min_genes: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Call tissue-only cell types: the best-scoring type whose score reaches ``min_type_score`` and
    beats each of its ``versus`` sets; every other cell is ``immune``.

    The score of a gene set is the mean log1p(CP10k) over the genes the panel measures: an absolute
    level, so a type that is absent from a sample is not found in it. A type with fewer than
    ``min_genes`` of its markers on the panel is not called at all (reported, with a warning).

    Parameters
    ----------
    rna
        Counts (cells x genes).
    markers
        :func:`load_tissue_markers`.
    min_type_score
        Config ``tissue.min_type_score``.

    Returns
    -------
    (per cell: ``tissue_type``, ``tissue_type_score``; per type: markers used, callable, cells)
    """
    logx = log_cp10k(rna)
    scores, report = {}, []
    for name, spec in markers.items():
        s, used = _set_score(logx, rna.var_names, spec["genes"])
        ok = len(used) >= min_genes
        if not ok:
            log.warning("tissue type %s: only %d of its markers (%s) on the panel; not called", name, len(used),
                        ", ".join(used) or "none")
            s = np.full(rna.n_obs, np.nan)
        else:
            for vname, vgenes in spec["versus"].items():
                v, vused = _set_score(logx, rna.var_names, vgenes)
                if len(vused):
                    s = np.where(s > v, s, np.nan)
        scores[name] = s
        report.append({"tissue_type": name, "markers_used": " ".join(used), "n_markers": len(spec["genes"]),
                       "callable": ok})
    table = pd.DataFrame(scores, index=rna.obs_names)
    best = table.fillna(-np.inf).to_numpy()
    arg = best.argmax(1) if table.shape[1] else np.zeros(rna.n_obs, int)
    top = best[np.arange(rna.n_obs), arg] if table.shape[1] else np.full(rna.n_obs, -np.inf)
    called = top >= min_type_score
    types = np.where(called, np.array(table.columns)[arg] if table.shape[1] else IMMUNE, IMMUNE)
    out = pd.DataFrame({"tissue_type": types, "tissue_type_score": np.where(np.isfinite(top), top, np.nan)},
                       index=rna.obs_names)
    rep = pd.DataFrame(report)
    rep["cells"] = [int((types == t).sum()) for t in rep["tissue_type"]]
    return out, rep
