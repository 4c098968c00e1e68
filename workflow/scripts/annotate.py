"""Rule annotate: lineages and cell states from marker scores, a labelled reference, or both (sscsig.annotate)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import json

    import mudata as md

    from sscsig.annotate import annotate, annotate_by_reference, load_markers, load_reference, subcluster
    from sscsig.io import stamp, write_h5mu

    i, p, mdata = snakemake.input, snakemake.params, md.read_h5mu(snakemake.input.h5mu)
    if p.method in ("reference", "both"):
        r = dict(p.reference)
        ref, ref_prot, labels = load_reference(**{k: r.pop(k) for k in ("path", "label_key", "lineage_key",
                                                                        "batch_key", "labels")})
        report = annotate_by_reference(mdata, ref, ref_prot, query_batch_key=p.batch_key, **r, seed=p.seed,
                                       threads=snakemake.threads)
        report["reference_labels"] = labels.to_dict(orient="records")
    if p.method == "both":  # the reference's lineages, the marker file's states within them
        mdata.obs["cell_state_reference"] = mdata.obs["cell_state"].copy()
        report = annotate(mdata, load_markers(i.markers), **p.annotation, seed=p.seed,
                          lineage=mdata.obs["lineage"].astype(str).to_numpy(),
                          lineage_confidence=mdata.obs["lineage_confidence"].to_numpy()) | {"reference": report}
    elif p.method == "markers":
        report = annotate(mdata, load_markers(i.markers), **p.annotation, seed=p.seed)
    subcluster(mdata, seed=p.seed)
    mdata.uns["annotation_report"] = json.dumps(report, default=int)
    stamp(mdata, snakemake.config, step="annotate")
    write_h5mu(mdata, snakemake.output[0])
