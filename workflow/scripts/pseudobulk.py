"""Rule pseudobulk: per-state pseudobulk DE, protein tests and enrichment of one contrast (sscsig.stats)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.config import read_gene_sets
    from sscsig.design import Design
    from sscsig.io import read_modality, read_obs, write_tsv
    from sscsig.protein import normalised_protein
    from sscsig.stats import enrichment, run_pseudobulk

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts).subset([snakemake.wildcards.contrast])
    rna = read_modality(i.h5mu, "rna", x="layers/counts")  # raw counts only, not the log-normalised X
    prot, prot_names, _ = normalised_protein(read_modality(i.h5mu, "prot", x=None, layers=("dsb", "clr")))
    genes, prots, summary = run_pseudobulk(rna.X, rna.var_names, read_obs(i.h5mu), prot, prot_names, design,
                                           **p.pseudobulk)
    enr = enrichment(genes, read_gene_sets(i.gene_sets), min_size=p.min_set_size)
    for table, path in ((genes, o.genes), (prots, o.proteins), (enr, o.enrichment), (summary, o.summary)):
        write_tsv(table, path, config=snakemake.config, step="pseudobulk")
