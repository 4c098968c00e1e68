"""Cell states from a labelled reference (``annotation.method: reference``), the study's Azimuth step.

The user supplies the reference -- an exported Azimuth / Hao 2021 PBMC reference, a previous sscsig
run's ``cohort/annotated.h5mu``, any atlas with a label column -- as ``.h5ad`` (RNA counts) or
``.h5mu`` (``rna`` and, optionally, ``prot`` counts); nothing is downloaded. A harmonisation table
(``annotation.reference.labels``, TSV with columns ``reference_label``, ``cell_state``, ``lineage``)
turns the reference's labels into the pipeline's states and lineages; a label listed with an empty
``cell_state`` is left out of the reference, and a reference label the table does not list stops the
run (naming it), so that no label is renamed or dropped silently.

The mapping itself is :func:`sscsig.mapping.map_query`: totalVI (RNA + shared antibodies) or scVI
reference model, the cohort added by scArches surgery with its own batches, then a lineage and a
state classifier trained on the reference cells (or kNN votes, ``classifier: knn``). Cells whose
lineage probability (best vote) is under ``min_probability`` or that are further from the reference
than its own cells' ``novelty_quantile`` are ``Unassigned`` -- a type the reference does not have
(progenitors, erythroid cells in a PBMC reference without them) is not forced into one.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd

from ..design import UNASSIGNED
from ..errors import InputError
from ..io import read_h5mu_modalities, read_obs
from ..mapping import ReferenceModel, counts_matrix, load_reference_model, map_query, train_reference
from ..protein import complete_panel, match_antibodies
from ..training import torch_threads

log = logging.getLogger(__name__)

_LABEL_COLUMNS = ("reference_label", "cell_state", "lineage")


def read_label_table(path: str | Path) -> pd.DataFrame:
    """The harmonisation table: ``reference_label`` -> ``cell_state``, ``lineage`` (TSV)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"annotation.reference.labels: file not found: {path}")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in _LABEL_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: columns {missing} missing (need {list(_LABEL_COLUMNS)})")
    dup = table["reference_label"][table["reference_label"].duplicated()].tolist()
    if dup:
        raise InputError(f"{path}: reference_label listed twice: {sorted(set(dup))}")
    no_lineage = table.loc[(table["cell_state"] != "") & (table["lineage"] == ""), "reference_label"].tolist()
    if no_lineage:
        raise InputError(f"{path}: reference labels {no_lineage} have a cell_state but no lineage")
    return table.set_index("reference_label")


