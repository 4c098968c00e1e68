# Integration of RNA and protein across batches, clustering and UMAP (sscsig.integrate), and the
# integration metrics of the annotated cohort.
TOTALVI_MODEL = (
    [f"{OUT}/cohort/totalvi_model"]
    if config["integration"]["method"] == "totalvi" and config["integration"]["totalvi"]["save_model"]
    else []
)


rule integrate:
    input:
        f"{OUT}/cohort/merged.h5mu",
    output:
        h5mu=f"{OUT}/cohort/integrated.h5mu",
        model=[directory(p) for p in TOTALVI_MODEL],
    params:
        integration=section("integration", drop=("compare", "gpu")),  # compare: the metrics'; gpu: resources
        clustering=config["clustering"],
        seed=config["seed"],
    log:
        f"{OUT}/logs/integrate.log",
    benchmark:
        f"{OUT}/benchmarks/integrate.tsv"
    threads: 2
    resources:
        # counts read whole once (HVGs), else in blocks from disk: 18.6 GB in the 1M-cell run (880k cells
        # after QC, 7.4 GB merged file; 13.6 GB at 901k for the library calls alone, benchmarks/chunked.py)
        mem_mb=mem_mb_from_input(1500, 2.4),
        runtime=runtime_from_input(30, 40),
        # totalVI trains on a GPU where the config asks for one (Slurm: --gpus=1 via the plugin)
        gpu=1 if config["integration"]["gpu"] else 0,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/integrate.py"


rule integration_metrics:
    input:
        annotated=f"{OUT}/cohort/annotated.h5mu",
    output:
        tsv=f"{OUT}/integration/metrics.tsv",
        provenance=f"{OUT}/integration/metrics.tsv.provenance.json",
        png=report(f"{OUT}/figures/integration_metrics.png", category="Integration",
                   caption="../report/integration_metrics.rst"),
    params:
        method=config["integration"]["method"],
        batch_key=config["integration"]["batch_key"],
        compare=config["integration"]["compare"],
        wnn_neighbors=config["integration"]["wnn_neighbors"],
        seed=config["seed"],
    log:
        f"{OUT}/logs/integration_metrics.log",
    benchmark:
        f"{OUT}/benchmarks/integration_metrics.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 0.7),
        runtime=runtime_from_input(20, 20),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/integration_metrics.py"
