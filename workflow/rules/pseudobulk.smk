# Pseudobulk differential expression per state and contrast, protein tests and enrichment
# (sscsig.stats): one job for all contrasts, the donor sums built once, the PyDESeq2 fits spread
# over the job's threads.
PSEUDOBULK = {
    kind: [f"{OUT}/pseudobulk/{c}.{kind}.tsv" for c in CONTRASTS]
    for kind in ("genes", "proteins", "summary", "enrichment")
}


rule pseudobulk:
    input:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        gene_sets=GENE_SETS,
        **DESIGN,
    output:
        **PSEUDOBULK,
        provenance=[f"{p}.provenance.json" for paths in PSEUDOBULK.values() for p in paths],
    params:
        pseudobulk=section("pseudobulk", drop=("gene_sets_file", "min_set_size")),
        min_set_size=config["pseudobulk"]["min_set_size"],
        contrasts=CONTRASTS,
    log:
        f"{OUT}/logs/pseudobulk.log",
    benchmark:
        f"{OUT}/benchmarks/pseudobulk.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb_from_input(2000, 0.1),  # counts read in blocks: ~1.1 GB + 0.6 kB per cell (benchmarks/chunked.py), + the fit workers
        runtime=runtime_from_input(60, 60),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/pseudobulk.py"
