"""Rule milo: neighbourhood differential abundance per contrast (sscsig.stats)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.design import Design
    from sscsig.io import read_elems, write_tsv
    from sscsig.stats import run_milo

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts, samples=i.samples)
    obs, latent = read_elems(i.h5mu, "obs", "obsm/X_integrated")
    keep = design.cells_in_tests(obs)
    nhoods, states = run_milo(obs[keep], latent[keep], design, **p.milo, seed=p.seed)
    write_tsv(nhoods, o.nhoods, config=snakemake.config, step="milo")
    write_tsv(states, o.states, config=snakemake.config, step="milo")
