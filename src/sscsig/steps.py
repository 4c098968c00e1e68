"""File-level entry points of the pipeline stages: one function per Snakemake rule.

Each reads its inputs, calls the scientific functions of its stage module, and writes its outputs
atomically with provenance. They are also usable without Snakemake.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mudata as md
import pandas as pd

from . import _io
from .ingest import InputError

log = logging.getLogger(__name__)
md.set_options(pull_on_update=False)


def simulate(out_dir: str, config: dict) -> None:
    from .simulate import DemoParams, simulate_cohort

    d = config.get("demo", {})
    params = DemoParams(seed=config["seed"], cells_per_donor=d.get("cells_per_donor", 800),
                        effect_src=d.get("effect_src", 3.0), effect_ild=d.get("effect_ild", 3.0),
                        null=d.get("null_cohort", False), src_oldest=d.get("src_oldest", False),
                        with_raw=d.get("with_raw", False))
    simulate_cohort(out_dir, params)


def ingest_qc(path: str, sample: str, out_h5mu: str, out_cells: str, out_summary: str, config: dict,
              *, raw: str | None = None, out_png: str | None = None) -> None:
    from .ingest import read_sample
    from .qc import check_enough_cells, qc_sample
    from .report import qc_sample_plot

    f = config.get("features", {})
    kw = dict(sample=sample, rna_type=f.get("rna", "Gene Expression"),
              protein_type=f.get("protein", "Antibody Capture"),
              isotype_pattern=f.get("isotype_pattern", r"(?i)isotype|IgG[0-9]"))
    mdata = read_sample(path, **kw)
    empty = read_sample(raw, **kw) if raw else None
    qc = config.get("qc", {})
    res = qc_sample(mdata, params=qc, seed=config["seed"], empty=empty)
    warning = check_enough_cells(res.summary, min_cells=qc.get("min_cells", 50),
                                 policy=qc.get("on_too_few_cells", "stop"))
    res.summary["dropped"] = warning is not None
    res.summary["warning"] = warning or ""
    _io.stamp(res.kept, config, step="qc")
    _io.write_h5mu(res.kept, out_h5mu)
    _io.write_tsv(res.flags, out_cells, index=True)  # provenance: in the h5mu written beside it
    if out_png:
        qc_sample_plot(res.flags, res.thresholds, sample, out_png)
    with _io.atomic_path(out_summary) as tmp:
        tmp.write_text(json.dumps(res.summary, indent=1, default=float))


def qc_summary(summaries: list[str], out_tsv: str, out_png: str, config: dict | None = None) -> None:
    from .report import qc_plot

    rows = [json.loads(Path(p).read_text()) for p in summaries]
    df = pd.DataFrame(rows)
    _io.write_tsv(df, out_tsv, config=config, step="qc_summary")
    qc_plot(df, out_png)


def merge(qc_paths: dict[str, str], summaries: list[str], sheet_path: str, out: str, config: dict,
          out_report: str | None = None) -> None:
    from .config import load_sample_sheet
    from .merge import cohort_warnings, merge_samples

    sheet = load_sample_sheet(sheet_path, config, check_files=False)
    parsed = [json.loads(Path(p).read_text()) for p in summaries]
    dropped = {js["sample"] for js in parsed if js.get("dropped")}
    samples = {s: md.read_h5mu(p) for s, p in qc_paths.items() if s not in dropped}
    mdata, report = merge_samples(samples, sheet, panel_policy=config.get("qc", {}).get("panel_policy", "intersection"))
    report["dropped_samples"] = sorted(dropped)
    report["sample_warnings"] = [js["warning"] for js in parsed if js.get("warning")]
    report["warnings"] = cohort_warnings(report)
    mdata.uns["merge_report"] = json.dumps(report)
    _io.stamp(mdata, config, step="merge")
    _io.write_h5mu(mdata, out)
    if out_report:
        with _io.atomic_path(out_report) as tmp:
            tmp.write_text(json.dumps(report, indent=1, sort_keys=True))


def _warnings(merge_report: str | None, sheet_path: str | None = None, config: dict | None = None) -> list[str]:
    """Warnings a reader must see: from the merge (dropped samples, panels) and the design (batch)."""
    from .config import design_warnings, load_sample_sheet

    out = json.loads(Path(merge_report).read_text()).get("warnings", []) if merge_report else []
    if sheet_path and config is not None:
        sheet = load_sample_sheet(sheet_path, config, check_files=False)
        out += design_warnings(sheet, config, batch_key=config.get("integration", {}).get("batch_key", "batch"))
    return out


def integrate_and_cluster(inp: str, out: str, config: dict, *, model_dir: str | None = None,
                          threads: int | None = None) -> None:
    from .cluster import cluster
    from .integrate import integrate

    if threads:  # one thread count for torch / BLAS: the same results wherever the job runs
        import torch

        torch.set_num_threads(int(threads))
    mdata = md.read_h5mu(inp)
    integrate(mdata, params=config.get("integration"), seed=config["seed"], model_dir=model_dir)
    cluster(mdata, params=config.get("clustering"), seed=config["seed"])
    _io.stamp(mdata, config, step="integrate")
    _io.write_h5mu(mdata, out)


def annotate(inp: str, markers: str, out: str, config: dict) -> None:
    from .annotate import annotate as run, load_markers, subcluster

    mdata = md.read_h5mu(inp)
    params = {k: v for k, v in config.get("annotation", {}).items() if k != "markers"}
    report = run(mdata, load_markers(markers), params=params, seed=config["seed"])
    subcluster(mdata, seed=config["seed"])
    mdata.uns["annotation_report"] = json.dumps(report, default=int)
    _io.stamp(mdata, config, step="annotate")
    _io.write_h5mu(mdata, out)


def _read_elems(path: str, *keys: str):
    """Read only the named elements of an h5mu (e.g. ``obs``), never the matrices."""
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        return [read_elem(f[k]) for k in keys]


def _obs(path: str) -> pd.DataFrame:
    return _read_elems(path, "obs")[0]


def _read_modality(path: str, mod: str, *, x: str | None = "X", layers=()):
    """One modality of an h5mu with only the matrices a rule needs (``x``: the element read as ``X``,
    e.g. ``"layers/counts"``; ``layers``: extra layers, those absent skipped), in the cohort's cell order."""
    import anndata as ad
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as f:
        g = f[f"mod/{mod}"]
        cells = read_elem(f["obs"]).index
        a = ad.AnnData(X=read_elem(g[x]) if x else None, obs=pd.DataFrame(index=read_elem(g["obs"]).index),
                       var=read_elem(g["var"]),
                       layers={k: read_elem(g[f"layers/{k}"]) for k in layers if f"layers/{k}" in g})
    if not a.obs_names.equals(cells):
        raise ValueError(f"{path}: modality {mod!r} cells are not in the cohort's order")
    return a


