"""Rule reference_model: the reference model for the cohort's genes and antibodies, trained once (sscsig.annotate)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.annotate import MODEL_SETTINGS, load_reference, train_reference_model
    from sscsig.io import read_modality
    from sscsig.mapping import save_reference_model
    from sscsig.protein import complete_panel

    i, p, r = snakemake.input, snakemake.params, dict(snakemake.params.reference)
    ref, ref_prot, _ = load_reference(**{k: r[k] for k in ("path", "label_key", "lineage_key", "batch_key", "labels")})
    genes = read_modality(i.h5mu, "rna", x=None).var_names  # the cohort's feature names, not its cells
    prot = read_modality(i.h5mu, "prot", x=None)
    model = train_reference_model(genes, prot.var_names[complete_panel(prot)], ref, ref_prot,
                                  **{k: r[k] for k in MODEL_SETTINGS}, seed=p.seed, threads=snakemake.threads)
    save_reference_model(model, snakemake.output[0])  # a failed or killed job's folder is removed by Snakemake
