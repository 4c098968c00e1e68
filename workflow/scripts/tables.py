"""Rule tables: one complication's table with the run's warnings on top (sscsig.report)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import pandas as pd

    from sscsig.io import read_json
    from sscsig.report import (complication_table, read_complication_inputs, separation_warnings, table_html, to_markdown,
                               write_table)
    from sscsig.stats import batch_warnings, stress_warnings

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    comp = snakemake.wildcards.complication
    table = complication_table(**read_complication_inputs(i.abundance, i.signatures, milo_states=i.milo,
                                                          de_summaries=list(i.de), stress=list(i.stress)),
                               complication=comp, contrast_order=p.contrast_order, hypotheses=p.hypotheses)
    warnings = (read_json(i.merge_report)["warnings"]
                + read_json(i.design_warnings) + stress_warnings(table, fdr=p.fdr, confounding_pvalue=p.confounding_pvalue)
                + separation_warnings(table, pd.read_csv(i.separation, sep="\t"), fdr=p.fdr)
                + batch_warnings(table, pd.read_csv(i.batch, sep="\t"), fdr=p.fdr))
    md = to_markdown(table, complication=comp, warnings=warnings, milo_fdr=p.milo_fdr, de_fdr=p.de_fdr)
    write_table(table, o.tsv, md, o.md, snakemake.config, warnings=warnings)
    table_html(table, comp, o.html, warnings=warnings)