def abundance(inp: str, sheet_path: str, out_counts: str, out_results: str, config: dict) -> None:
    from .abundance import differential_abundance
    from .config import load_sample_sheet

    sheet = load_sample_sheet(sheet_path, config, check_files=False)
    counts, res = differential_abundance(_obs(inp), sheet, config["contrasts"], params=config.get("abundance"))
    _io.write_tsv(counts, out_counts, index=True, config=config, step="abundance")
    _io.write_tsv(res, out_results, config=config, step="abundance")


def _contrast_donors(sheet_path: str, config: dict) -> pd.DataFrame:
    """One row per donor with the sample-sheet columns the contrasts select on or adjust for."""
    from .abundance import donor_table
    from .config import contrast_columns, load_sample_sheet

    sheet = load_sample_sheet(sheet_path, config, check_files=False)
    sel, cov = contrast_columns(config)
    return donor_table(sheet, sorted(sel | cov))


def milo(inp: str, sheet_path: str, out_nhoods: str, out_states: str, config: dict) -> None:
    from .milo import run_milo

    donors = _contrast_donors(sheet_path, config)
    obs, latent = _read_elems(inp, "obs", "obsm/X_integrated")
    nh, states = run_milo(obs, latent, donors, config["contrasts"], params=config.get("milo"), seed=config["seed"])
    _io.write_tsv(nh, out_nhoods, config=config, step="milo")
    _io.write_tsv(states, out_states, config=config, step="milo")


