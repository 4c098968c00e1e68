"""Map tissue cells onto the blood cell states with the shared reference-mapping recipe
(:mod:`sscsig.mapping`): a reference model trained on the blood cohort's annotated states, the
tissue cells added to it by scArches surgery, and each tissue cell's state voted by its nearest
blood cells in the shared latent space -- the Python counterpart of the study's Azimuth step.

* Model: totalVI (RNA + protein) on the genes and antibodies that blood and the tissue share, when
  at least ``min_shared_proteins`` antibodies are shared (AbSeq and TotalSeq panels overlap in the
  lineage markers); scVI on RNA otherwise; nothing zero-filled.
  Measured on the demo kidney (BD Rhapsody, ~350 shared genes, 30 shared antibodies, truth labels,
  1,576 immune cells): totalVI + kNN state accuracy 0.72, macro-F1 0.65, lineage accuracy 0.98;
  scANVI on RNA (its classifier's label) 0.61 / 0.49 / 0.90.
* Labels: ``blood_state`` from the distance-weighted votes of the ``k`` nearest blood cells,
  ``blood_state_uncertainty`` = 1 - the highest vote, ``unmapped`` under ``min_probability`` or
  beyond the blood cells' own ``novelty_quantile`` distance (tissue-only types are called before,
  from the tissue marker file); ``blood_lineage`` from the votes summed per lineage;
  ``blood_state_nearest`` the best-voted state whatever the cutoffs (the trajectory's path takes
  unmapped monocytes by it: a monocyte on its way to becoming a macrophage lies away from blood).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd

from ..mapping import MappingResult, ReferenceModel, counts_matrix, load_reference_model, map_query, train_reference
from ..protein import complete_panel
from ..training import torch_threads

log = logging.getLogger(__name__)

#: ``blood_state`` of a tissue immune cell whose best probability is under ``min_probability``
UNMAPPED = "unmapped"
_RENAME = {"label": "blood_state", "label_probability": "blood_state_probability",
           "label_uncertainty": "blood_state_uncertainty", "label_lineage": "blood_lineage",
           "label_nearest": "blood_state_nearest"}


def map_to_blood(reference: ad.AnnData, query: ad.AnnData, *, reference_prot: ad.AnnData | None = None,
                 query_prot: ad.AnnData | None = None, label_key: str = "cell_state", lineage_key: str = "lineage",
                 batch_key: str = "batch", query_batch_key: str = "sample", n_latent: int = 10,
                 n_genes: int = 2000, min_shared_genes: int = 50, min_shared_proteins: int = 5,
                 max_cells_per_state: int = 500, reference_epochs: int = 200, query_epochs: int = 100,
                 batch_size: int = 256, n_neighbors: int = 15, min_probability: float = 0.5,
                 novelty_quantile: float = 0.99, seed: int = 0, what: str = "tissue",
                 model: ReferenceModel | None = None) -> MappingResult:
    """Map tissue immune cells onto the blood states (:func:`sscsig.mapping.map_query` with the
    tissue's column names).

    Parameters
    ----------
    reference
        Blood cells' RNA: counts (``layers['counts']`` or ``X``), ``obs[label_key]`` (states),
        ``obs[lineage_key]`` and ``obs[batch_key]``.
    query
        Tissue cells' RNA (counts) with ``obs[query_batch_key]`` (each tissue sample is a batch).
    reference_prot, query_prot
        Their protein counts (cells in the same order); antibodies are matched by ``var_names``.
    n_latent, n_genes, min_shared_genes, min_shared_proteins, max_cells_per_state, reference_epochs, \
query_epochs, batch_size, n_neighbors, min_probability, novelty_quantile
        Config ``tissue.map`` (see the schema).
    seed
        scvi-tools' seed (training, subsampling).
    what
        Names the tissue in errors and logs.
    model
        The blood reference model for this tissue's panel (:func:`train_tissue_reference`); ``None``
        trains it here (the training settings above then apply). The calls are the same either way.

    Returns
    -------
    :class:`~sscsig.mapping.MappingResult`. ``query`` has ``blood_state`` (or ``unmapped``),
    ``blood_state_probability`` (the highest vote), ``blood_state_uncertainty`` (1 - it),
    ``blood_lineage`` (or ``unmapped``), ``novelty`` (> 1 is unmapped), ``blood_state_nearest`` (the
    best vote whatever the cutoffs) and ``p_<state>`` for every state.
    """
    res = map_query(reference, query, reference_prot=reference_prot, query_prot=query_prot, label_key=label_key,
                    lineage_key=lineage_key, batch_key=batch_key, query_batch_key=query_batch_key, n_latent=n_latent,
                    n_genes=n_genes, min_shared_genes=min_shared_genes, min_shared_proteins=min_shared_proteins,
                    max_cells_per_state=max_cells_per_state, reference_epochs=reference_epochs,
                    query_epochs=query_epochs, batch_size=batch_size, n_neighbors=n_neighbors,
                    min_probability=min_probability, novelty_quantile=novelty_quantile, seed=seed,
                    unmapped_label=UNMAPPED, what=what, setting="tissue.map.min_shared_genes", model=model)
    res.query = res.query.drop(columns=["lineage_probability"]).rename(columns=_RENAME)
    return res


#: the keys of config ``tissue.map`` that the blood reference model is trained with (rule
#: tissue_reference_model); the others (query_epochs, n_neighbors, min_probability,
#: novelty_quantile) are the mapping's, and changing them re-runs only rule tissue_map
MODEL_SETTINGS = ("n_latent", "n_genes", "min_shared_genes", "min_shared_proteins", "max_cells_per_state",
                  "reference_epochs", "batch_size")


def _blood_reference(blood: md.MuData, label_key: str, lineage_key: str,
                     batch_key: str) -> tuple[np.ndarray, ad.AnnData, ad.AnnData]:
    """The blood cells the tissue is mapped onto (every cell with a state, not ``Unassigned``): their
    positions, RNA counts with ``obs`` label / lineage / batch, and the complete panel's counts."""
    ok = ~blood.obs[label_key].astype(str).isin(["Unassigned", "nan"]).to_numpy()
    ref_rna, ref_prot = blood["rna"][ok], blood["prot"][ok][:, complete_panel(blood["prot"])]
    ref_rna = ad.AnnData(counts_matrix(ref_rna), var=pd.DataFrame(index=ref_rna.var_names),
                         obs=blood.obs.loc[ok, [label_key, lineage_key, batch_key]].astype(str))
    return ok, ref_rna, ref_prot


def read_tissue(files, donors: dict[str, str], *, tissue_name: str) -> md.MuData:
    """One tissue's QC'd samples (rule qc's ``.h5mu`` files) as one MuData: the genes and antibodies
    every sample measures, ``obs`` ``sample``, ``donor`` (from ``donors``, sample -> donor) and
    ``tissue``."""
    parts = [md.read_h5mu(f) for f in files]
    mdata = md.MuData({m: ad.concat([x[m] for x in parts], merge="same") for m in ("rna", "prot")})
    mdata.obs = pd.concat([x.obs for x in parts]).loc[mdata.obs_names]
    mdata.obs["donor"] = pd.Series(donors).loc[mdata.obs["sample"].astype(str)].to_numpy()
    mdata.obs["tissue"] = tissue_name
    return mdata


def train_tissue_reference(blood: md.MuData, genes, antibodies, *, tissue_name: str, map_params: dict | None = None,
                           label_key: str = "cell_state", lineage_key: str = "lineage", batch_key: str = "batch",
                           seed: int = 0, threads: int | None = None) -> ReferenceModel:
    """The blood reference model for a tissue that measures ``genes`` and ``antibodies`` (those every
    sample of the tissue has, as :func:`read_tissue` keeps them), on the ones blood shares, trained once
    (:func:`sscsig.mapping.train_reference`) and given to :func:`map_tissue` as ``model``: changing
    the mapping's settings then does not train it again. Only the tissue's feature names are needed,
    not its cells. ``map_params``: config ``tissue.map`` (its :data:`MODEL_SETTINGS`; the mapping's
    keys are ignored here). ``threads``: torch's CPU threads (the rule's)."""
    torch_threads(threads)
    _, ref_rna, ref_prot = _blood_reference(blood, label_key, lineage_key, batch_key)
    settings = {k: v for k, v in (map_params or {}).items() if k in MODEL_SETTINGS}
    return train_reference(ref_rna, genes, reference_prot=ref_prot, antibodies=antibodies, label_key=label_key,
                           batch_key=batch_key, seed=seed, what=tissue_name, setting="tissue.map.min_shared_genes",
                           **settings)


def map_tissue(blood: md.MuData, tissue: md.MuData, markers: dict[str, dict], *, tissue_name: str,
               min_type_score: float = 1.0, map_params: dict | None = None, label_key: str = "cell_state",
               lineage_key: str = "lineage", batch_key: str = "batch", seed: int = 0,
               model: ReferenceModel | str | Path | None = None,
               threads: int | None = None) -> tuple[md.MuData, ad.AnnData, pd.DataFrame]:
    """Tissue-only types, then the mapping of the tissue's immune cells onto the blood states.

    Parameters
    ----------
    blood
        The annotated blood cohort (``cohort/annotated.h5mu``): ``rna`` and ``prot`` counts,
        ``obs[label_key]``, ``obs[lineage_key]``, ``obs[batch_key]``, ``obs['donor']``.
    tissue
        The tissue's QC'd cells (all its samples), ``obs['sample']`` and ``obs['donor']``.
    markers
        :func:`~sscsig.tissue.load_tissue_markers`; types marked ``immune: true`` (macrophages) are
        mapped too, so that they share the latent space (the trajectory's end), but keep their type.
    min_type_score, map_params
        Config ``tissue.min_type_score`` and ``tissue.map``.
    model
        The blood reference model for this tissue (:func:`train_tissue_reference`) or the folder it
        was saved to (:func:`sscsig.mapping.save_reference_model`); ``None`` trains it here. The
        calls are the same either way.
    threads
        torch's CPU threads (the rule's); ``None`` leaves torch's setting.

    Returns
    -------
    (the tissue MuData with obs ``tissue_type``, ``tissue_type_score``, ``blood_state`` and
    ``blood_state_nearest`` (NaN for tissue-only types), ``blood_state_probability``,
    ``blood_state_uncertainty``, ``blood_lineage``, ``novelty`` and obsm ``X_mapped``; the blood
    cells' latent as an AnnData (obs: donor, states, batch; obsm ``X_mapped``); the per-type marker
    report)
    """
    from ._types import IMMUNE, call_tissue_types

    types, report = call_tissue_types(tissue["rna"], markers, min_type_score=min_type_score)
    immune_types = {IMMUNE} | {t for t, spec in markers.items() if spec.get("immune")}
    into_model = types["tissue_type"].isin(immune_types).to_numpy()
    ok, ref_rna, ref_prot = _blood_reference(blood, label_key, lineage_key, batch_key)
    torch_threads(threads)
    if isinstance(model, (str, Path)):
        model = load_reference_model(model, ref_rna, ref_prot, batch_key=batch_key)
    q = tissue["rna"][into_model]
    q = ad.AnnData(counts_matrix(q), obs=tissue.obs.loc[into_model, ["sample"]].astype(str),
                   var=pd.DataFrame(index=q.var_names))
    res = map_to_blood(ref_rna, q, reference_prot=ref_prot, query_prot=tissue["prot"][into_model],
                       label_key=label_key, lineage_key=lineage_key, batch_key=batch_key, seed=seed, what=tissue_name,
                       model=model, **(map_params or {}))
    obs = types.join(res.query[["blood_state", "blood_state_probability", "blood_state_uncertainty",
                                "blood_lineage", "novelty", "blood_state_nearest"]])
    tissue_only = obs["tissue_type"] != IMMUNE
    obs.loc[tissue_only, ["blood_state", "blood_lineage", "blood_state_nearest"]] = np.nan
    for c in obs.columns:
        tissue.obs[c] = obs[c].to_numpy()
    z = np.full((tissue.n_obs, res.latent_query.shape[1]), np.nan, dtype=np.float32)
    z[into_model] = res.latent_query
    tissue.obsm["X_mapped"] = z
    tissue.uns["tissue_mapping"] = json.dumps({**res.facts, "tissue": tissue_name,
                                               "tissue_types": report.to_dict(orient="records")}, default=str)
    blood_latent = ad.AnnData(np.zeros((int(ok.sum()), 0), dtype=np.float32),
                              obs=blood.obs.loc[ok, ["donor", "sample", label_key, lineage_key, batch_key]].astype(str))
    blood_latent.obsm["X_mapped"] = res.latent_reference.astype(np.float32)
    log.info("%s: %d cells; tissue types %s; %d mapped onto blood states (%d unmapped)", tissue_name, tissue.n_obs,
             types["tissue_type"].value_counts().to_dict(), int((obs["tissue_type"] == IMMUNE).sum()),
             int((obs["blood_state"] == UNMAPPED).sum()))
    return tissue, blood_latent, report
