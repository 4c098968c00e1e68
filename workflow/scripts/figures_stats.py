"""Rule figures_stats: forest, Milo and volcano figures of the statistics, and the batch check of the calls
(sscsig.report)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import pandas as pd

    from sscsig.design import read_samples
    from sscsig.report import batch_plot, stats_figures
    from sscsig.stats import donor_batches

    i, p = snakemake.input, snakemake.params
    out = {k: v for k, v in snakemake.output.items() if k != "batch"}
    stats_figures(p.tables, i.milo, p.de, p.hypotheses, out, abundance_fdr=p.abundance_fdr, milo_fdr=p.milo_fdr,
                  de_fdr=p.de_fdr)
    batches = donor_batches(read_samples(i.samples, complications=[]), batch_key=p.batch_key)
    batch_plot(pd.read_csv(i.batch, sep="\t"), pd.read_csv(i.counts, sep="\t", index_col=0), batches,
               snakemake.output.batch, fdr=p.abundance_fdr)
