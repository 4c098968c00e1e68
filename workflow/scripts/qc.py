"""Rule qc: one sample's quality control (sscsig.qc)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig import io
    from sscsig.qc import qc_sample
    from sscsig.report import qc_sample_plot

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    sample = snakemake.wildcards.sample
    mdata = io.read_sample(i.data, sample=sample, **p.features)
    empty = io.read_sample(i.raw[0], sample=sample, **p.features) if len(i.raw) else None
    res = qc_sample(mdata, **p.qc, seed=p.seed, empty=empty)
    io.stamp(res.kept, snakemake.config, step="qc")
    io.write_h5mu(res.kept, o.h5mu)
    io.write_tsv(res.flags, o.cells, index=True)  # provenance: in the h5mu written beside it
    qc_sample_plot(res.flags, res.thresholds, sample, o.png)
    io.write_json(res.summary, o.summary)
