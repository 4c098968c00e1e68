"""Donor-level pseudobulk differential expression per cell state and contrast, and its enrichment.

RNA: raw counts summed per donor within a state (:func:`pseudobulk_counts`, a block of cells at a
time, so the count matrix can stay on disk), donors with at least
``min_cells`` cells of the state, genes with at least ``min_counts`` counts in at least
``min_donors_per_group`` donors; PyDESeq2 with design ``~ <covariates> + condition`` (Wald test of
case vs control, BH ``padj`` within the state and contrast), its per-gene solvers vectorised over
genes unless ``solver='pydeseq2'`` (:mod:`sscsig.nbglm`). Proteins: the donors' mean normalised
ADT (DSB where available, CLR otherwise) within the state, ordinary least squares with the same
covariates, BH within the state and contrast. Enrichment: decoupler's univariate linear model
(``ulm``) of the DESeq2 Wald statistics against the shipped gene sets.
"""

from __future__ import annotations

import logging
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import statsmodels.api as sm

from ..design import Design, bh_fdr, design_matrix

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ["contrast", "cell_state", "de_genes_tested", "de_genes_fdr01", "de_top_up",
                   "de_top_down", "prot_top_up", "prot_top_down", "de_reason"]


def pseudobulk_counts(counts, obs: pd.DataFrame, *, state_key: str = "cell_state",
                      donor_key: str = "donor", var_names=None, cells: np.ndarray | None = None,
                      chunk_cells: int = 50_000) -> ad.AnnData:
    """Donor x state sums of raw counts, read ``chunk_cells`` cells at a time.

    Parameters
    ----------
    counts
        Cells x genes raw counts: in memory (SciPy sparse or NumPy) or left on disk (an
        ``anndata.abc.CSRDataset`` or h5py dataset, e.g. from :func:`sscsig.io.backed_matrix`),
        whose rows are read a block at a time so that the whole matrix is never held.
    obs
        One row per row of ``counts`` with the donor and state columns.
    state_key, donor_key
        The columns of ``obs`` to sum within.
    var_names
        Gene names (default: ``0..n-1``).
    cells
        Boolean mask of the rows to sum (default: all).
    chunk_cells
        Cells read and summed at a time; the sums are exact whatever the size (integer counts in
        float64).

    Returns
    -------
    AnnData with one row per state and donor (states, then donors, in sorted order; a pair without
    cells has zeros and ``n_cells`` 0), dense ``X`` of sums, ``obs`` ``donor``, ``cell_state`` and
    ``n_cells``, every gene: the layout of ``decoupler.pp.pseudobulk(..., mode="sum")``, which
    held the whole matrix (as float64) to build it.
    """
    n = counts.shape[0]
    if len(obs) != n:
        raise ValueError(f"pseudobulk: {len(obs)} obs rows for a {n}-cell count matrix")
    cells = np.ones(n, bool) if cells is None else np.asarray(cells, bool)
    donor = obs[donor_key].astype(str).to_numpy()
    state = obs[state_key].astype(str).to_numpy()
    donors, states = np.unique(donor[cells]), np.unique(state[cells])
    code = np.full(n, -1)  # row of the sum each cell goes to; -1: not summed
    code[cells] = (np.searchsorted(states, state[cells]) * len(donors) + np.searchsorted(donors, donor[cells]))
    n_rows = len(states) * len(donors)
    sums = np.zeros((n_rows, counts.shape[1]))
    for start in range(0, n, chunk_cells):
        c = code[start:start + chunk_cells]
        if (c < 0).all():
            continue
        block = counts[start:start + len(c)]
        ind = sp.csr_matrix((np.ones((c >= 0).sum()), (c[c >= 0], np.flatnonzero(c >= 0))), shape=(n_rows, len(c)))
        part = ind @ (sp.csr_matrix(block) if sp.issparse(block) else np.asarray(block))
        sums += part.toarray() if sp.issparse(part) else part
    genes = pd.Index(var_names if var_names is not None else np.arange(counts.shape[1]).astype(str))
    pb_obs = pd.DataFrame({"donor": np.tile(donors, len(states)), "cell_state": np.repeat(states, len(donors)),
                           "n_cells": np.bincount(code[cells], minlength=n_rows)})
    pb_obs.index = pb_obs["donor"] + "_" + pb_obs["cell_state"]
    return ad.AnnData(X=sums, obs=pb_obs, var=pd.DataFrame(index=genes))


