"""From blood monocytes into tissue macrophages: diffusion pseudotime and PAGA (scanpy) on the shared
latent space of blood and tissue cells, and the genes that change along it.

Why diffusion pseudotime + PAGA and not a principal tree (scFates) or CellRank: the question is one
path with a known start (blood CD14 monocytes) and a known end (tissue macrophages) and one branch
question (does the path leave blood through CD14.EGR1 rather than CD14.Mono?). DPT orders cells from
a root on the kNN graph without fitting a tree, and PAGA's connectivity between groups answers the
branch question directly; both are maintained in scanpy, deterministic given the graph, and need no
velocity or extra dependency. The per-gene test is the tradeSeq/Monocle 3 idea in its simplest
form: a natural cubic spline of pseudotime against an intercept-only model (F-test on log-normalised
expression), Benjamini-Hochberg across genes.
"""

from __future__ import annotations

import logging

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..design import bh_fdr

log = logging.getLogger(__name__)


def diffusion_pseudotime(latent: np.ndarray, groups: pd.Series, *, root_group: str, end_groups: list[str],
                         n_neighbors: int = 15, seed: int = 0) -> tuple[pd.Series, pd.DataFrame]:
    """Diffusion pseudotime from ``root_group`` and PAGA connectivities between ``groups``.

    Parameters
    ----------
    latent
        Cells x latent dimensions (blood and tissue cells in one space).
    groups
        Group of each cell (e.g. ``blood:CD14.Mono``, ``kidney:Macrophage``), index = cell names.
    root_group
        Where pseudotime starts: the root is the cell of this group at the far end of the first
        diffusion component from ``end_groups``.
    n_neighbors, seed
        Of the kNN graph (config ``tissue.trajectory``).

    Returns
    -------
    (pseudotime per cell in [0, 1], PAGA connectivities as a group x group table)
    """
    import scanpy as sc

    if root_group not in set(groups):
        raise ValueError(f"root group {root_group!r} has no cells")
    a = ad.AnnData(np.zeros((len(groups), 1), dtype=np.float32), obs=pd.DataFrame(
        {"group": pd.Categorical(groups.astype(str))}, index=groups.index))
    a.obsm["X_latent"] = np.asarray(latent, dtype=np.float32)
    sc.pp.neighbors(a, use_rep="X_latent", n_neighbors=min(n_neighbors, len(groups) - 1), random_state=seed)
    sc.tl.diffmap(a, random_state=seed)
    dc1 = a.obsm["X_diffmap"][:, 1]
    root = np.flatnonzero((a.obs["group"] == root_group).to_numpy())
    end = (a.obs["group"].isin(end_groups)).to_numpy()
    toward_end = dc1[end].mean() > dc1[root].mean() if end.any() else True
    a.uns["iroot"] = int(root[np.argmin(dc1[root]) if toward_end else np.argmax(dc1[root])])
    sc.tl.dpt(a)
    pt = pd.Series(a.obs["dpt_pseudotime"].to_numpy(float), index=groups.index, name="pseudotime")
    finite = np.isfinite(pt)
    if finite.any():
        lo, hi = pt[finite].min(), pt[finite].max()
        pt[finite] = (pt[finite] - lo) / max(hi - lo, 1e-12)
    sc.tl.paga(a, groups="group")
    cats = list(a.obs["group"].cat.categories)
    conn = pd.DataFrame(a.uns["paga"]["connectivities"].toarray(), index=cats, columns=cats)
    return pt, conn


def _natural_spline_basis(x: np.ndarray, df: int) -> np.ndarray:
    """A natural cubic spline basis of ``x`` with ``df`` columns (knots at quantiles), via patsy."""
    from patsy import dmatrix

    return np.asarray(dmatrix(f"cr(x, df={df}) - 1", {"x": x}, return_type="matrix"))


