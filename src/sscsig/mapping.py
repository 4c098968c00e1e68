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
* Labels, ``classifier="knn"``: distance-weighted votes of the ``n_neighbors`` nearest reference
  cells are the label probabilities; ``uncertainty`` = 1 - the highest. A cell whose highest vote is
  under ``min_probability``, or whose mean distance to its reference neighbours is beyond the
  ``novelty_quantile`` of the reference cells' own (leave-one-out), gets ``unmapped_label``: it
  looks like no reference label (a type the reference lacks). The same rule applies to the
  lineage, from the votes summed per lineage; it stays reliable where the fine label is not.
* Labels, ``classifier="logistic"`` (:func:`classify`): a 10-dimensional latent space compresses
  away what tells close states apart (two or three antibodies, a few genes), so the kNN vote splits
  between them. Instead, regularised logistic regressions (scikit-learn) are trained on the
  reference cells' latent, the shared antibodies (CLR per cell) and the log-normalised genes that
  mark the reference's labels (t-test, scanpy; ranked among every gene both sides measure, not only
  the model's variable genes, which leave out a rare state's markers such as IL2RA and CTLA4 of
  regulatory T cells), first for the lineage, then within each lineage for
  its states (Azimuth's and CellTypist's idea of a classifier on top of the mapping). A label's
  probability is P(lineage) x P(state | lineage); the ``min_probability`` and novelty rules apply to
  the lineage, a cell with an assigned lineage takes its most probable state. The regressions are
  trained on at most ``classifier_cells_per_state`` reference cells per label (their latent from
  the query model; ``None``: the model's own training subsample, ``max_cells_per_state``, kept
  small because the model's training time grows with it while a regression's hardly does), each
  cell weighted by the inverse of its label's sampling fraction: they learn the reference's
  proportions, which a subsample capped per label would flatten (with a large reference,
  regulatory T cells were then as likely a priori as naive CD4 T cells, and where the panel lacks
  CD25 and CD127 they were called 1.8 times as often as they occur).
  Within a lineage each antibody is read relative to its own background on each side (the lower
  mean of a 2-component mixture of the lineage's cells, :func:`sscsig.protein.background_means`):
  an antibody's ambient level differs between a reference and a cohort stained in another lab with
  another titration, and read raw, a cohort whose CD161 background is higher looks CD161+ in every
  CD4 T cell. The lineage classifier reads the antibodies raw: a lineage may be absent from, or the
  whole of, a cohort (sorted cells), where a background taken from the cells themselves would be
  the positive population.
* Seeded: ``scvi.settings.seed``, torch in deterministic mode, the training subsamples from ``seed``.
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


@dataclass
class ReferenceModel:
    """A reference model (:func:`train_reference`): the trained scvi-tools model and what the mapping
    needs to use it again (:func:`save_reference_model`, :func:`load_reference_model`)."""

    model: object  # scvi.model.TOTALVI or scvi.model.SCVI, trained on the reference's training cells
    genes: list[str]
    proteins: list[str]
    train: np.ndarray  # positions of the training cells in the reference
    train_names: list[str]  # their names, to check a saved model is used with its own reference
    rng: dict  # the random states at the end of the training, from which the query training starts
    facts: dict


def counts_matrix(a: ad.AnnData) -> sp.csr_matrix:
    """Raw counts of an AnnData (``layers['counts']`` when present, else ``X``) as float32 CSR."""
    return sp.csr_matrix(a.layers["counts"] if "counts" in a.layers else a.X, dtype=np.float32)


def genes_in_both(reference: ad.AnnData, genes) -> list[str]:
    """The reference's genes among ``genes`` (the query's gene names), in the reference's order."""
    qset = set(map(str, genes))
    return [g for g in reference.var_names if g in qset]


def shared_genes(reference: ad.AnnData, genes, *, n_genes: int = 2000, min_shared_genes: int = 50,
                 what: str = "query", setting: str = "min_shared_genes") -> list[str]:
    """The reference's genes among ``genes`` (the query's gene names), at most ``n_genes`` (the most
    variable in the reference, Seurat v3 dispersion on counts); fewer than ``min_shared_genes`` is an
    error naming ``what`` and the config ``setting`` that sets the minimum."""
    import scanpy as sc

    genes = genes_in_both(reference, genes)
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


def subsample_weights(labels: pd.Series, train: np.ndarray) -> np.ndarray:
    """Per training cell (positions ``train`` of :func:`reference_subsample`): its label's count in the
    whole reference over its count in the subsample, so that a classifier weighted by them learns the
    reference's label proportions (a label capped at ``max_cells_per_state`` counts as many cells
    as the reference has)."""
    labels = pd.Series(np.asarray(labels, dtype=str))
    whole, sub = labels.value_counts(), labels.iloc[train].value_counts()
    return (whole / sub).loc[labels.iloc[train]].to_numpy(dtype=float)


def _model_input(rna: ad.AnnData, prot: ad.AnnData | None, genes, proteins, batch) -> ad.AnnData:
    a = ad.AnnData(counts_matrix(rna[:, genes]), obs=pd.DataFrame({"batch": np.asarray(batch, dtype=str)},
                                                                  index=rna.obs_names), var=pd.DataFrame(index=genes))
    if proteins:
        a.obsm["protein"] = pd.DataFrame(counts_matrix(prot[:, proteins]).toarray(), index=rna.obs_names,
                                         columns=proteins)
    return a


def _reference_input(reference: ad.AnnData, reference_prot: ad.AnnData | None, genes, proteins, batch_key: str,
                     rows: np.ndarray | None = None) -> ad.AnnData:
    """:func:`_model_input` of the reference, of its cells at ``rows`` only (the training cells) or of all."""
    if rows is None:
        return _model_input(reference, reference_prot, genes, proteins, reference.obs[batch_key])
    return _model_input(reference[rows], reference_prot[rows] if proteins else None, genes, proteins,
                        reference.obs[batch_key].to_numpy()[rows])


def _classifier_features(rna: ad.AnnData, prot: ad.AnnData | None, latent: np.ndarray, genes: list[str],
                         proteins: list[str], shared: list[str], *, expr=None) -> dict:
    """:func:`classify`'s features of one side: its latent, CLR of the shared antibodies, log-normalised
    ``genes`` (size factors over ``shared``, the genes both sides measure, so that a larger panel
    does not change them). ``expr``: the side's cells x ``shared`` already log-normalised (the
    reference's, built for :func:`candidate_genes`), so that it is not normalised twice."""
    from .protein import clr_per_cell
    from .rna import log_normalised

    columns = pd.Index(shared).isin(genes)
    if list(pd.Index(shared)[columns]) != list(genes):
        raise ValueError("genes must be a subset of shared, in shared's order")
    protein = (clr_per_cell(counts_matrix(prot[:, proteins])) if prot is not None and proteins
               else np.zeros((rna.n_obs, 0), np.float32))
    expr = (log_normalised(counts_matrix(rna[:, shared]), columns=columns) if expr is None
            else sp.csr_matrix(expr)[:, np.flatnonzero(columns)])
    return {"latent": np.asarray(latent, np.float32), "protein": protein, "expr": expr}


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


def label_genes(expr, labels: np.ndarray, genes: list[str], *, n_genes: int = 20) -> list[str]:
    """The ``n_genes`` genes ranked highest for each label against the others (scanpy's t-test on
    log-normalised ``expr``, cells x ``genes``, dense or sparse), their union in ``genes``' order.
    Labels of one cell are left out of the ranking; [] when fewer than two labels remain."""
    import scanpy as sc

    labels = np.asarray(labels, dtype=str)
    names, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, names[counts >= 2])  # a t-test needs two cells of a label (the label is still classified)
    if not keep.all():
        expr, labels = expr[np.flatnonzero(keep)], labels[keep]
    if len(set(labels)) < 2 or n_genes <= 0:
        return []
    a = ad.AnnData(expr, obs=pd.DataFrame({"label": pd.Categorical(labels)}), var=pd.DataFrame(index=genes))
    sc.tl.rank_genes_groups(a, "label", method="t-test", n_genes=min(n_genes, len(genes)))
    top = set(pd.DataFrame(a.uns["rank_genes_groups"]["names"]).to_numpy().ravel())
    return [g for g in genes if g in top]


