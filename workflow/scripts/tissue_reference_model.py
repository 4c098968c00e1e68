"""Rule tissue_reference_model: the blood reference model for one tissue's genes and antibodies, trained once (sscsig.tissue)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import mudata as md
    import pandas as pd

    from sscsig.mapping import save_reference_model
    from sscsig.tissue import read_tissue, train_tissue_reference

    i, p, tissue = snakemake.input, snakemake.params, snakemake.wildcards.tissue
    donors = pd.read_csv(i.samples, sep="\t", dtype=str).set_index("sample")["donor"].to_dict()
    model = train_tissue_reference(md.read_h5mu(i.blood), read_tissue(i.qc, donors, tissue_name=tissue),
                                   tissue_name=tissue, map_params=dict(p.map), batch_key=p.batch_key, seed=p.seed,
                                   threads=snakemake.threads)
    save_reference_model(model, snakemake.output[0])  # a failed or killed job's folder is removed by Snakemake
