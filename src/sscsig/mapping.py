"""Reference mapping shared by the stages that label cells from a labelled reference: the blood
cohort annotated from a user-supplied reference (``annotate``, ``annotation.method: reference``) and
the tissue cells mapped onto the blood states (``tissue``).

The recipe is scvi-tools' reference mapping (the Python counterpart of the study's Azimuth step): a
reference model trained on the labelled cells -- totalVI on RNA + protein when enough antibodies are
shared, scVI on RNA otherwise -- the query cells added to it by scArches surgery
(``load_query_data``; Lotfollahi et al., Nat Biotechnol 2022), and each query cell's label voted by
its nearest reference cells in the shared latent space.

* Features: the genes and antibodies that reference and query share; those one side lacks are left
  out of the model, never zero-filled (scvi-tools' ``prepare_query_anndata`` would pad them with
  zeros, which reads as "not expressed").
* Labels: distance-weighted votes of the ``n_neighbors`` nearest reference cells are the label
  probabilities; ``uncertainty`` = 1 - the highest. A cell whose highest vote is under
  ``min_probability``, or whose mean distance to its reference neighbours is beyond the
  ``novelty_quantile`` of the reference cells' own (leave-one-out), gets ``unmapped_label``: it
  looks like no reference label (a type the reference lacks). The same rule applies to the
  lineage, from the votes summed per lineage; it stays reliable where the fine label is not.
* Seeded: ``scvi.settings.seed``, torch in deterministic mode, the training subsample from ``seed``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import InputError
from .training import epoch_progress, torch_deterministic

log = logging.getLogger(__name__)


@dataclass
class MappingResult:
    """What :func:`map_query` returns."""

    query: pd.DataFrame  # per query cell: label, label_probability / _uncertainty, label_lineage, novelty, p_<label>
    latent_query: np.ndarray
    latent_reference: np.ndarray | None  # every reference cell given, in the same space (None: not asked for)
    genes: list[str]
    proteins: list[str]
    facts: dict


def counts_matrix(a: ad.AnnData) -> sp.csr_matrix:
    """Raw counts of an AnnData (``layers['counts']`` when present, else ``X``) as float32 CSR."""
    return sp.csr_matrix(a.layers["counts"] if "counts" in a.layers else a.X, dtype=np.float32)


def shared_genes(reference: ad.AnnData, query: ad.AnnData, *, n_genes: int = 2000, min_shared_genes: int = 50,
                 what: str = "query", setting: str = "min_shared_genes") -> list[str]:
    """Genes measured in both, at most ``n_genes`` (the most variable in the reference, Seurat v3
    dispersion on counts); fewer than ``min_shared_genes`` is an error naming ``what`` and the
    config ``setting`` that sets the minimum."""
    import scanpy as sc

    qset = set(query.var_names)
    genes = [g for g in reference.var_names if g in qset]
    if len(genes) < min_shared_genes:
        raise InputError(f"{what}: only {len(genes)} genes are shared with the reference (need at least "
                         f"{min_shared_genes}, config {setting}): the panel is too small to map")
    if len(genes) <= n_genes:
        return genes
    sub = ad.AnnData(counts_matrix(reference[:, genes]), var=pd.DataFrame(index=genes))
    sc.pp.highly_variable_genes(sub, flavor="seurat_v3", n_top_genes=n_genes)
    return [g for g, keep in zip(genes, sub.var["highly_variable"]) if keep]


def reference_subsample(labels: pd.Series, *, max_cells_per_state: int = 500, seed: int = 0) -> np.ndarray:
    """Positions of the reference cells used for training: at most ``max_cells_per_state`` per label
    (sampled with ``seed``), rare labels whole, so that every label is learnt."""
    rng = np.random.default_rng(seed)
    keep = []
    for state in sorted(labels.unique()):
        pos = np.flatnonzero((labels == state).to_numpy())
        if len(pos) > max_cells_per_state:
            pos = np.sort(rng.choice(pos, max_cells_per_state, replace=False))
        keep.append(pos)
    return np.sort(np.concatenate(keep))


def _model_input(rna: ad.AnnData, prot: ad.AnnData | None, genes, proteins, batch) -> ad.AnnData:
    a = ad.AnnData(counts_matrix(rna[:, genes]), obs=pd.DataFrame({"batch": np.asarray(batch, dtype=str)},
                                                                  index=rna.obs_names), var=pd.DataFrame(index=genes))
    if proteins:
        a.obsm["protein"] = pd.DataFrame(counts_matrix(prot[:, proteins]).toarray(), index=rna.obs_names,
                                         columns=proteins)
    return a


def vote(latent_reference: np.ndarray, labels: np.ndarray, lineages: np.ndarray, latent_query: np.ndarray, *,
         n_neighbors: int = 15, min_probability: float = 0.5, novelty_quantile: float = 0.99,
         unmapped_label: str = "unmapped") -> pd.DataFrame:
    """kNN label transfer in a shared latent space (see the module docstring).

    Returns, per query cell (rows in order): ``label``, ``label_probability``, ``label_uncertainty``,
    ``label_lineage``, ``novelty`` (mean distance to the reference neighbours over the reference
    cells' own ``novelty_quantile``; > 1 is unmapped), ``label_nearest`` (the best-voted label
    whatever the two cutoffs) and ``p_<label>`` for every label.
    """
    from sklearn.neighbors import NearestNeighbors

    labels = np.asarray(labels, dtype=str)
    nn = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(latent_reference)
    d_ref, _ = nn.kneighbors(latent_reference)
    cutoff = float(np.quantile(d_ref[:, 1:].mean(1), novelty_quantile))  # leave-one-out: [0] is the cell itself
    d_q, i_q = nn.kneighbors(latent_query, n_neighbors=n_neighbors)
    w = 1.0 / np.maximum(d_q, 1e-12)
    names = np.array(sorted(set(labels)))
    code = np.searchsorted(names, labels)
    votes = np.zeros((len(latent_query), len(names)))
    for j in range(n_neighbors):
        np.add.at(votes, (np.arange(len(latent_query)), code[i_q[:, j]]), w[:, j])
    votes /= votes.sum(1, keepdims=True)
    best = votes.max(1)
    novelty = d_q.mean(1) / cutoff
    novel = novelty > 1
    nearest = names[votes.argmax(1)]  # the best vote whatever the cutoffs
    label = np.where((best >= min_probability) & ~novel, nearest, unmapped_label)
    lineage_of = pd.Series(np.asarray(lineages, dtype=str), index=labels).groupby(level=0).first()
    lin_of_name = lineage_of.reindex(names).to_numpy()
    lin_names = np.array(sorted(set(lin_of_name)))
    lin_votes = np.stack([votes[:, lin_of_name == ln].sum(1) for ln in lin_names], axis=1)
    lineage = np.where((lin_votes.max(1) >= min_probability) & ~novel, lin_names[lin_votes.argmax(1)],
                       unmapped_label)
    out = pd.DataFrame({"label": label, "label_probability": best, "label_uncertainty": 1 - best,
                        "label_lineage": lineage, "lineage_probability": lin_votes.max(1), "novelty": novelty,
                        "label_nearest": nearest})
    return out.join(pd.DataFrame(votes, columns=[f"p_{s}" for s in names]))


def map_query(reference: ad.AnnData, query: ad.AnnData, *, reference_prot: ad.AnnData | None = None,
              query_prot: ad.AnnData | None = None, label_key: str = "cell_state", lineage_key: str = "lineage",
              batch_key: str = "batch", query_batch_key: str = "sample", n_latent: int = 10, n_genes: int = 2000,
              min_shared_genes: int = 50, min_shared_proteins: int = 5, max_cells_per_state: int = 500,
              reference_epochs: int = 200, query_epochs: int = 100, batch_size: int = 256, n_neighbors: int = 15,
              min_probability: float = 0.5, novelty_quantile: float = 0.99, seed: int = 0,
              unmapped_label: str = "unmapped", what: str = "query",
              setting: str = "min_shared_genes", reference_latent: bool = True) -> MappingResult:
    """Map query cells onto a labelled reference (see the module docstring).

    Parameters
    ----------
    reference
        Reference RNA: counts (``layers['counts']`` or ``X``), ``obs[label_key]``,
        ``obs[lineage_key]`` and ``obs[batch_key]``.
    query
        Query RNA (counts) with ``obs[query_batch_key]`` (each value a batch of the model).
    reference_prot, query_prot
        Their protein counts (cells in the same order); antibodies are matched by ``var_names``.
    n_latent, n_genes, min_shared_genes, min_shared_proteins, max_cells_per_state, reference_epochs, \
