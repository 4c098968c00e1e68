"""Rule integrate: joint RNA + protein space across batches, clusters and UMAP (sscsig.integrate)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import mudata as md
    import torch

    from sscsig.integrate import cluster, integrate
    from sscsig.io import stamp, write_h5mu

    o, p = snakemake.output, snakemake.params
    torch.set_num_threads(snakemake.threads)  # one thread count: the same results wherever the job runs
    mdata = md.read_h5mu(snakemake.input[0])
    integrate(mdata, **p.integration, seed=p.seed, model_dir=o.model[0] if len(o.model) else None)
    cluster(mdata, **p.clustering, seed=p.seed)
    stamp(mdata, snakemake.config, step="integrate")
    write_h5mu(mdata, o.h5mu)
