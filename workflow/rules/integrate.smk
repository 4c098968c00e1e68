INTEGRATION = config.get("integration", {})
TOTALVI_MODEL = (
    [f"{OUT}/cohort/totalvi_model"]
    if INTEGRATION.get("method", "totalvi") == "totalvi"
    and INTEGRATION.get("totalvi", {}).get("save_model", True)
    else []
)


rule integrate:
    input:
        f"{OUT}/cohort/merged.h5mu",
    output:
        h5mu=f"{OUT}/cohort/integrated.h5mu",
        model=[directory(p) for p in TOTALVI_MODEL],
    log:
        f"{OUT}/logs/integrate.log",
    benchmark:
        f"{OUT}/benchmarks/integrate.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb_from_input(1500, 4.5),
        runtime=runtime_from_input(30, 40),
        # totalVI trains on a GPU where the config asks for one (Slurm: --gpus=1 via the plugin)
        gpu=1 if INTEGRATION.get("gpu", False) else 0,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/step.py"
