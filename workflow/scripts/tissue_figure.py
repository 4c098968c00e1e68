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
    shares = pd.read_csv(i.donors, sep="\t")
    # colour donors by the first complication that splits the tissue's donors
    groups = None
    for c in p.complications:
        flags = mdata.obs.groupby("donor", observed=True)[c].first() if c in mdata.obs else None
        if flags is not None and flags.astype(str).nunique() > 1:
            groups = pd.Series(np.where(flags.astype(str) == "True", c, f"no {c}"), index=flags.index)
            break
    tissue_plot(mdata.obs, mdata.obsm["X_mapped"], blood.obs, blood.obsm["X_mapped"], expression, shares,
                snakemake.output.png, tissue=tissue, donor_groups=groups, seed=p.seed)