#: cells a lineage's antibody backgrounds are fitted to, at most (:func:`classify`)
BACKGROUND_CELLS = 20_000


def _at_most(n: int, seed: int) -> np.ndarray:
    """Positions of at most ``BACKGROUND_CELLS`` of ``n`` items: all, or a sorted sample drawn with ``seed``."""
    if n <= BACKGROUND_CELLS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, BACKGROUND_CELLS, replace=False))


def candidate_genes(expr, labels: np.ndarray, lineages: np.ndarray, genes: list[str], *, n_genes: int = 20) -> list[str]:
    """Every gene :func:`classify` may pick: the union of the :func:`label_genes` of the lineages and,
    within each lineage of more than one label, of its labels (``expr``: the reference cells x
    ``genes``, log-normalised), in ``genes``' order. A t-test ranks each gene on its own, so
    :func:`classify` given only these columns picks the same genes as given all of ``genes``; the
    query's matrix is then built for a few hundred genes instead of every gene both sides measure."""
    labels, lineages = np.asarray(labels, dtype=str), np.asarray(lineages, dtype=str)
    pick = set(label_genes(expr, lineages, genes, n_genes=n_genes))
    for lin in np.unique(lineages):
        rows = np.flatnonzero(lineages == lin)
        if len(set(labels[rows])) > 1:
            pick |= set(label_genes(expr[rows], labels[rows], genes, n_genes=n_genes))
    return [g for g in genes if g in pick]


