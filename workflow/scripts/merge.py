"""Rule merge: the kept cells of every sample in one cohort MuData (sscsig.qc)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.design import read_samples
    import pandas as pd

    from sscsig.io import stamp, write_h5mu, write_json, write_tsv
    from sscsig.qc import merge_qc_outputs

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    sheet = read_samples(i.samples, complications=p.complications)
    mdata, report = merge_qc_outputs(p.h5mu, list(i.summaries), sheet, panel_policy=p.panel_policy,
                                     panel_min_fraction=p.panel_min_fraction)
    stamp(mdata, snakemake.config, step="merge")
    write_h5mu(mdata, o.h5mu)
    write_json(report, o.report, sort_keys=True)
    write_tsv(pd.DataFrame(report["panel"]), o.panel, config=snakemake.config, step="merge")
