"""Rule figures_cohort: UMAPs, marker heatmap, composition and signature figures (sscsig.report)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.design import Design
    from sscsig.report import cohort_figures

    i, p = snakemake.input, snakemake.params
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts, complications=p.complications)
    cohort_figures(i.annotated, i.counts, i.scores, design.donors, dict(snakemake.output.items()),
                   complications=p.complications, signatures=p.signatures)