def classify(reference: dict, labels: np.ndarray, lineages: np.ndarray, query: dict, *, genes: list[str],
             novelty: np.ndarray, n_genes: int = 20, c: float = 0.1, min_probability: float = 0.5,
             unmapped_label: str = "unmapped", seed: int = 0, centre_min_cells: int = 20,
             weights: np.ndarray | None = None) -> pd.DataFrame:
    """Lineage, then state, by logistic regressions trained on the reference cells (module docstring).

    Parameters
    ----------
    reference, query
        Per side: ``latent`` (cells x latent), ``protein`` (cells x shared antibodies, CLR per cell;
        may have 0 columns), ``expr`` (cells x ``genes``, log-normalised, sparse).
    labels, lineages
        The reference cells' labels and the lineage of each.
    genes
        Columns of ``expr``; the classifiers use the :func:`label_genes` of each level.
    novelty
        Per query cell (:func:`vote`'s): > 1 is unlike any reference cell, ``unmapped_label``.
    n_genes, c
        Genes per label; inverse L2 penalty of scikit-learn's ``LogisticRegression`` (features
        standardised on the reference cells).
    centre_min_cells
        The state classifiers read each antibody minus its background within the lineage (module
        docstring), the query's from the query cells whose most probable lineage it is; with fewer
        of them than this, the reference's background is used for the query too. Each background
        is fitted to at most ``BACKGROUND_CELLS`` cells of its side (sampled with ``seed``).
    min_probability
        A lineage probability under this -> ``unmapped_label`` (lineage and label).
    seed
        ``random_state`` of the classifiers (lbfgs is deterministic).
    weights
        Per reference cell, its weight in the regressions (scaled to mean 1 within each fit, so that
        the penalty means the same); :func:`map_query` gives a training subsample's cells the inverse
        of their label's sampling fraction (:func:`subsample_weights`), so that the classifiers learn
        the reference's proportions, not the subsample's flattened ones. ``None``: equal weights.

    Returns
    -------
    The columns of :func:`vote`; ``p_<label>`` = P(lineage) x P(label | lineage), summing to 1.
    ``label_nearest`` is the most probable state of the most probable lineage.
    """
    from sklearn.linear_model import LogisticRegression

    from .protein import background_means

    labels, lineages = np.asarray(labels, dtype=str), np.asarray(lineages, dtype=str)
    nq = len(query["latent"])

    def fit(rows, y, qrows, centre=None):
        if len(set(y)) == 1:
            return np.array([y[0]]), np.ones((len(qrows), 1))
        gi = pd.Index(genes).get_indexer(label_genes(reference["expr"][rows], y, genes, n_genes=n_genes))
        pr, pq = reference["protein"][rows], query["protein"][qrows]
        if centre is not None and pr.shape[1]:  # each antibody relative to its background on each side
            br = background_means(pr[_at_most(len(rows), seed)].T, seed=seed)
            bq = (background_means(query["protein"][centre[_at_most(len(centre), seed)]].T, seed=seed)
                  if len(centre) >= centre_min_cells else br)
            pr, pq = pr - br, pq - bq
        xr, xq = ([side["latent"][r], prot, side["expr"][r][:, gi].toarray()]
                  for side, r, prot in ((reference, rows, pr), (query, qrows, pq)))
        xr, xq = np.hstack(xr), np.hstack(xq)
        mu, sd = xr.mean(0), xr.std(0)
        sd = np.where(sd > 1e-9, sd, 1.0)
        w = None if weights is None else weights[rows] / weights[rows].mean()
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit((xr - mu) / sd, y, sample_weight=w)
        return clf.classes_, clf.predict_proba((xq - mu) / sd)

    names = np.array(sorted(set(labels)))
    lin_names, lin_prob = fit(np.arange(len(labels)), lineages, np.arange(nq))
    pick = lin_prob.argmax(1)
    probs = np.zeros((nq, len(names)))
    in_pick = np.zeros((nq, len(names)), bool)  # the states of the cell's most probable lineage
    for j, lin in enumerate(lin_names):
        rows = np.flatnonzero(lineages == lin)
        classes, p = fit(rows, labels[rows], np.arange(nq), centre=np.flatnonzero(pick == j))
        cols = np.searchsorted(names, classes)
        probs[:, cols] = p * lin_prob[:, [j]]
        in_pick[:, cols] = (pick == j)[:, None]
    lineage_pick = lin_names[pick]
    novel = np.asarray(novelty) > 1
    lin_best = lin_prob.max(1)
    assigned = (lin_best >= min_probability) & ~novel
    nearest = names[np.where(in_pick, probs, -1.0).argmax(1)]
    lineage = np.where(assigned, lineage_pick, unmapped_label)
    best = probs[np.arange(nq), np.searchsorted(names, nearest)]
    out = pd.DataFrame({"label": np.where(assigned, nearest, unmapped_label), "label_probability": best,
                        "label_uncertainty": 1 - best, "label_lineage": lineage,
                        "lineage_probability": lin_best, "novelty": novelty, "label_nearest": nearest})
    return out.join(pd.DataFrame(probs, columns=[f"p_{s}" for s in names]))


