"""Rule tissue_reference_model: the blood reference model for one tissue's genes and antibodies, trained once (sscsig.tissue)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import mudata as md

    from sscsig.io import read_modality
    from sscsig.mapping import save_reference_model
    from sscsig.tissue import train_tissue_reference

    i, p, tissue = snakemake.input, snakemake.params, snakemake.wildcards.tissue
    # the features every sample of the tissue measures (read_tissue keeps these), not its cells
    genes, antibodies = ([set(read_modality(f, m, x=None).var_names) for f in i.qc] for m in ("rna", "prot"))
    model = train_tissue_reference(md.read_h5mu(i.blood), set.intersection(*genes), set.intersection(*antibodies),
                                   tissue_name=tissue, map_params=dict(p.map), batch_key=p.batch_key, seed=p.seed,
                                   threads=snakemake.threads)
    save_reference_model(model, snakemake.output[0])  # a failed or killed job's folder is removed by Snakemake