def pseudobulk(inp: str, sheet_path: str, contrast: str, out_genes: str, out_proteins: str,
               out_summary: str, out_enrichment: str, config: dict) -> None:
    from .pseudobulk import enrichment, run_pseudobulk
    from .qc import normalised_protein
    from .signatures import read_gene_sets, resolve_gene_set_file

    donors = _contrast_donors(sheet_path, config)
    rna = _read_modality(inp, "rna", x="layers/counts")  # raw counts only, not the log-normalised X
    prot, prot_names, _ = normalised_protein(_read_modality(inp, "prot", x=None, layers=("dsb", "clr")))
    params = config.get("pseudobulk") or {}
    genes, prots, summary = run_pseudobulk(
        rna.X, rna.var_names, _obs(inp), prot, prot_names,
        donors, {contrast: config["contrasts"][contrast]}, params=params)
    sets = read_gene_sets(resolve_gene_set_file(params.get("gene_sets_file", "genesets.tsv")))
    enr = enrichment(genes, sets, min_size=params.get("min_set_size", 5))
    _io.write_tsv(genes, out_genes, config=config, step="pseudobulk")
    _io.write_tsv(prots, out_proteins, config=config, step="pseudobulk")
    _io.write_tsv(enr, out_enrichment, config=config, step="pseudobulk")
    _io.write_tsv(summary, out_summary, config=config, step="pseudobulk")


def signatures(inp: str, sheet_path: str, out_scores: str, out_tests: str, out_coverage: str, config: dict) -> None:
    from .config import load_sample_sheet
    from .signatures import donor_scores, resolve_signatures, score_cells, test_signatures

    sp = config.get("signature_params", {})
    sigs = resolve_signatures(config.get("signatures") or {})
    rna = _read_modality(inp, "rna")  # log-normalised X only
    sheet = load_sample_sheet(sheet_path, config, check_files=False)
    cell_scores, cover = score_cells(rna, sigs, seed=config["seed"],
                                     min_coverage=sp.get("min_gene_coverage", 0.5))
    scores = donor_scores(_obs(inp), cell_scores, sigs, min_cells=sp.get("min_cells_per_donor", 5))
    tests = test_signatures(scores, sheet, config["contrasts"], params=sp)
    _io.write_tsv(scores, out_scores, config=config, step="signatures")
    _io.write_tsv(tests, out_tests, config=config, step="signatures")
    _io.write_tsv(cover, out_coverage, config=config, step="signatures")


def tables(abundance_tsv: str, signature_tsv: str, complication: str, out_tsv: str, out_md: str,
           config: dict, merge_report: str | None = None, sheet_path: str | None = None,
           milo_states: str | None = None, de_summaries: list[str] | None = None,
           out_html: str | None = None) -> None:
    from .signatures import resolve_signatures
    from .tables import complication_table, to_markdown, write_table

    ab = pd.read_csv(abundance_tsv, sep="\t", keep_default_na=True)
    ab["reason"] = ab["reason"].fillna("")
    sig = pd.read_csv(signature_tsv, sep="\t")
    table = complication_table(
        ab, sig, resolve_signatures(config.get("signatures") or {}), complication=complication,
        contrast_order=list(config["contrasts"]), hypotheses=config.get("hypotheses", []),
        milo=pd.read_csv(milo_states, sep="\t") if milo_states else None,
        de_summary=pd.concat([pd.read_csv(p, sep="\t", keep_default_na=False, na_values=[""])
                              for p in de_summaries]).drop(columns=["de_reason"]) if de_summaries else None,
    )
    warnings = _warnings(merge_report, sheet_path, config)
    write_table(table, out_tsv, to_markdown(table, complication=complication, warnings=warnings),
                out_md, config, warnings=warnings)
    if out_html:
        from .report import table_html

        table_html(table, complication, out_html, warnings=warnings)


def hypothesis_pairs(config: dict) -> list[tuple[str, str]]:
    """(contrast, state) of every pre-specified hypothesis, in each contrast of its complication."""
    return [(c, h["cell_state"]) for h in config.get("hypotheses", [])
            for c, spec in config["contrasts"].items() if spec.get("complication") == h["complication"]]


