"""Rule qc_summary: one row per sample of the QC summaries (sscsig.qc), and its figure."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import json
    from pathlib import Path

    import pandas as pd

    from sscsig.io import write_tsv
    from sscsig.report import qc_plot

    df = pd.DataFrame([json.loads(Path(p).read_text()) for p in snakemake.input.summaries])
    write_tsv(df, snakemake.output.tsv, config=snakemake.config, step="qc_summary")
    qc_plot(df, snakemake.output.png)
