rule merge:
    input:
        h5mu=expand(f"{OUT}/qc/{{sample}}.h5mu", sample=SAMPLES),
        summaries=expand(f"{OUT}/qc/{{sample}}.summary.json", sample=SAMPLES),
        sheet=SHEET,
    output:
        h5mu=f"{OUT}/cohort/merged.h5mu",
        report=f"{OUT}/cohort/merge_report.json",
    log:
        f"{OUT}/logs/merge.log",
    benchmark:
        f"{OUT}/benchmarks/merge.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 2.5),
        runtime=runtime_from_input(30, 30),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/step.py"
