"""Rule abundance: donor-level composition tests of every state per contrast, and the batch check of
the calls (sscsig.stats)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.design import Design
    from sscsig.io import read_obs, write_tsv
    from sscsig.stats import batch_association, differential_abundance, donor_batches, log_batch_check, state_parents

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts, samples=i.samples)
    obs = read_obs(i.h5mu)
    tested = obs[design.cells_in_tests(obs)]
    counts, res = differential_abundance(tested, design, **p.abundance)
    write_tsv(counts, o.counts, index=True, config=snakemake.config, step="abundance")
    write_tsv(res, o.results, config=snakemake.config, step="abundance")
    batch = batch_association(counts, state_parents(tested), donor_batches(design.samples, batch_key=p.batch_key),
                              design.donors, columns=p.design_columns,
                              min_parent_cells=p.abundance["min_parent_cells"],
                              min_state_cells=p.abundance["min_state_cells"])
    log_batch_check(batch, fdr=p.fdr, columns=p.design_columns)
    write_tsv(batch, o.batch, config=snakemake.config, step="abundance")
