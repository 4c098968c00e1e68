"""Rule tissue_figure: one tissue on the blood cohort, genes along pseudotime, tissue vs blood shares (sscsig.report)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import anndata as ad
    import mudata as md
    import numpy as np
    import pandas as pd

    from sscsig.report import tissue_plot
    from sscsig.tissue import log_cp10k

    i, p = snakemake.input, snakemake.params
    tissue = snakemake.wildcards.tissue
    mdata = md.read_h5mu(i.h5mu)
    blood = ad.read_h5ad(i.blood_latent)
    genes = [g for g in p.genes if g in mdata["rna"].var_names]
    x = log_cp10k(mdata["rna"])[:, mdata["rna"].var_names.get_indexer(genes)]
    expression = pd.DataFrame(x.toarray(), index=mdata.obs_names, columns=genes)
    shares = pd.read_csv(i.shares, sep="\t")
    donors = pd.read_csv(i.donors, sep="\t", index_col="donor").reindex(shares["donor"].astype(str).unique())
    split = [c for c in p.complications if c in donors and donors[c].astype(str).nunique() > 1]
    groups = None  # donors coloured by the first complication that splits the tissue's donors
    if split:
        groups = pd.Series(np.where(donors[split[0]].astype(str) == "True", split[0], f"no {split[0]}"),
                           index=donors.index)
    tissue_plot(mdata.obs, mdata.obsm["X_mapped"], blood.obs, blood.obsm["X_mapped"], expression, shares,
                snakemake.output.png, tissue=tissue, donor_groups=groups, seed=p.seed)
