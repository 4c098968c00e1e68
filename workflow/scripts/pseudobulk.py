"""Rule pseudobulk: per-state pseudobulk DE, protein tests and enrichment of every contrast (sscsig.stats)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.config import read_gene_sets
    from sscsig.design import Design
    from sscsig.io import read_modality, read_obs, write_tsv
    from sscsig.protein import normalised_protein
    from sscsig.stats import enrichment, run_pseudobulk

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts, samples=i.samples)
    obs = read_obs(i.h5mu)
    keep = design.cells_in_tests(obs)
    rna = read_modality(i.h5mu, "rna", x="layers/counts")  # raw counts only, not the log-normalised X
    prot, prot_names, _ = normalised_protein(read_modality(i.h5mu, "prot", x=None, layers=("dsb", "clr")))
    genes, prots, summary = run_pseudobulk(rna.X[keep], rna.var_names, obs[keep], prot[keep], prot_names, design,
                                           **p.pseudobulk, n_jobs=snakemake.threads)
    sets = read_gene_sets(i.gene_sets)
    for k, c in enumerate(p.contrasts):  # one set of files per contrast, enrichment (BH) within it
        g = genes[genes["contrast"] == c].reset_index(drop=True)
        for table, path in ((g, o.genes[k]), (prots[prots["contrast"] == c], o.proteins[k]),
                            (enrichment(g, sets, min_size=p.min_set_size), o.enrichment[k]),
                            (summary[summary["contrast"] == c], o.summary[k])):
            write_tsv(table, path, config=snakemake.config, step="pseudobulk")
