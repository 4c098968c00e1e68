"""Rule annotate: lineages and cell states from marker scores, a labelled reference, or both (sscsig.annotate)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import json
    from sscsig.annotate import annotate, annotate_by_reference, load_markers, load_reference, panel_evidence, state_genes, state_separation, subcluster
    from sscsig.io import read_h5mu, read_json, read_modality, stamp, write_h5mu, write_tsv
    i, p, out = snakemake.input, snakemake.params, snakemake.output  # marker calls use the log-normalised RNA: counts stay on disk
    unused = () if p.method in ("reference", "both") else ("mod/rna/layers/counts",)  # (copied to the output)
    mdata, markers = read_h5mu(i.h5mu, skip=unused), load_markers(i.markers)  # but no_evidence's: the states' genes
    counts = read_modality(i.h5mu, "rna", x="layers/counts", var_names=state_genes(markers)) if unused else None
    if p.method in ("reference", "both"):  # mapped onto the model rule reference_model trained
        r = dict(p.reference)  # the model's own settings are those it was trained with
        ref, ref_prot, labels = load_reference(**{k: r.pop(k) for k in ("path", "label_key", "lineage_key", "batch_key", "labels")})
        report = annotate_by_reference(mdata, ref, ref_prot, query_batch_key=p.batch_key, **r, seed=p.seed,
                                       threads=snakemake.threads, model=i.model[0]) | {"reference_labels": labels.to_dict(orient="records")}
    if p.method == "both":  # the reference's lineages, the marker file's states within them
        mdata.obs["cell_state_reference"] = mdata.obs["cell_state"].copy()
        report = annotate(mdata, markers, **p.annotation, seed=p.seed, lineage=mdata.obs["lineage"].astype(str).to_numpy(),
                          lineage_confidence=mdata.obs["lineage_confidence"].to_numpy()) | {"reference": report}
    elif p.method == "markers":
        report = annotate(mdata, markers, **p.annotation, seed=p.seed, counts=counts)
    tables = {"panel_evidence": panel_evidence(markers, read_json(i.merge_report)["panel"], method=p.method, standins=report.get("transcript_standins")),
              "state_separation": state_separation(mdata, markers, protein_layer=p.annotation["protein_layer"], seed=p.seed)}
    subcluster(mdata, seed=p.seed)
    mdata.uns["annotation_report"] = json.dumps(report | {"panel_evidence": tables["panel_evidence"].to_dict(orient="records")}, default=int)
    for name, table in tables.items():
        write_tsv(table, out[name], config=snakemake.config, step="annotate")
    stamp(mdata, snakemake.config, step="annotate")
    write_h5mu(mdata, out.h5mu, passthrough=i.h5mu, elements=unused)
