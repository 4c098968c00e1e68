"""Rule annotate: lineages and cell states from marker scores (sscsig.annotate)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import json

    import mudata as md

    from sscsig.annotate import annotate, load_markers, subcluster
    from sscsig.io import stamp, write_h5mu

    i, p = snakemake.input, snakemake.params
    mdata = md.read_h5mu(i.h5mu)
    report = annotate(mdata, load_markers(i.markers), **p.annotation, seed=p.seed)
    subcluster(mdata, seed=p.seed)
    mdata.uns["annotation_report"] = json.dumps(report, default=int)
    stamp(mdata, snakemake.config, step="annotate")
    write_h5mu(mdata, snakemake.output[0])