def _random_states() -> dict:
    import random

    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_random_states(states: dict) -> None:
    import random

    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])


def train_reference(reference: ad.AnnData, genes, *, reference_prot: ad.AnnData | None = None,
                    antibodies=None, label_key: str = "cell_state", batch_key: str = "batch",
                    n_latent: int = 10, n_genes: int = 2000, min_shared_genes: int = 50,
                    min_shared_proteins: int = 5, max_cells_per_state: int = 500, reference_epochs: int = 200,
                    batch_size: int = 256, seed: int = 0, what: str = "query",
                    setting: str = "min_shared_genes") -> ReferenceModel:
    """Train the reference model of :func:`map_query` for a query that measures ``genes`` and
    ``antibodies`` (names, in any order; ``None``: no antibodies): totalVI on the genes and antibodies
    both measure (at least ``min_shared_proteins`` antibodies), scVI on the genes otherwise, on a
    subsample of the reference (:func:`reference_subsample`). Only the query's feature names are
    needed, so the model can be trained once and mapped with (:func:`save_reference_model`) while the
    mapping's own settings change. Other parameters as :func:`map_query`'s."""
    import scvi

    genes = shared_genes(reference, genes, n_genes=n_genes, min_shared_genes=min_shared_genes, what=what,
                         setting=setting)
    proteins = []
    if reference_prot is not None and antibodies is not None:
        qp = set(map(str, antibodies))
        proteins = [p for p in reference_prot.var_names if p in qp]
    use_totalvi = len(proteins) >= min_shared_proteins
    if not use_totalvi:
        log.warning("%s: %d antibodies shared with the reference (< %d): mapping on RNA only (scVI)", what,
                    len(proteins), min_shared_proteins)
        proteins = []
    scvi.settings.seed = seed
    labels = reference.obs[label_key].astype(str)
    train = reference_subsample(labels, max_cells_per_state=max_cells_per_state, seed=seed)
    ref_train = _reference_input(reference, reference_prot, genes, proteins, batch_key, train)
    name = "totalVI" if use_totalvi else "scVI"
    log.info("%s: %s reference on %d of %d reference cells (%d labels), %d shared genes, %d shared antibodies",
             what, name, len(train), reference.n_obs, labels.nunique(), len(genes), len(proteins))
    cls = scvi.model.TOTALVI if use_totalvi else scvi.model.SCVI
    setup = {"protein_expression_obsm_key": "protein"} if use_totalvi else {}
    with torch_deterministic():
        cls.setup_anndata(ref_train, batch_key="batch", **setup)
        model = cls(ref_train, n_latent=n_latent)
        model.train(max_epochs=reference_epochs, callbacks=[epoch_progress(reference_epochs, model=name, logger=log)],
                    accelerator="cpu", devices=1, enable_progress_bar=False, batch_size=batch_size)
    facts = {"model": name, "epochs": reference_epochs, "seed": seed, "n_latent": n_latent,
             "reference_cells": int(reference.n_obs)}
    return ReferenceModel(model, genes, proteins, train, list(map(str, reference.obs_names[train])), _random_states(),
                          facts)