def figures_cohort(annotated: str, counts_tsv: str, scores_tsv: str, sheet_path: str, out: dict[str, str],
                   config: dict) -> None:
    """UMAPs (``umap_<key>``), marker heatmap, composition per donor, donor-level signature scores."""
    import numpy as np

    from . import report as rp
    from .abundance import donor_table
    from .config import load_sample_sheet
    from .qc import normalised_protein
    from .signatures import resolve_signatures

    comps = list(config["complications"])
    sheet = load_sample_sheet(sheet_path, config, check_files=False)
    donors = donor_table(sheet, sorted({"group", *comps} & set(sheet.columns)))
    groups = rp.donor_groups(donors, comps)
    obs, umap = _read_elems(annotated, "obs", "obsm/X_umap")
    obs["donor_group"] = groups.reindex(obs["donor"].astype(str)).to_numpy()
    for key in ("cell_state", "lineage", "batch", "group", *comps):
        col = "donor_group" if key in comps else key
        rp.umap_plot(obs.assign(**{key: obs[col].astype(str)}) if col in obs else obs, umap, key, out[f"umap_{key}"])
    states = obs["cell_state"].astype(str)
    sigs = resolve_signatures(config.get("signatures") or {})
    rna = _read_modality(annotated, "rna")
    prot = _read_modality(annotated, "prot", x=None, layers=("dsb", "clr"))
    genes = [g for g in dict.fromkeys(g for s in sigs.values() for g in s["genes"]) if g in rna.var_names]
    x = rna[:, genes].X
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    mean_rna = pd.DataFrame(x, columns=genes).groupby(states.to_numpy()).mean()
    prot_values, prot_names, _ = normalised_protein(prot)
    mean_prot = pd.DataFrame(prot_values, columns=prot_names).groupby(states.to_numpy()).mean()
    rp.heatmap_plot(mean_rna, mean_prot.reindex(mean_rna.index), out["heatmap"])
    counts = pd.read_csv(counts_tsv, sep="\t", index_col=0)
    rp.composition_plot(counts, donors, comps, out["composition"])
    rp.signature_plot(pd.read_csv(scores_tsv, sep="\t"), groups, out["signatures"])


def integration_metrics(annotated: str, out_tsv: str, out_png: str, config: dict) -> None:
    """Batch mixing and biological conservation of the pipeline's embedding, the ``compare`` methods
    and the unintegrated PCA, all on the same seeded 5,000 cells."""
    from .integrate import DEFAULT_INTEGRATION
    from .metrics import EMBEDDING_NAMES, compared_embeddings, subsample
    from .metrics import integration_metrics as run
    from .report import metrics_plot

    p = {**DEFAULT_INTEGRATION, **(config.get("integration") or {})}
    key, method, seed = p["batch_key"], p["method"], config["seed"]
    obs, integrated, rna_pcs, prot_pcs = _read_elems(
        annotated, "obs", "obsm/X_integrated", "obsm/X_pca_rna", "obsm/X_pca_prot")
    pick = subsample(len(obs), 5000, seed)  # every embedding scored on the same cells
    batch = obs[key].astype(str).to_numpy()[pick]
    emb = {}
    if method == "totalvi":
        emb[EMBEDDING_NAMES["totalvi"]] = integrated[pick]
    rebuilt = [m for m in dict.fromkeys([method, *p["compare"], "pca"]) if m != "totalvi"]
    emb.update(compared_embeddings(rna_pcs[pick], prot_pcs[pick], batch, rebuilt, seed=seed,
                                   wnn_neighbors=p["wnn_neighbors"]))
    m = run(emb, batch, obs["cell_state"].to_numpy()[pick], max_cells=None, seed=seed)
    m.insert(1, "pipeline_method", m["embedding"] == EMBEDDING_NAMES[method])
    _io.write_tsv(m, out_tsv, config=config, step="integration_metrics")
    metrics_plot(m, out_png)


def figures_stats(tables_tsv: dict[str, str], milo_nhoods: str, de_genes: dict[str, str], out: dict[str, str],
                  config: dict) -> None:
    """Forest plot per complication, Milo neighbourhoods, volcano plots of the hypothesis states."""
    from . import report as rp

    for comp, path in tables_tsv.items():
        rp.forest_plot(pd.read_csv(path, sep="\t"), comp, out[f"forest_{comp}"])
    try:
        nh = pd.read_csv(milo_nhoods, sep="\t")
    except pd.errors.EmptyDataError:
        nh = pd.DataFrame(columns=["contrast", "cell_state", "logFC", "SpatialFDR", "design"])
    rp.milo_plot(nh, out["milo"], fdr=(config.get("milo") or {}).get("fdr", 0.1))
    for contrast, state in hypothesis_pairs(config):
        de = pd.read_csv(de_genes[contrast], sep="\t")
        rp.volcano_plot(de, contrast, state, out[f"volcano_{contrast}_{state}"],
                        fdr=(config.get("pseudobulk") or {}).get("fdr", 0.1))


def report(figures: list[str], tables_md: dict[str, str], out_html: str, config: dict,
           merge_report: str | None = None, sheet_path: str | None = None) -> None:
    """The one-page ``summary.html``: warnings, every figure, every table."""
    from . import report as rp

    mds = {c: Path(p).read_text() for c, p in tables_md.items()}
    rp.write_index(out_html, figures=list(figures), tables=mds, warnings=_warnings(merge_report, sheet_path, config))


__all__ = ["InputError"]
