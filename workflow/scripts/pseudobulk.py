"""Rule pseudobulk: per-state pseudobulk DE, protein tests and enrichment of every contrast (sscsig.stats)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.config import read_gene_sets
    from sscsig.design import Design
    from sscsig.io import backed_matrix, read_modality, read_obs, write_tsv
    from sscsig.protein import normalised_protein
    from sscsig.stats import enrichment, run_pseudobulk

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts, samples=i.samples)
    obs = read_obs(i.h5mu)
    keep = design.cells_in_tests(obs)
    prot, prot_names, _ = normalised_protein(read_modality(i.h5mu, "prot", x=None, layers=("dsb", "clr")))
    genes_in = read_modality(i.h5mu, "rna", x=None).var_names
    with backed_matrix(i.h5mu, "rna", "layers/counts") as counts:  # raw counts, summed a block of cells at a time
        genes, prots, summary = run_pseudobulk(counts, genes_in, obs, prot, prot_names, design, cells=keep,
                                               **p.pseudobulk, n_jobs=snakemake.threads)
    sets = read_gene_sets(i.gene_sets)
    for k, c in enumerate(p.contrasts):  # one set of files per contrast, enrichment (BH) within it
        g = genes[genes["contrast"] == c].reset_index(drop=True)
        for table, path in ((g, o.genes[k]), (prots[prots["contrast"] == c], o.proteins[k]),
                            (enrichment(g, sets, min_size=p.min_set_size), o.enrichment[k]),
                            (summary[summary["contrast"] == c], o.summary[k])):
            write_tsv(table, path, config=snakemake.config, step="pseudobulk")