def _check_panel(model: ReferenceModel, query: ad.AnnData, query_prot: ad.AnnData | None, what: str) -> None:
    """A model trained for another panel cannot map this query: the error names what is missing."""
    genes = set(query.var_names)
    lost = [g for g in model.genes if g not in genes]
    prots = set(query_prot.var_names) if query_prot is not None else set()
    lost_prot = [p for p in model.proteins if p not in prots]
    if lost or lost_prot:
        raise InputError(f"{what}: the reference model was trained on features this cohort lacks "
                         f"({len(lost)} genes, e.g. {lost[:5]}; antibodies {lost_prot[:10]}): train it again")


def save_reference_model(model: ReferenceModel, path) -> None:
    """Write ``model`` to the folder ``path``: scvi-tools' ``model.pt`` and ``reference.json`` (genes,
    antibodies, training cells, random states, facts)."""
    import json
    from pathlib import Path

    import torch

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.model.save(str(path / "model"), overwrite=True)
    rng = model.rng
    torch.save({"torch": rng["torch"], "numpy": rng["numpy"]}, path / "random_states.pt")
    (path / "reference.json").write_text(json.dumps({
        "genes": model.genes, "proteins": model.proteins, "train": model.train.tolist(),
        "train_names": model.train_names, "python_random": [rng["python"][0], list(rng["python"][1]),
                                                            rng["python"][2]], "facts": model.facts}))


def load_reference_model(path, reference: ad.AnnData, reference_prot: ad.AnnData | None = None, *,
                         batch_key: str = "batch") -> ReferenceModel:
    """Read :func:`save_reference_model`'s folder for ``reference`` (the same cells it was trained on;
    otherwise an error naming the folder)."""
    import json
    from pathlib import Path

    import scvi
    import torch

    path = Path(path)
    meta = json.loads((path / "reference.json").read_text())
    train = np.asarray(meta["train"], dtype=int)
    if train.max(initial=-1) >= reference.n_obs or list(map(str, reference.obs_names[train])) != meta["train_names"]:
        raise InputError(f"{path}: this reference model was trained on other reference cells than "
                         f"{reference.n_obs} given: train it again")
    ref_train = _reference_input(reference, reference_prot, meta["genes"], meta["proteins"], batch_key, train)
    cls = scvi.model.TOTALVI if meta["facts"]["model"] == "totalVI" else scvi.model.SCVI
    model = cls.load(str(path / "model"), adata=ref_train, accelerator="cpu")
    states = torch.load(path / "random_states.pt", weights_only=False)
    py = meta["python_random"]
    rng = {"python": (py[0], tuple(py[1]), py[2]), "numpy": states["numpy"], "torch": states["torch"]}
    return ReferenceModel(model, meta["genes"], meta["proteins"], train, meta["train_names"], rng, meta["facts"])


