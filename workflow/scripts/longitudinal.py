"""Rule longitudinal: states' shares and biomarker risk per sample of donors sampled over time (sscsig.stats)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    from pathlib import Path

    import pandas as pd

    from sscsig.io import read_modality, read_obs, write_tsv
    from sscsig.report import longitudinal_plot
    from sscsig.stats import load_model, sample_trajectories

    i, o, p = snakemake.input, snakemake.output, snakemake.params
    parents = pd.read_csv(i.composition, sep="\t").drop_duplicates("cell_state").set_index("cell_state")["parent"]
    models = {contrast: load_model(Path(d) / contrast) for d in i.models for comp, contrast in p.models.items()
              if Path(d).parent.name == comp and (Path(d) / contrast / "model.joblib").exists()}
    table = sample_trajectories(read_obs(i.h5mu), read_modality(i.h5mu, "rna"), pd.read_csv(i.samples, sep="\t"),
                                parents.to_dict(), p.states, models, seed=p.seed)
    write_tsv(table, o.tsv, config=snakemake.config, step="longitudinal")
    longitudinal_plot(table, o.png)
