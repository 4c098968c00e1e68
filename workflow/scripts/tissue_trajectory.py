"""Rule tissue_trajectory: blood monocytes -> tissue macrophages, and the genes along it (sscsig.tissue)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import anndata as ad
    import mudata as md

    from sscsig.io import write_json, write_tsv
    from sscsig.tissue import tissue_trajectory

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    trends, entry, pseudotime, facts = tissue_trajectory(md.read_h5mu(i.h5mu), ad.read_h5ad(i.blood_latent),
                                                         tissue_name=snakemake.wildcards.tissue, **p.trajectory,
                                                         seed=p.seed)
    write_tsv(trends, o.trends, config=snakemake.config, step="tissue_trajectory", extra={"facts": facts})
    write_tsv(entry, o.entry, config=snakemake.config, step="tissue_trajectory")
    write_tsv(pseudotime.rename_axis("cell").reset_index(), o.pseudotime, config=snakemake.config,
              step="tissue_trajectory")
    write_json(facts, o.facts)
