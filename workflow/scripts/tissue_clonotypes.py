"""Rule tissue_clonotypes: T-cell clonotypes of a tissue and its donors' blood (sscsig.tissue, scirpy)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.io import write_tsv
    from sscsig.tissue import define_clonotypes

    p = snakemake.params
    cells = define_clonotypes(dict(p.files), donor_of=dict(p.donors), compartment_of=dict(p.compartments))
    write_tsv(cells, snakemake.output[0], config=snakemake.config, step="tissue_clonotypes")
