"""Rule figures_stats: forest, Milo and volcano figures of the statistics (sscsig.report)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.report import stats_figures

    p = snakemake.params
    stats_figures(p.tables, snakemake.input.milo, p.de, p.hypotheses, dict(snakemake.output.items()),
                  abundance_fdr=p.abundance_fdr, milo_fdr=p.milo_fdr, de_fdr=p.de_fdr)
