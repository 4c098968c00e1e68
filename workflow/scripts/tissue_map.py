"""Rule tissue_map: tissue-only types and the mapping of one tissue's cells onto the blood states (sscsig.tissue)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import mudata as md
    import pandas as pd

    from sscsig.io import stamp, write_h5mu, write_tsv
    from sscsig.tissue import load_tissue_markers, map_tissue, read_tissue

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    tissue = snakemake.wildcards.tissue
    donors = pd.read_csv(i.samples, sep="\t", dtype=str).set_index("sample")["donor"].to_dict()
    mdata = read_tissue(i.qc, donors, tissue_name=tissue)
    mdata, blood_latent, types = map_tissue(md.read_h5mu(i.blood), mdata, load_tissue_markers(i.markers),
                                            tissue_name=tissue, min_type_score=p.min_type_score, map_params=p.map,
                                            batch_key=p.batch_key, seed=p.seed, model=i.model,
                                            threads=snakemake.threads)
    stamp(mdata, snakemake.config, step="tissue_map")
    write_h5mu(mdata, o.h5mu)
    blood_latent.write_h5ad(o.blood_latent)
    write_tsv(types, o.types, config=snakemake.config, step="tissue_map")
