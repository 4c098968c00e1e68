"""T-cell clonotypes shared between a tissue and the same donor's blood (scirpy).

A clonotype found in both a donor's blood and its lung is direct evidence that those T cells
circulate between them (the study's suggestion for the ILD CD8.TEM_T2ISG cells). Clonotypes are
scirpy's: productive alpha-beta chains indexed per cell, identical CDR3 nucleotide sequences of
both arms (``ir_dist`` identity, ``define_clonotypes(receptor_arms="all", dual_ir="primary_only")``),
computed over the tissue's and its donors' blood samples together; a clone is counted within a
donor only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import cell_names

log = logging.getLogger(__name__)


def read_vdj(path: str | Path, *, sample: str) -> ad.AnnData:
    """One sample's 10x V(D)J contigs (``filtered_contig_annotations.csv`` or ``all_contig_annotations.json``,
    as scirpy reads them); cells named ``<sample>_<barcode>`` like the expression data."""
    import scirpy as ir

    path = Path(path)
    if not path.exists():
        raise InputError(f"sample {sample!r}: vdj_path not found: {path}")
    try:
        a = ir.io.read_10x_vdj(path)
    except Exception as exc:
        raise InputError(f"sample {sample!r}: cannot read {path} as 10x V(D)J contigs: {type(exc).__name__}: {exc}") from exc
    a.obs_names = cell_names(sample, a.obs_names)  # as read_sample names the same cells
    a.obs["sample"] = sample
    return a


def define_clonotypes(files: dict[str, str], *, donor_of: dict[str, str], compartment_of: dict[str, str]) -> pd.DataFrame:
    """Clonotypes of several samples' T cells, and whether each is in both blood and tissue of its donor.

    Parameters
    ----------
    files
        sample -> V(D)J contig file.
    donor_of, compartment_of
        sample -> donor; sample -> ``blood`` or the tissue's name.

    Returns
    -------
    One row per cell with a productive receptor: ``cell, sample, donor, compartment, clone``
    (``<donor>:<scirpy clone_id>``), ``clone_size`` (cells of the clone in the donor),
    ``in_blood``, ``in_tissue`` (the clone has cells in the donor's blood / tissue samples).
    """
    import scirpy as ir

    parts = [read_vdj(p, sample=s) for s, p in files.items()]
    a = ad.concat(parts)
    ir.pp.index_chains(a)
    ir.tl.chain_qc(a)
    ir.pp.ir_dist(a)
    ir.tl.define_clonotypes(a, receptor_arms="all", dual_ir="primary_only")
    obs = a.obs
    ok = obs["clone_id"].notna() & (obs["clone_id"].astype(str) != "nan")
    cells = pd.DataFrame({"cell": obs.index[ok], "sample": obs.loc[ok, "sample"].astype(str).to_numpy()})
    cells["donor"] = cells["sample"].map(donor_of)
    cells["compartment"] = cells["sample"].map(compartment_of)
    cells["clone"] = cells["donor"] + ":" + obs.loc[ok, "clone_id"].astype(str).to_numpy()
    cells["clone_size"] = cells.groupby("clone")["cell"].transform("size")
    where = cells.groupby("clone")["compartment"].agg(lambda c: set(c))
    cells["in_blood"] = cells["clone"].map(lambda k: "blood" in where[k])
    cells["in_tissue"] = cells["clone"].map(lambda k: bool(where[k] - {"blood"}))
    log.info("clonotypes: %d cells with a receptor in %d samples, %d clones, %d in blood and tissue", len(cells),
             len(files), cells["clone"].nunique(), int(cells.loc[cells["in_blood"] & cells["in_tissue"], "clone"].nunique()))
    return cells


def clone_sharing(clones: pd.DataFrame, tissue_state: pd.Series, blood_state: pd.Series) -> pd.DataFrame:
    """Per clone seen in a tissue: donor, cells in tissue and blood, and their states.

    Parameters
    ----------
    clones
        :func:`define_clonotypes`.
    tissue_state, blood_state
        cell -> state (the tissue's mapped blood state, the blood annotation).

    Returns
    -------
    ``donor, clone, tissue_cells, blood_cells, shared, tissue_states, blood_states`` (states as
    ``state:n`` lists), sorted by tissue cells.
    """
    t = clones[clones["compartment"] != "blood"].copy()
    b = clones[clones["compartment"] == "blood"].copy()
    t["state"] = tissue_state.reindex(t["cell"]).astype(str).to_numpy()
    b["state"] = blood_state.reindex(b["cell"]).astype(str).to_numpy()

    def states(df):
        return df.groupby("clone")["state"].agg(lambda s: " ".join(f"{k}:{v}" for k, v in s.value_counts().items()))

    rows = t.groupby("clone").agg(donor=("donor", "first"), tissue_cells=("cell", "size"))
    rows["blood_cells"] = b.groupby("clone").size().reindex(rows.index).fillna(0).astype(int)
    rows["shared"] = rows["blood_cells"] > 0
    rows["tissue_states"] = states(t).reindex(rows.index)
    rows["blood_states"] = states(b).reindex(rows.index).fillna("")
    return rows.reset_index().sort_values(["tissue_cells", "clone"], ascending=[False, True]).reset_index(drop=True)


def sharing_by_state(clones: pd.DataFrame, tissue_state: pd.Series) -> pd.DataFrame:
    """Per donor and tissue state: tissue cells with a receptor, and how many of them belong to a
    clone also found in the donor's blood."""
    t = clones[clones["compartment"] != "blood"].copy()
    t["state"] = tissue_state.reindex(t["cell"]).astype(str).to_numpy()
    g = t.groupby(["donor", "state"])
    out = pd.DataFrame({"tcr_cells": g.size(), "tcr_shared": g["in_blood"].sum().astype(int)}).reset_index()
    out["tcr_shared_share"] = out["tcr_shared"] / out["tcr_cells"].replace(0, np.nan)
    return out