def map_query(reference: ad.AnnData, query: ad.AnnData, *, reference_prot: ad.AnnData | None = None,
              query_prot: ad.AnnData | None = None, label_key: str = "cell_state", lineage_key: str = "lineage",
              batch_key: str = "batch", query_batch_key: str = "sample", n_latent: int = 10, n_genes: int = 2000,
              min_shared_genes: int = 50, min_shared_proteins: int = 5, max_cells_per_state: int = 500,
              reference_epochs: int = 200, query_epochs: int = 100, batch_size: int = 256, n_neighbors: int = 15,
              min_probability: float = 0.5, novelty_quantile: float = 0.99, seed: int = 0,
              unmapped_label: str = "unmapped", what: str = "query",
              setting: str = "min_shared_genes", reference_latent: bool = True, classifier: str = "knn",
              classifier_genes: int = 20, classifier_c: float = 0.1,
              classifier_cells_per_state: int | None = None,
              model: ReferenceModel | None = None) -> MappingResult:
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
        shared space); ``False``: only that of the cells the vote and the classifier train on.
    classifier, classifier_genes, classifier_c
        ``"knn"``: the labels are :func:`vote`'s; ``"logistic"``: :func:`classify`'s (on the cells of
        ``classifier_cells_per_state``; novelty from the kNN distances all the same), with
        ``classifier_genes`` genes per label and inverse penalty ``classifier_c``; the vote's calls
        are kept as ``label_knn`` and ``label_lineage_knn`` for comparison.
    classifier_cells_per_state
        The logistic classifier's reference cells: at most this many per label
        (:func:`reference_subsample`, weighted back to the reference's proportions); ``None``: the
        model's training subsample (``max_cells_per_state``). The model is trained on its subsample
        either way; more cells only cost their latent and the regressions' time.
    model
        A reference model already trained on ``reference`` (:func:`train_reference`, or
        :func:`load_reference_model` from a previous run); ``None`` trains one here (then the
        training settings above apply). The calls are the same either way.

    Returns
    -------
    :class:`MappingResult`; ``query`` as :func:`vote`'s, indexed by the query's ``obs_names``.
    """
    import scvi

    if classifier not in ("knn", "logistic"):
        raise InputError(f"{what}: classifier must be 'knn' or 'logistic', not {classifier!r}")
    if query.n_obs == 0:
        raise InputError(f"{what}: no cells to map")
    if model is None:
        model = train_reference(reference, query.var_names, reference_prot=reference_prot,
                                antibodies=None if query_prot is None else query_prot.var_names,
                                label_key=label_key, batch_key=batch_key, n_latent=n_latent, n_genes=n_genes,
                                min_shared_genes=min_shared_genes, min_shared_proteins=min_shared_proteins,
                                max_cells_per_state=max_cells_per_state, reference_epochs=reference_epochs,
                                batch_size=batch_size, seed=seed, what=what, setting=setting)
    genes, proteins, train, name = model.genes, model.proteins, model.train, model.facts["model"]
    _check_panel(model, query, query_prot, what)
    labels = reference.obs[label_key].astype(str)
    fit_rows = train
    if classifier == "logistic" and classifier_cells_per_state is not None:
        fit_rows = reference_subsample(labels, max_cells_per_state=classifier_cells_per_state, seed=seed)
    # the reference cells whose latent is wanted: all of them, or only those the vote and the classifier use
    need = None if reference_latent else np.union1d(train, fit_rows)
    ref = _reference_input(reference, reference_prot, genes, proteins, batch_key, need)
    q = _model_input(query, query_prot, genes, proteins, "query:" + query.obs[query_batch_key].astype(str))
    cls = type(model.model)
    kw = dict(accelerator="cpu", devices=1, enable_progress_bar=False, batch_size=batch_size)
    # scvi-tools' seed (its data splits; it also reseeds every generator), then the random states the training
    # left: the query training starts where it did when training and mapping ran in one go, before rule
    # reference_model existed, so a loaded model's calls and a fresh one's are those of that code
    scvi.settings.seed = model.facts["seed"]
    _set_random_states(model.rng)
    with torch_deterministic():
        qm = cls.load_query_data(q, model.model)
        qm.train(max_epochs=query_epochs, plan_kwargs={"weight_decay": 0.0},
                 callbacks=[epoch_progress(query_epochs, model=f"{name} query", logger=log)], **kw)
        latent_q = qm.get_latent_representation(q)
        latent_need = qm.get_latent_representation(ref)
    latent_r = latent_need if reference_latent else None

    def at(rows):  # the latent of the reference cells at positions rows
        return latent_need[rows] if need is None else latent_need[np.searchsorted(need, rows)]

    latent_train = at(train)
    out = vote(latent_train, labels.to_numpy()[train], reference.obs[lineage_key].astype(str).to_numpy()[train],
               latent_q, n_neighbors=n_neighbors, min_probability=min_probability,
               novelty_quantile=novelty_quantile, unmapped_label=unmapped_label)
    if classifier == "logistic":
        log.info("%s: logistic-regression labels on the latent, %d antibodies and the reference's label genes",
                 what, len(proteins))
        from .rna import log_normalised

        shared = genes_in_both(reference, query.var_names)  # label genes from all of them, not only the model's
        ref_train = reference[fit_rows]
        y, lin = labels.to_numpy()[fit_rows], reference.obs[lineage_key].astype(str).to_numpy()[fit_rows]
        ref_expr = log_normalised(counts_matrix(ref_train[:, shared]))
        cand = candidate_genes(ref_expr, y, lin, shared, n_genes=classifier_genes)
        out = classify(_classifier_features(ref_train, reference_prot[fit_rows] if proteins else None,
                                            at(fit_rows), cand, proteins, shared, expr=ref_expr), y, lin,
                       _classifier_features(query, query_prot if proteins else None, latent_q, cand, proteins,
                                            shared),
                       genes=cand, novelty=out["novelty"].to_numpy(), n_genes=classifier_genes, c=classifier_c,
                       min_probability=min_probability, unmapped_label=unmapped_label, seed=seed,
                       weights=subsample_weights(labels, fit_rows)).assign(label_knn=out["label"],
                                                                         label_lineage_knn=out["label_lineage"])
    out.index = query.obs_names
    unmapped = out["label"] == unmapped_label
    novel = out["novelty"] > 1
    facts = {"model": name, "genes": len(genes), "proteins": len(proteins), "reference_cells": int(len(train)),
             "classifier_cells": int(len(fit_rows)) if classifier == "logistic" else 0,
             "query_cells": int(query.n_obs), "unmapped": int(unmapped.sum()), "novel": int(novel.sum()),
             "min_probability": min_probability, "novelty_quantile": novelty_quantile,
             "epochs": {"reference": model.facts["epochs"], "query": query_epochs}, "classifier": classifier}
    log.info("%s: mapped %d cells: %d %s (%d unlike any reference cell, the rest with a best vote < %.2f)", what,
             query.n_obs, facts["unmapped"], unmapped_label, facts["novel"], min_probability)
    return MappingResult(out, latent_q, latent_r, genes, proteins, facts)


__all__ = ["MappingResult", "ReferenceModel", "candidate_genes", "classify", "counts_matrix", "label_genes",
           "load_reference_model", "map_query", "reference_subsample", "save_reference_model", "shared_genes",
           "subsample_weights", "train_reference", "vote"]
