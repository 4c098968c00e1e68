# The kept cells of every sample in one cohort MuData, annotated with the sheet's columns (sscsig.qc).


rule merge:
    input:
        h5mu=expand(f"{OUT}/qc/{{sample}}.h5mu", sample=SAMPLES),
        summaries=expand(f"{OUT}/qc/{{sample}}.summary.json", sample=SAMPLES),
        samples=f"{OUT}/design/samples.tsv",
    output:
        h5mu=f"{OUT}/cohort/merged.h5mu",
        report=f"{OUT}/cohort/merge_report.json",
        panel=report(f"{OUT}/cohort/panel.tsv", category="QC", caption="../report/panel.rst"),
    params:
        h5mu={s: f"{OUT}/qc/{s}.h5mu" for s in SAMPLES},
        panel_policy=config["qc"]["panel_policy"],
        panel_min_fraction=config["qc"]["panel_min_fraction"],
        complications=COMPLICATIONS,
    log:
        f"{OUT}/logs/merge.log",
    benchmark:
        f"{OUT}/benchmarks/merge.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 2.2),  # concat holds the samples and the cohort: 15.1 GB at 1M cells from 7.5 GB (2.0x)
        runtime=runtime_from_input(30, 30),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/merge.py"
