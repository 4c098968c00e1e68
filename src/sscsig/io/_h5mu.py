"""Partial readers of the pipeline's own cohort files (``cohort/*.h5mu``).

A rule reads only what it uses: ``obs`` and one embedding for Milo, the raw counts for pseudobulk,
the log-normalised RNA for signatures, never the whole object when the matrices are not needed.
"""

from __future__ import annotations

import anndata as ad
import h5py
import pandas as pd
from anndata.io import read_elem


def read_elems(path, *keys: str) -> list:
    """The named elements of an h5mu (e.g. ``"obs"``, ``"obsm/X_umap"``), nothing else."""
    with h5py.File(path, "r") as f:
        return [read_elem(f[k]) for k in keys]


def read_obs(path) -> pd.DataFrame:
    """The cohort's cell metadata (``obs``) of an h5mu."""
    return read_elems(path, "obs")[0]


def read_modality(path, mod: str, *, x: str | None = "X", layers=()) -> ad.AnnData:
    """One modality with only the matrices a rule needs, in the cohort's cell order.

    Parameters
    ----------
    path
        A cohort h5mu.
    mod
        ``"rna"`` or ``"prot"``.
    x
        The element read as ``X`` (e.g. ``"layers/counts"``); ``None`` for no ``X``.
    layers
        Extra layers to read; those absent are skipped.
    """
    with h5py.File(path, "r") as f:
        g = f[f"mod/{mod}"]
        cells = read_elem(f["obs"]).index
        a = ad.AnnData(X=read_elem(g[x]) if x else None, obs=pd.DataFrame(index=read_elem(g["obs"]).index),
                       var=read_elem(g["var"]),
                       layers={k: read_elem(g[f"layers/{k}"]) for k in layers if f"layers/{k}" in g})
    if not a.obs_names.equals(cells):
        raise ValueError(f"{path}: modality {mod!r} cells are not in the cohort's order")
    return a


__all__ = ["read_elems", "read_modality", "read_obs"]
