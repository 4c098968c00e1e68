"""Rule stress: per-sample handling-stress scores and stress-adjusted composition tests (sscsig.stats)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import pandas as pd

    from sscsig.design import Design
    from sscsig.io import read_modality, read_obs, write_tsv
    from sscsig.report import stress_plot
    from sscsig.stats import parent_stress, sample_stress, stress_adjusted_tests, stress_scores

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    design = Design.read(donors=i.donors, groups=i.groups, contrasts=i.contrasts, samples=i.samples,
                         complications=p.complications)
    obs = read_obs(i.h5mu)
    score, used = stress_scores(read_modality(i.h5mu, "rna"), p.genes, seed=p.seed)
    keep = design.cells_in_tests(obs)
    parents = pd.read_csv(i.composition, sep="\t").drop_duplicates("cell_state").set_index("cell_state")["parent"]
    samples = sample_stress(obs, score, lineage=p.lineage, batch_key=p.batch_key)
    adjusted = stress_adjusted_tests(pd.read_csv(i.counts, sep="\t", index_col=0), parents.to_dict(), design,
                                     parent_stress(obs[keep], score[keep], parents.to_dict()), **p.abundance,
                                     max_vif=p.max_vif)
    write_tsv(samples, o.samples, config=snakemake.config, step="stress", extra={"genes_scored": used})
    write_tsv(adjusted, o.adjusted, config=snakemake.config, step="stress")
    stress_plot(samples, design.donors, p.complications, o.png, lineage=p.lineage)
