"""Rule integration_metrics: batch mixing and conserved biology of the integrations (sscsig.integrate)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.integrate import cohort_integration_metrics
    from sscsig.io import read_elems, write_tsv
    from sscsig.report import metrics_plot

    o, p = snakemake.output, snakemake.params
    obs, integrated, rna_pcs, prot_pcs = read_elems(
        snakemake.input.annotated, "obs", "obsm/X_integrated", "obsm/X_pca_rna", "obsm/X_pca_prot")
    m = cohort_integration_metrics(obs, integrated, rna_pcs, prot_pcs, method=p.method, batch_key=p.batch_key,
                                   compare=p.compare, wnn_neighbors=p.wnn_neighbors, seed=p.seed)
    write_tsv(m, o.tsv, config=snakemake.config, step="integration_metrics")
    metrics_plot(m, o.png)
