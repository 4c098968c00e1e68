"""Rule tissue_table: per blood state of one tissue, its share next to the same donors' blood (sscsig.tissue)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import mudata as md
    import pandas as pd

    from sscsig.design import Design
    from sscsig.io import read_obs, stamp, write_h5mu, write_tsv
    from sscsig.tissue import tissue_table

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    tissue = snakemake.wildcards.tissue
    mdata = md.read_h5mu(i.h5mu)
    if i.pseudotime:
        pt = pd.read_csv(i.pseudotime[0], sep="\t", index_col="cell")["pseudotime"]
        mdata.obs["pseudotime"] = pt.reindex(mdata.obs_names).to_numpy()
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts, samples=i.samples,
                         complications=p.complications)
    in_tests = design.samples.loc[design.samples["in_group_tests"], "sample"].astype(str)
    blood = read_obs(i.blood)
    blood = blood[blood["sample"].astype(str).isin(set(in_tests))]  # one blood sample per donor
    clonotypes = pd.read_csv(i.clonotypes[0], sep="\t") if i.clonotypes else None
    table, per_donor, clones = tissue_table(mdata, blood, design.donors, tissue_name=tissue, clonotypes=clonotypes,
                                            complications=p.complications, signatures=p.signatures)
    for df, path in ((table, o.table), (per_donor, o.donors), (clones, o.clones)):
        write_tsv(df, path, config=snakemake.config, step="tissue_table")
    stamp(mdata, snakemake.config, step="tissue_table")
    write_h5mu(mdata, o.h5mu)