def load_reference(path: str | Path, *, label_key: str = "cell_state", lineage_key: str | None = "lineage",
                   batch_key: str | None = "batch",
                   labels: str | Path | None = None) -> tuple[ad.AnnData, ad.AnnData | None, pd.DataFrame]:
    """Read a labelled reference and harmonise its labels.

    Parameters
    ----------
    path
        ``.h5ad`` (RNA counts in ``layers['counts']`` or ``X``) or ``.h5mu`` (modality ``rna`` and
        optionally ``prot``; labels in the MuData's or the ``rna`` modality's ``obs``).
    label_key
        The label column.
    lineage_key
        The lineage column, used when no ``labels`` table is given (``None``: each label is its own
        lineage).
    batch_key
        The reference's batch column (``None`` or absent: one batch).
    labels
        The harmonisation table (:func:`read_label_table`); ``None`` keeps the reference's labels.

    Returns
    -------
    (RNA counts with ``obs`` ``cell_state``, ``lineage``, ``batch``; protein counts or ``None``; a
    table of the reference's labels: cells, the state and lineage each became, whether used).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"annotation.reference.path: file not found: {path}")
    if path.suffix == ".h5mu":  # modality by modality: mudata cannot read some files whole (obs index names)
        mods = read_h5mu_modalities(path).mod
        if "rna" not in mods:
            raise InputError(f"{path}: no 'rna' modality (has {list(mods)})")
        rna, prot = mods["rna"], mods.get("prot")
        glob = read_obs(path)
        glob.index = glob.index.astype(str)
        obs = rna.obs.join(glob.reindex(rna.obs_names)[[c for c in glob.columns if c not in rna.obs.columns]])
    elif path.suffix == ".h5ad":
        rna, prot = ad.read_h5ad(path), None
        obs = rna.obs
    else:
        raise InputError(f"annotation.reference.path {path}: expected a .h5ad or .h5mu file")
    if label_key not in obs.columns:
        raise InputError(f"{path}: no label column {label_key!r} (annotation.reference.label_key); obs has "
                         f"{list(obs.columns)[:20]}")
    raw = obs[label_key].astype("string")
    keep = raw.notna() & ~raw.isin(["", UNASSIGNED, "nan"])
    raw = raw.fillna("").astype(str)
    if labels is not None:
        table = read_label_table(labels)
        unknown = sorted(set(raw[keep]) - set(table.index))
        if unknown:
            raise InputError(f"{labels}: reference labels not listed in reference_label: {unknown}")
        state = raw.map(table["cell_state"]).fillna("")
        lineage = raw.map(table["lineage"]).fillna("")
        keep &= state != ""
    else:
        state = raw
        if lineage_key and lineage_key in obs.columns:
            lineage = obs[lineage_key].astype(str)
        else:
            if lineage_key:
                log.warning("%s: no lineage column %r; each reference label is its own lineage", path, lineage_key)
            lineage = raw
    batch = obs[batch_key].astype(str) if batch_key and batch_key in obs.columns else pd.Series("reference",
                                                                                                   index=obs.index)
    summary = (pd.DataFrame({"reference_label": raw, "cell_state": state, "lineage": lineage, "used": keep})
               .groupby(["reference_label", "cell_state", "lineage", "used"]).size().rename("cells").reset_index())
    mask = keep.to_numpy()
    if mask.sum() == 0:
        raise InputError(f"{path}: no reference cell has a usable label in {label_key!r}")
    ref = ad.AnnData(counts_matrix(rna[mask]), var=pd.DataFrame(index=rna.var_names),
                     obs=pd.DataFrame({"cell_state": state[mask].to_numpy(), "lineage": lineage[mask].to_numpy(),
                                       "batch": batch[mask].to_numpy()}, index=rna.obs_names[mask]))
    ref_prot = None
    if prot is not None:
        prot = prot[:, complete_panel(prot)]  # a previous run's antibodies that some samples lacked are 0s there
        ref_prot = ad.AnnData(counts_matrix(prot[mask]), var=pd.DataFrame(index=prot.var_names),
                              obs=pd.DataFrame(index=prot.obs_names[mask]))
    log.info("reference %s: %d of %d cells, %d states in %d lineages, %d genes, %s", path, int(mask.sum()),
             len(mask), ref.obs["cell_state"].nunique(), ref.obs["lineage"].nunique(), ref.n_vars,
             f"{ref_prot.n_vars} antibodies" if ref_prot is not None else "no protein")
    return ref, ref_prot, summary


def _antibodies_named_as(reference_prot: ad.AnnData, panel) -> ad.AnnData:
    """The reference's antibodies renamed to the cohort's names (:func:`sscsig.protein.match_antibodies`);
    the ones the cohort lacks keep their names (and so stay out of the mapping)."""
    match = match_antibodies(reference_prot.var_names, panel)
    renamed = {k: v for k, v in match.items() if k != v}
    taken = set(map(str, panel))
    keep = [n for n in map(str, reference_prot.var_names) if n in match or n not in taken]
    out = reference_prot[:, keep].copy()
    out.var_names = [match.get(n, n) for n in keep]
    missing = [n for n in keep if n not in match]
    log.info("reference antibodies: %d of %d matched to the cohort's panel%s%s", len(match), len(keep),
             f" ({len(renamed)} by name, e.g. {', '.join(f'{k} -> {v}' for k, v in list(renamed.items())[:4])})"
             if renamed else "", f"; not in the cohort: {', '.join(missing[:10])}" if missing else "")
    return out


#: config annotation.reference keys of the reference model (rule reference_model); the others are the mapping's
MODEL_SETTINGS = ("n_latent", "n_genes", "min_shared_genes", "min_shared_proteins", "max_cells_per_state",
                  "reference_epochs", "batch_size")


def train_reference_model(genes, panel, reference: ad.AnnData, reference_prot: ad.AnnData | None = None, *,
                          n_latent: int = 10, n_genes: int = 2000, min_shared_genes: int = 200,
                          min_shared_proteins: int = 5, max_cells_per_state: int = 500, reference_epochs: int = 200,
                          batch_size: int = 256, seed: int = 0, threads: int | None = None) -> ReferenceModel:
    """The reference model for a cohort that measures ``genes`` and the antibodies ``panel`` (those
    measured in every sample, :func:`sscsig.protein.complete_panel`), trained once
    (:func:`sscsig.mapping.train_reference`) and given to :func:`annotate_by_reference` as ``model``:
    changing the mapping's settings or the marker file then does not train it again. Parameters as
    :func:`annotate_by_reference`'s; only the cohort's feature names are needed, not its cells."""
    torch_threads(threads)
    antibodies = list(map(str, panel)) if len(panel) else None
    if reference_prot is not None and antibodies is not None:
        reference_prot = _antibodies_named_as(reference_prot, antibodies)
    return train_reference(reference, genes, reference_prot=reference_prot, antibodies=antibodies, n_latent=n_latent,
                           n_genes=n_genes, min_shared_genes=min_shared_genes, min_shared_proteins=min_shared_proteins,
                           max_cells_per_state=max_cells_per_state, reference_epochs=reference_epochs,
                           batch_size=batch_size, seed=seed, what="cohort",
                           setting="annotation.reference.min_shared_genes")


def annotate_by_reference(mdata: md.MuData, reference: ad.AnnData, reference_prot: ad.AnnData | None = None, *,
                          query_batch_key: str = "batch", n_latent: int = 10, n_genes: int = 2000,
                          min_shared_genes: int = 200, min_shared_proteins: int = 5, max_cells_per_state: int = 500,
                          reference_epochs: int = 200, query_epochs: int = 100, batch_size: int = 256,
                          n_neighbors: int = 15, min_probability: float = 0.5, novelty_quantile: float = 0.99,
                          classifier: str = "logistic", classifier_genes: int = 20, classifier_c: float = 0.1,
                          classifier_cells_per_state: int | None = 2000, seed: int = 0, threads: int | None = None,
                          model: ReferenceModel | str | Path | None = None) -> dict:
    """Add ``obs['lineage']``, ``obs['cell_state']`` and their confidences to ``mdata`` in place,
    from a labelled reference (:func:`load_reference`).

    Parameters
    ----------
    mdata
        The cohort: ``rna`` and ``prot`` counts (``layers['counts']`` or ``X``),
        ``obs[query_batch_key]``.
    reference, reference_prot
        :func:`load_reference`'s RNA and protein.
    query_batch_key
        The cohort's batch column (config ``integration.batch_key``); each batch is a batch of the
        model.
    n_latent, n_genes, min_shared_genes, min_shared_proteins, max_cells_per_state, reference_epochs, \
