# Per-sample quality control (sscsig.qc) and the cohort's QC summary. Tissue samples go through the
# same rule with their tissue's settings (config tissue.tissues.<tissue>.qc over config qc).


rule qc:
    input:
        data=sample_data,
        raw=sample_raw,
    output:
        h5mu=f"{OUT}/qc/{{sample}}.h5mu",
        png=report(f"{OUT}/qc/figures/{{sample}}.png", category="QC",
                   subcategory="per sample", caption="../report/qc_sample.rst"),
        cells=f"{OUT}/qc/{{sample}}.cells.tsv",
        summary=f"{OUT}/qc/{{sample}}.summary.json",
    params:
        qc=qc_settings,
        features=config["features"],
        seed=config["seed"],
    log:
        f"{OUT}/logs/qc/{{sample}}.log",
    benchmark:
        f"{OUT}/benchmarks/qc/{{sample}}.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 50),
        runtime=runtime_from_input(30, 30),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/qc.py"


rule qc_summary:
    input:
        summaries=expand(f"{OUT}/qc/{{sample}}.summary.json", sample=SAMPLES + list(TISSUE_OF)),
    output:
        tsv=f"{OUT}/qc/summary.tsv",
        provenance=f"{OUT}/qc/summary.tsv.provenance.json",
        png=report(f"{OUT}/qc/summary.png", category="QC", caption="../report/qc.rst"),
    log:
        f"{OUT}/logs/qc_summary.log",
    benchmark:
        f"{OUT}/benchmarks/qc_summary.tsv"
    resources:
        mem_mb=mem_mb_fixed(1000),
        runtime=10,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/qc_summary.py"