def gene_trends(expr: sp.spmatrix | np.ndarray, genes, pseudotime: np.ndarray, *, spline_df: int = 4,
                report_genes=()) -> pd.DataFrame:
    """Which genes change along pseudotime: per gene, a natural cubic spline of pseudotime
    (``spline_df`` degrees of freedom) against an intercept-only model, F-test, BH FDR.

    Parameters
    ----------
    expr
        Cells x genes, log-normalised (log1p CP10k).
    genes
        Gene names (columns of ``expr``).
    pseudotime
        Per cell (finite).
    report_genes
        Genes flagged in column ``reported`` (config ``tissue.trajectory.genes``).

    Returns
    -------
    One row per gene expressed in at least 10 cells: ``gene, effect`` (fitted value at the end minus
    at the start, log1p CP10k), ``spearman``, ``pvalue``, ``fdr``, ``rank`` (by p-value), ``reported``;
    sorted by p-value.
    """
    from scipy import stats  # here: the rule files import this package (scipy.stats is 1 s of a start)

    x = np.asarray(pseudotime, dtype=float)
    y = expr.toarray() if sp.issparse(expr) else np.asarray(expr, dtype=float)
    genes = np.asarray(list(genes))
    expressed = (y > 0).sum(0) >= 10
    y, genes = y[:, expressed], genes[expressed]
    n = len(x)
    basis = np.column_stack([np.ones(n), _natural_spline_basis(x, spline_df)])
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    fitted = basis @ coef
    ss1 = ((y - fitted) ** 2).sum(0)
    ss0 = ((y - y.mean(0)) ** 2).sum(0)
    k = basis.shape[1] - 1
    f = ((ss0 - ss1) / k) / np.maximum(ss1 / (n - k - 1), 1e-300)
    p = stats.f.sf(f, k, n - k - 1)
    order = np.argsort(x)
    effect = fitted[order[-max(1, n // 20):]].mean(0) - fitted[order[: max(1, n // 20)]].mean(0)
    rx = stats.rankdata(x)
    ry = stats.rankdata(y, axis=0)
    rx, ry = rx - rx.mean(), ry - ry.mean(0)
    rho = (rx @ ry) / np.maximum(np.sqrt((rx ** 2).sum() * (ry ** 2).sum(0)), 1e-300)
    out = pd.DataFrame({"gene": genes, "effect": effect, "spearman": rho, "pvalue": p, "fdr": bh_fdr(p)})
    out = out.sort_values(["pvalue", "gene"], kind="mergesort").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    out["reported"] = out["gene"].isin(set(report_genes))
    return out


def _entry_table(blood_latent: np.ndarray, blood_groups: np.ndarray, end_latent: np.ndarray, *, ends: list[str],
                 conn: pd.DataFrame, n_neighbors: int = 15) -> pd.DataFrame:
    """Which blood group leads into the end groups: its share of the end cells' nearest blood cells
    over its share of the blood pool (enrichment), and PAGA connectivity (direct, and the best route
    through one tissue group)."""
    from sklearn.neighbors import NearestNeighbors

    g = np.asarray(blood_groups).astype(str)
    if len(g) == 0 or len(end_latent) == 0:
        return pd.DataFrame(columns=["blood_group", "blood_cells", "share_of_blood", "share_of_end_neighbours",
                                     "enrichment", "paga_direct", "paga_best_route", "paga_best_via"])
    nn = NearestNeighbors(n_neighbors=min(n_neighbors, len(g))).fit(blood_latent)
    _, idx = nn.kneighbors(end_latent)
    neigh = pd.Series(g[idx.ravel()]).value_counts(normalize=True)
    base = pd.Series(g).value_counts(normalize=True)
    tissue_groups = [x for x in conn.index if not x.startswith("blood:") and x not in ends]
    rows = []
    for bg in sorted(base.index):
        direct = max((float(conn.loc[bg, e]) for e in ends if bg in conn.index and e in conn.index), default=np.nan)
        routes = [(float(conn.loc[bg, t] * conn.loc[t, e]), t) for t in tissue_groups for e in ends
                  if bg in conn.index and e in conn.index]
        best = max(routes, default=(np.nan, ""))
        rows.append({"blood_group": bg, "blood_cells": int((g == bg).sum()), "share_of_blood": float(base[bg]),
                     "share_of_end_neighbours": float(neigh.get(bg, 0.0)),
                     "enrichment": float(neigh.get(bg, 0.0) / base[bg]), "paga_direct": direct,
                     "paga_best_route": best[0], "paga_best_via": best[1]})
    return pd.DataFrame(rows).sort_values("enrichment", ascending=False, kind="mergesort").reset_index(drop=True)


def tissue_trajectory(tissue: md.MuData, blood_latent: ad.AnnData, *, tissue_name: str,
                      root_state: str = "CD14.Mono", via_states=("CD14.EGR1",),
                      blood_states=("CD14.Mono", "CD14.EGR1"),
                      tissue_states=("CD14.Mono", "CD14.EGR1", "CD14.ISG", "Int.Mono", "CD16.Mono"),
                      tissue_types=("Macrophage",), genes=("THBS1", "EGR1", "NFKBIA", "IER2", "SGK1", "CCR1", "IL1B"),
                      n_neighbors: int = 15, spline_df: int = 4, min_cells: int = 30,
                      seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, dict]:
    """Blood monocytes of the tissue's donors -> the tissue's monocytes and macrophages.

    Parameters
    ----------
    tissue
        A mapped tissue (:func:`~sscsig.tissue.map_tissue`): obs ``donor``, ``tissue_type``,
        ``blood_state``, ``blood_state_nearest`` (the path takes immune cells by it, unmapped
        ones too); obsm ``X_mapped``; ``rna`` counts.
    blood_latent
        The blood cells in the same latent space (obs ``donor``, ``cell_state``; obsm ``X_mapped``).
    root_state, via_states, blood_states, tissue_states, tissue_types, genes, n_neighbors, spline_df, min_cells
        Config ``tissue.trajectory``.

    Returns
    -------
    (gene trends along pseudotime of the tissue cells (:func:`gene_trends`); the entry table (per
    blood state of ``blood_states``: its share of the end cells' nearest blood cells, among every
    donor's blood cells of those states, over its share of them, and PAGA connectivity into the end); pseudotime of every
    tissue cell (NaN off the path); facts: cells per group, ``entry`` = the most enriched blood
    group, ``through_via_states`` = a via state is more enriched than the root state,
    ``tissue_cells_unmapped`` = path cells beyond the mapping's cutoffs, and a note
    when the path has too few cells)
    """
    from ._map import UNMAPPED
    from ._types import IMMUNE, log_cp10k

    donors = set(tissue.obs["donor"].astype(str))
    b = blood_latent.obs
    bsel = (b["donor"].astype(str).isin(donors) & b["cell_state"].astype(str).isin(blood_states)).to_numpy()
    t = tissue.obs
    # a tissue immune cell joins the path by its nearest blood state, also when it is 'unmapped':
    # monocytes on their way to becoming macrophages lie away from every blood cell by nature (the
    # tiny demo's kidney: 76% of the truth's continuum cells are beyond the novelty cutoff, 14% of
    # the other immune cells), and leaving them out would cut the path's middle
    tstate = t["blood_state_nearest"].astype(object)
    tsel = (((t["tissue_type"] == IMMUNE) & tstate.isin(tissue_states)) | t["tissue_type"].isin(tissue_types)).to_numpy()
    tgroup = np.where(t["tissue_type"] == IMMUNE, tstate.astype(str), t["tissue_type"].astype(str))
    pt_all = pd.Series(np.nan, index=tissue.obs_names, name="pseudotime")
    unmapped_on_path = tsel & (t["tissue_type"] == IMMUNE).to_numpy() & (t["blood_state"].astype(str) == UNMAPPED).to_numpy()
    facts = {"tissue": tissue_name, "blood_cells": int(bsel.sum()), "tissue_cells": int(tsel.sum()),
             "tissue_cells_unmapped": int(unmapped_on_path.sum())}
    empty_trends = pd.DataFrame(columns=["gene", "effect", "spearman", "pvalue", "fdr", "rank", "reported"])
    empty_paths = pd.DataFrame(columns=["blood_group", "blood_cells", "share_of_blood", "share_of_end_neighbours",
                                        "enrichment", "paga_direct", "paga_best_route", "paga_best_via"])
    root = f"blood:{root_state}"
    if tsel.sum() < min_cells or not (b.loc[bsel, "cell_state"] == root_state).any():
        facts["note"] = (f"not computed: {int(tsel.sum())} tissue cells on the path (need {min_cells}) and "
                         f"{int((b.loc[bsel, 'cell_state'] == root_state).sum())} blood {root_state} cells of the "
                         "tissue's donors")
        log.warning("%s trajectory %s", tissue_name, facts["note"])
        return empty_trends, empty_paths, pt_all, facts
    groups = pd.Series(np.concatenate([("blood:" + b.loc[bsel, "cell_state"].astype(str)).to_numpy(),
                                       (f"{tissue_name}:" + pd.Series(tgroup[tsel])).to_numpy()]),
                       index=np.concatenate([b.index[bsel], tissue.obs_names[tsel]]))
    latent = np.vstack([blood_latent.obsm["X_mapped"][bsel], tissue.obsm["X_mapped"][tsel]])
    ends = [f"{tissue_name}:{x}" for x in tissue_types]
    pt, conn = diffusion_pseudotime(latent, groups, root_group=root, end_groups=ends, n_neighbors=n_neighbors,
                                    seed=seed)
    pt_all[tissue.obs_names[tsel]] = pt.iloc[int(bsel.sum()):].to_numpy()
    # does the path leave blood through a via state rather than the root state? (1) the blood
    # neighbours of the end cells (tissue-only types) in the latent space: each blood state's share
    # of them over its share of the blood pool (enrichment; the pool is every donor's blood cells of
    # blood_states, as the tissue donors' own hold few cells of a rare state: 11 CD14.EGR1 cells in
    # the tiny demo's four SRC donors, where the enrichment flipped between trainings); (2) PAGA
    # connectivity into the end, directly or through one tissue group (product), the best route
    pool = b["cell_state"].astype(str).isin(blood_states).to_numpy()
    end_cells = tissue.obs["tissue_type"].isin(tissue_types).to_numpy()
    pool_groups = ("blood:" + b.loc[pool, "cell_state"].astype(str)).to_numpy()
    paths = _entry_table(blood_latent.obsm["X_mapped"][pool], pool_groups, tissue.obsm["X_mapped"][end_cells],
                         ends=ends, conn=conn, n_neighbors=n_neighbors)
    facts["entry"] = str(paths["blood_group"].iloc[0]) if len(paths) and paths["enrichment"].iloc[0] > 0 else None
    facts["entry_enrichment"] = dict(zip(paths["blood_group"], paths["enrichment"].astype(float)))
    enr = facts["entry_enrichment"]
    via = [enr[f"blood:{v}"] for v in via_states if f"blood:{v}" in enr]
    facts["through_via_states"] = bool(via and root in enr and max(via) > enr[root])  # rather than the root state
    facts["groups"] = groups.value_counts().to_dict()
    on = tissue.obs_names[tsel]
    finite = np.isfinite(pt_all[on].to_numpy())
    rna = tissue["rna"][on[finite]]
    trends = gene_trends(log_cp10k(rna), rna.var_names, pt_all[on[finite]].to_numpy(), spline_df=spline_df,
                         report_genes=genes)
    missing = sorted(set(genes) - set(trends["gene"]))
    if missing:
        facts["genes_not_tested"] = missing  # not on the panel or expressed in < 10 cells
    log.info("%s trajectory: %d blood + %d tissue cells; entry %s; %d genes at FDR < 0.05", tissue_name,
             int(bsel.sum()), int(tsel.sum()), facts["entry"], int((trends["fdr"] < 0.05).sum()))
    return trends, paths, pt_all, facts
