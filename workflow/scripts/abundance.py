"""Rule abundance: donor-level composition tests of every state per contrast (sscsig.stats)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.design import Design
    from sscsig.io import read_obs, write_tsv
    from sscsig.stats import differential_abundance

    i, o = snakemake.input, snakemake.output
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts, samples=i.samples)
    obs = read_obs(i.h5mu)
    counts, res = differential_abundance(obs[design.cells_in_tests(obs)], design, **snakemake.params.abundance)
    write_tsv(counts, o.counts, index=True, config=snakemake.config, step="abundance")
    write_tsv(res, o.results, config=snakemake.config, step="abundance")
