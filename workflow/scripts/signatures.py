"""Rule signatures: per-cell signature scores, donor means in their states, tests per contrast (sscsig.stats)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.design import Design
    from sscsig.io import read_modality, read_obs, write_tsv
    from sscsig.stats import donor_scores, score_cells, test_signatures

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    sp = p.signature_params
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts, samples=i.samples)
    obs = read_obs(i.h5mu)
    keep = design.cells_in_tests(obs)
    cell_scores, cover = score_cells(read_modality(i.h5mu, "rna", cells=keep), p.signatures, seed=p.seed,
                                     min_coverage=sp["min_gene_coverage"])
    scores = donor_scores(obs[keep], cell_scores, p.signatures, min_cells=sp["min_cells_per_donor"])
    tests = test_signatures(scores, design, min_donors_per_group=sp["min_donors_per_group"],
                            min_cells_per_donor=sp["min_cells_per_donor"])
    for table, path in ((scores, o.scores), (tests, o.tests), (cover, o.coverage)):
        write_tsv(table, path, config=snakemake.config, step="signatures")
