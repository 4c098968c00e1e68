rule tables:
    input:
        abundance=f"{OUT}/abundance/composition_tests.tsv",
        signatures=f"{OUT}/signatures/tests.tsv",
        merge_report=f"{OUT}/cohort/merge_report.json",
        sheet=SHEET,
        milo=f"{OUT}/milo/states.tsv",
        de=lambda wc: [f"{OUT}/pseudobulk/{c}.summary.tsv" for c in CONTRASTS
                       if config["contrasts"][c]["complication"] == wc.complication],
    output:
        tsv=f"{OUT}/tables/complication_{{complication}}.tsv",
        html=report(f"{OUT}/tables/complication_{{complication}}.html", category="Tables",
                    caption="../report/table.rst"),
        md=f"{OUT}/tables/complication_{{complication}}.md",
        provenance=f"{OUT}/tables/complication_{{complication}}.tsv.provenance.json",
    log:
        f"{OUT}/logs/tables/{{complication}}.log",
    benchmark:
        f"{OUT}/benchmarks/tables/{{complication}}.tsv"
    resources:
        mem_mb=mem_mb_fixed(1000),
        runtime=10,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/step.py"
