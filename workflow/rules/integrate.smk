rule integrate:
    input:
        f"{OUT}/cohort/merged.h5mu",
    output:
        f"{OUT}/cohort/integrated.h5mu",
    log:
        f"{OUT}/logs/integrate.log",
    benchmark:
        f"{OUT}/benchmarks/integrate.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb_from_input(3000, 6),
        runtime=120,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/step.py"