query_epochs, batch_size, n_neighbors, min_probability, novelty_quantile
        The model's size and training, the features, the vote (config ``tissue.map`` or
        ``annotation.reference``).
    seed
        scvi-tools' seed (training, subsampling).
    unmapped_label
        Label of the cells that look like no reference label.
    what, setting
        Name the query and the config key of ``min_shared_genes`` in errors and logs.
    reference_latent
        Also return every reference cell's latent (the tissue trajectory needs the blood cells in the
        shared space); ``False``: only the training subsample's is computed, for the vote.

    Returns
    -------
    :class:`MappingResult`; ``query`` as :func:`vote`'s, indexed by the query's ``obs_names``.
    """
    import scvi

    if query.n_obs == 0:
        raise InputError(f"{what}: no cells to map")
    genes = shared_genes(reference, query, n_genes=n_genes, min_shared_genes=min_shared_genes, what=what,
                         setting=setting)
    proteins = []
    if reference_prot is not None and query_prot is not None:
        qp = set(query_prot.var_names)
        proteins = [p for p in reference_prot.var_names if p in qp]
    use_totalvi = len(proteins) >= min_shared_proteins
    if not use_totalvi:
        log.warning("%s: %d antibodies shared with the reference (< %d): mapping on RNA only (scVI)", what,
                    len(proteins), min_shared_proteins)
        proteins = []
    scvi.settings.seed = seed
    labels = reference.obs[label_key].astype(str)
    train = reference_subsample(labels, max_cells_per_state=max_cells_per_state, seed=seed)
    ref = _model_input(reference, reference_prot, genes, proteins, reference.obs[batch_key])
    q = _model_input(query, query_prot, genes, proteins, "query:" + query.obs[query_batch_key].astype(str))
    ref_train = ref[train].copy()
    name = "totalVI" if use_totalvi else "scVI"
    log.info("%s: %s reference on %d of %d reference cells (%d labels), %d shared genes, %d shared antibodies",
             what, name, len(train), reference.n_obs, labels.nunique(), len(genes), len(proteins))
    cls = scvi.model.TOTALVI if use_totalvi else scvi.model.SCVI
    setup = {"protein_expression_obsm_key": "protein"} if use_totalvi else {}
    kw = dict(accelerator="cpu", devices=1, enable_progress_bar=False, batch_size=batch_size)
    with torch_deterministic():
        cls.setup_anndata(ref_train, batch_key="batch", **setup)
        model = cls(ref_train, n_latent=n_latent)
        model.train(max_epochs=reference_epochs, callbacks=[epoch_progress(reference_epochs, model=name, logger=log)],
                    **kw)
        qm = cls.load_query_data(q, model)
        qm.train(max_epochs=query_epochs, plan_kwargs={"weight_decay": 0.0},
                 callbacks=[epoch_progress(query_epochs, model=f"{name} query", logger=log)], **kw)
        latent_q = qm.get_latent_representation(q)
        if reference_latent:
            latent_r = qm.get_latent_representation(ref)
            latent_train = latent_r[train]
        else:
            latent_r, latent_train = None, qm.get_latent_representation(ref[train].copy())
    out = vote(latent_train, labels.to_numpy()[train], reference.obs[lineage_key].astype(str).to_numpy()[train],
               latent_q, n_neighbors=n_neighbors, min_probability=min_probability,
               novelty_quantile=novelty_quantile, unmapped_label=unmapped_label)
    out.index = query.obs_names
    unmapped = out["label"] == unmapped_label
    novel = out["novelty"] > 1
    facts = {"model": name, "genes": len(genes), "proteins": len(proteins), "reference_cells": int(len(train)),
             "query_cells": int(query.n_obs), "unmapped": int(unmapped.sum()), "novel": int(novel.sum()),
             "min_probability": min_probability, "novelty_quantile": novelty_quantile,
             "epochs": {"reference": reference_epochs, "query": query_epochs}}
    log.info("%s: mapped %d cells: %d %s (%d unlike any reference cell, the rest with a best vote < %.2f)", what,
             query.n_obs, facts["unmapped"], unmapped_label, facts["novel"], min_probability)
    return MappingResult(out, latent_q, latent_r, genes, proteins, facts)


__all__ = ["MappingResult", "counts_matrix", "map_query", "reference_subsample", "shared_genes", "vote"]
