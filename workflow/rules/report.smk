rule report_figures:
    input:
        annotated=f"{OUT}/cohort/annotated.h5mu",
        counts=f"{OUT}/abundance/donor_state_counts.tsv",
        sheet=SHEET,
        tables=expand(f"{OUT}/tables/complication_{{c}}.tsv", c=COMPLICATIONS),
        mds=expand(f"{OUT}/tables/complication_{{c}}.md", c=COMPLICATIONS),
        qc_png=f"{OUT}/qc/summary.png",
        qc_samples=expand(f"{OUT}/qc/figures/{{sample}}.png", sample=SAMPLES),
        merge_report=f"{OUT}/cohort/merge_report.json",
    output:
        html=f"{OUT}/summary.html",
        figures=report(directory(f"{OUT}/figures"), category="Figures",
                       caption="../report/figures.rst", patterns=["{name}.png"]),
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/step.py"