query_epochs, batch_size, n_neighbors, min_probability, novelty_quantile, classifier, classifier_genes, classifier_c, \
classifier_cells_per_state
        Config ``annotation.reference`` (see :func:`sscsig.mapping.map_query`; ``classifier``
        ``"logistic"``: lineage and state regressions on top of the mapping, ``"knn"``: the votes).
    seed
        Seed of the training and the reference subsample.
    threads
        torch's CPU threads (the rule's ``threads``: one count, the same results wherever the job
        runs); ``None`` leaves torch's setting.
    model
        The reference model (:func:`train_reference_model`) or the folder it was saved to
        (:func:`sscsig.mapping.save_reference_model`); ``None`` trains it here with the settings
        above. The calls are the same either way.

    Returns
    -------
    A report: the mapping's facts, cells per label, cells unassigned. ``obs`` gets ``lineage``,
    ``lineage_confidence`` (the lineage's probability or vote share), ``cell_state``,
    ``cell_state_confidence`` (the label's probability or best vote), ``mapping_novelty``,
    ``lineage_knn``, ``cell_state_knn`` (with the logistic classifier: the kNN vote's calls, for comparison);
    ``obsm['X_reference_mapped']`` is the shared latent space.
    """
    torch_threads(threads)
    rna = mdata["rna"]
    prot = mdata["prot"][:, complete_panel(mdata["prot"])] if "prot" in mdata.mod else None
    batch = mdata.obs[query_batch_key] if query_batch_key in mdata.obs else pd.Series("cohort", index=mdata.obs_names)
    query = ad.AnnData(counts_matrix(rna), var=pd.DataFrame(index=rna.var_names),
                       obs=pd.DataFrame({"batch": batch.astype(str).to_numpy()}, index=rna.obs_names))
    if reference_prot is not None and prot is not None:
        reference_prot = _antibodies_named_as(reference_prot, prot.var_names)
    if isinstance(model, (str, Path)):
        model = load_reference_model(model, reference, reference_prot)
    res = map_query(reference, query, reference_prot=reference_prot, query_prot=prot, query_batch_key="batch",
                    n_latent=n_latent, n_genes=n_genes, min_shared_genes=min_shared_genes,
                    min_shared_proteins=min_shared_proteins, max_cells_per_state=max_cells_per_state,
                    reference_epochs=reference_epochs, query_epochs=query_epochs, batch_size=batch_size,
                    n_neighbors=n_neighbors, min_probability=min_probability, novelty_quantile=novelty_quantile,
                    seed=seed, unmapped_label=UNASSIGNED, what="cohort",
                    setting="annotation.reference.min_shared_genes", reference_latent=False, classifier=classifier,
                    classifier_genes=classifier_genes, classifier_c=classifier_c,
                    classifier_cells_per_state=classifier_cells_per_state, model=model)
    q = res.query.loc[mdata.obs_names]
    state = q["label"].to_numpy(dtype=object)
    lineage = q["label_lineage"].to_numpy(dtype=object)
    state[lineage == UNASSIGNED] = UNASSIGNED
    mdata.obs["lineage"] = pd.Categorical(lineage)
    mdata.obs["lineage_confidence"] = q["lineage_probability"].to_numpy(np.float32)
    mdata.obs["cell_state"] = pd.Categorical(state)
    mdata.obs["cell_state_confidence"] = q["label_probability"].to_numpy(np.float32)
    mdata.obs["mapping_novelty"] = q["novelty"].to_numpy(np.float32)
    if "label_knn" in q:  # the kNN vote's calls, for comparison
        mdata.obs["lineage_knn"] = pd.Categorical(q["label_lineage_knn"].to_numpy(dtype=object))
        knn = q["label_knn"].to_numpy(dtype=object)
        mdata.obs["cell_state_knn"] = pd.Categorical(np.where(q["label_lineage_knn"] == UNASSIGNED, UNASSIGNED, knn))
    mdata.obsm["X_reference_mapped"] = res.latent_query.astype(np.float32)
    counts = mdata.obs["cell_state"].value_counts()
    log.info("reference annotation: %d of %d cells Unassigned; states %s", int(counts.get(UNASSIGNED, 0)),
             mdata.n_obs, counts.to_dict())
    return {
        "method": "reference",
        "mapping": json.loads(json.dumps(res.facts, default=str)),
        "lineage_counts": mdata.obs["lineage"].value_counts().to_dict(),
        "cell_state_counts": counts.to_dict(),
    }
