"""Rule integrate: joint RNA + protein space across batches, clusters and UMAP (sscsig.integrate)."""
from sscsig.io import rule_logging

with rule_logging(snakemake):
    import torch

    from sscsig.integrate import cluster, integrate
    from sscsig.io import backed_matrix, read_h5mu, stamp, write_h5mu

    i, o, p = snakemake.input[0], snakemake.output, snakemake.params
    torch.set_num_threads(snakemake.threads)  # one thread count: the same results wherever the job runs
    # the merged raw counts (mod/rna/X) stay on disk: read whole once for the HVGs, else in blocks
    mdata = read_h5mu(i, skip=("mod/rna/X",))
    with backed_matrix(i, "rna", "X") as counts:
        integrate(mdata, **p.integration, seed=p.seed, model_dir=o.model[0] if len(o.model) else None, counts=counts)
    cluster(mdata, **p.clustering, seed=p.seed)
    stamp(mdata, snakemake.config, step="integrate")
    write_h5mu(mdata, o.h5mu, passthrough=i, elements={"mod/rna/layers/counts": "mod/rna/X"})
