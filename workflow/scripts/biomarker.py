"""Rule biomarker: cross-validated blood biomarker models of one complication (sscsig.stats)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import pandas as pd

    from sscsig.design import Design
    from sscsig.io import write_tsv
    from sscsig.report import biomarker_pca_plot, biomarker_roc_plot
    from sscsig.stats import biomarker_complication, save_models

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    comp = snakemake.wildcards.complication
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts)
    counts = pd.read_csv(i.counts, sep="\t", index_col=0)
    parents = pd.read_csv(i.composition, sep="\t").drop_duplicates("cell_state").set_index("cell_state")["parent"]
    res = biomarker_complication(counts, parents.to_dict(), pd.read_csv(i.scores, sep="\t"), design, comp,
                                 **p.biomarker, seed=p.seed, n_jobs=snakemake.threads)
    for key in ("metrics", "predictions", "features", "pca", "loadings"):
        write_tsv(res[key], getattr(o, key), config=snakemake.config, step="biomarker")
    save_models(res, o.model, counts=counts, parents=parents.to_dict(), signatures=p.signatures,
                pseudocount=p.biomarker["pseudocount"], min_cells_per_donor=p.min_cells_per_donor, complication=comp,
                config=snakemake.config)
    biomarker_roc_plot(res["predictions"], res["metrics"], comp, o.roc)
    biomarker_pca_plot(res["pca"], res["loadings"], comp, o.pca_png)
