"""Rule qc_summary: one row per sample of the QC summaries (sscsig.qc), and its figure."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import pandas as pd

    from sscsig.io import read_json, write_tsv
    from sscsig.report import qc_plot

    df = pd.DataFrame([read_json(p) for p in snakemake.input.summaries])
    write_tsv(df, snakemake.output.tsv, config=snakemake.config, step="qc_summary")
    qc_plot(df, snakemake.output.png)