def deseq2(counts: pd.DataFrame, meta: pd.DataFrame, covariates: list[str], *, solver: str = "batched") -> pd.DataFrame:
    """PyDESeq2 Wald test of ``condition`` (``1_case`` vs ``0_control``) adjusted for covariates.

    ``solver``: ``batched`` fits the genes' GLMs and dispersions together
    (:class:`sscsig.nbglm.BatchedInference`); ``pydeseq2`` uses PyDESeq2's per-gene solvers.
    """
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    from ..nbglm import BatchedInference

    if solver not in ("batched", "pydeseq2"):
        raise ValueError(f"pseudobulk solver must be 'batched' or 'pydeseq2', not {solver!r}")
    design = "~" + " + ".join([*covariates, "condition"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inference = (BatchedInference if solver == "batched" else DefaultInference)(n_cpus=1)
        dds = DeseqDataSet(counts=counts, metadata=meta, design=design, refit_cooks=True,
                           inference=inference, quiet=True)
        dds.deseq2()
        stats = DeseqStats(dds, contrast=["condition", "1_case", "0_control"], inference=inference, quiet=True)
        stats.summary()
    res = stats.results_df.copy()
    res.index.name = "gene"
    return res


def _top(df: pd.DataFrame, score: str, fdr_col: str, fdr: float, n: int) -> tuple[str, str]:
    sig = df[df[fdr_col] < fdr]
    up = sig[sig[score] > 0].sort_values(score, ascending=False).index[:n]
    down = sig[sig[score] < 0].sort_values(score).index[:n]
    return " ".join(map(str, up)), " ".join(map(str, down))


def protein_tests(prot: np.ndarray, prot_names, obs: pd.DataFrame, donors: pd.DataFrame,
                  group: pd.Series, covariates: list[str], contrast: str, state: str,
                  donors_ok: list[str]) -> pd.DataFrame:
    """OLS of donor-mean normalised protein within a state: ``protein ~ case + covariates``."""
    in_state = (obs["cell_state"].astype(str) == state).to_numpy()
    d = obs["donor"].astype(str).to_numpy()[in_state]
    means = pd.DataFrame(np.asarray(prot)[in_state], columns=prot_names).groupby(d).mean().reindex(donors_ok)
    x = design_matrix(donors.loc[donors_ok], group[donors_ok], covariates, contrast)
    rows = []
    for name in prot_names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.OLS(means[name].to_numpy(float), x.to_numpy(float)).fit()
        j = list(x.columns).index("case")
        rows.append({"protein": name, "effect": float(fit.params[j]), "t": float(fit.tvalues[j]),
                     "pvalue": float(fit.pvalues[j])})
    res = pd.DataFrame(rows).set_index("protein")
    res["padj"] = bh_fdr(res["pvalue"])
    return res


def run_pseudobulk(
    counts,
    gene_names,
    obs: pd.DataFrame,
    prot: np.ndarray | None,
    prot_names,
    design: Design,
    *,
    enabled: bool = True,
    states="all",
    min_cells: int = 10,
    min_donors_per_group: int = 3,
    min_counts: int = 10,
    fdr: float = 0.1,
    top_n: int = 5,
    solver: str = "batched",
    cells: np.ndarray | None = None,
    chunk_cells: int = 50_000,
    n_jobs: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every state x contrast of the design (see module docstring).

    The keyword options are config ``pseudobulk`` (``gene_sets_file`` and ``min_set_size`` are
    :func:`enrichment`'s). The donor sums are built once for all contrasts; (state, contrast) pairs
    that cannot be tested (too few donors, too few genes) are set aside before any fit, and the
    PyDESeq2 fits run in ``n_jobs`` worker processes (the same results as one after another).
    ``counts`` may be left on disk (:func:`pseudobulk_counts` reads ``chunk_cells`` rows at a time);
    ``cells`` (boolean, over the rows of ``counts``, ``obs`` and ``prot``) selects the cells to use.

    Returns
    -------
    (gene results, protein results, per state x contrast summary), rows in contrast then state order.
    """
    donors = design.donors
    pb = pseudobulk_counts(counts, obs, var_names=pd.Index(gene_names), cells=cells, chunk_cells=chunk_cells)
    if cells is not None:  # the per-cell tables are small next to the counts: subset in memory
        obs, prot = obs[np.asarray(cells, bool)], (None if prot is None else np.asarray(prot)[np.asarray(cells, bool)])
    states = sorted(pb.obs["cell_state"].unique()) if states == "all" else list(states)
    fits, rows = [], []  # fits: (index into rows, counts, meta, covariates, group)
    for c in (design.contrasts.values() if enabled else ()):
        name, covariates, group = c.name, list(c.covariates), c.groups
        for state in states:
            sub = pb[(pb.obs["cell_state"] == state) & (pb.obs["n_cells"] >= min_cells)]
            sub = sub[sub.obs["donor"].isin(group.dropna().index)]
            g = group.reindex(sub.obs["donor"].to_numpy())
            row = {"contrast": name, "cell_state": state, "de_genes_tested": 0, "de_genes_fdr01": np.nan,
                   "de_top_up": "", "de_top_down": "", "prot_top_up": "", "prot_top_down": "", "de_reason": ""}
            rows.append(row)
            n_case, n_ctrl = int((g == 1).sum()), int((g == 0).sum())
            if min(n_case, n_ctrl) < min_donors_per_group:
                row["de_reason"] = (f"too few donors with >= {min_cells} cells ({n_case} case, "
                                    f"{n_ctrl} control; minimum {min_donors_per_group})")
                continue
            x = sp.csr_matrix(sub.X)
            keep = np.asarray((x >= min_counts).sum(0)).ravel() >= min_donors_per_group
            if keep.sum() < 10:
                row["de_reason"] = f"only {int(keep.sum())} genes pass the expression filter"
                continue
            mat = pd.DataFrame(np.asarray(x[:, keep].todense()).astype(int), index=sub.obs["donor"].to_numpy(),
                               columns=sub.var_names[keep])
            meta = donors.loc[mat.index, covariates].copy() if covariates else pd.DataFrame(index=mat.index)
            for cov in covariates:
                num = pd.to_numeric(meta[cov], errors="coerce")
                meta[cov] = (num - num.mean()) / (num.std() or 1) if num.notna().all() else meta[cov].astype(str)
            meta["condition"] = np.where(g.to_numpy() == 1, "1_case", "0_control")
            fits.append((len(rows) - 1, mat, meta, covariates, group))
    log.info("pseudobulk: %d PyDESeq2 fits of %d state x contrast pairs, %d worker(s)", len(fits), len(rows), n_jobs)
    results = _fit_all([(mat, meta, cov) for _, mat, meta, cov, _ in fits], n_jobs=n_jobs, solver=solver)
    genes, prots = [], []
    for (i, mat, _, covariates, group), res in zip(fits, results):
        row = rows[i]
        name, state = row["contrast"], row["cell_state"]
        res.insert(0, "cell_state", state)
        res.insert(0, "contrast", name)
        genes.append(res.reset_index())
        row["de_genes_tested"] = int(len(res))
        row["de_genes_fdr01"] = int((res["padj"] < fdr).sum())
        row["de_top_up"], row["de_top_down"] = _top(res, "stat", "padj", fdr, top_n)
        if prot is not None:
            pr = protein_tests(prot, list(prot_names), obs, donors, group, covariates, name, state, list(mat.index))
            row["prot_top_up"], row["prot_top_down"] = _top(pr, "t", "padj", fdr, top_n)
            pr.insert(0, "cell_state", state)
            pr.insert(0, "contrast", name)
            prots.append(pr.reset_index())
    gene_df = pd.concat(genes, ignore_index=True) if genes else pd.DataFrame(
        columns=["contrast", "cell_state", "gene", "baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"])
    prot_df = pd.concat(prots, ignore_index=True) if prots else pd.DataFrame(
        columns=["contrast", "cell_state", "protein", "effect", "t", "pvalue", "padj"])
    return gene_df, prot_df, pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _fit_all(jobs: list[tuple], *, n_jobs: int, solver: str = "batched") -> list[pd.DataFrame]:
    """:func:`deseq2` of every (counts, meta, covariates), in order; in ``n_jobs`` processes (loky)."""
    if n_jobs <= 1 or len(jobs) <= 1:
        return [deseq2(*j, solver=solver) for j in jobs]
    from joblib import Parallel, delayed, parallel_config

    # one BLAS thread per worker: Snakemake sets OPENBLAS/OMP_NUM_THREADS to the job's threads, and
    # n_jobs workers x that many spinning BLAS threads on tiny matrices ran 3x slower than one process
    with parallel_config(backend="loky", inner_max_num_threads=1):
        return Parallel(n_jobs=min(n_jobs, len(jobs)))(delayed(deseq2)(*j, solver=solver) for j in jobs)


def enrichment(de: pd.DataFrame, gene_sets: dict[str, list[str]], *, min_size: int = 5) -> pd.DataFrame:
    """decoupler ``ulm`` of each (contrast, state)'s Wald statistics against the gene sets."""
    import decoupler as dc

    if de.empty:
        return pd.DataFrame(columns=["contrast", "cell_state", "gene_set", "score", "pvalue", "padj"])
    net = pd.DataFrame([(s, g) for s, genes in gene_sets.items() for g in genes], columns=["source", "target"])
    net["weight"] = 1.0
    wide = de.pivot_table(index=["contrast", "cell_state"], columns="gene", values="stat")
    wide.index = [f"{c}|{s}" for c, s in wide.index]
    wide = wide.fillna(0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es, pv = dc.mt.ulm(wide, net, tmin=min_size)
    long = es.stack().rename("score").to_frame().join(pv.stack().rename("pvalue"))
    long.index.names = ["key", "gene_set"]
    long = long.reset_index()
    long[["contrast", "cell_state"]] = long["key"].str.split("|", n=1, expand=True)
    long["padj"] = np.nan
    for _, idx in long.groupby("contrast").groups.items():
        long.loc[idx, "padj"] = bh_fdr(long.loc[idx, "pvalue"])
    return long[["contrast", "cell_state", "gene_set", "score", "pvalue", "padj"]]
