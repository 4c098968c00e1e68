# Cell states from marker scores, or from a labelled reference the user supplies (sscsig.annotate).


rule annotate:
    input:
        h5mu=f"{OUT}/cohort/integrated.h5mu",
        markers=config["annotation"]["markers"],
        reference=REFERENCE_FILES,
        standin_table=config["annotation"]["standin_table"] or [],
        merge_report=f"{OUT}/cohort/merge_report.json",
    output:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        panel_evidence=report(f"{OUT}/cohort/panel_evidence.tsv", category="Annotation",
                              caption="../report/panel_evidence.rst"),
    params:
        annotation=section("annotation", drop=("markers", "method", "reference")),
        method=config["annotation"]["method"],
        reference=config["annotation"]["reference"],
        batch_key=config["integration"]["batch_key"],
        seed=config["seed"],
    log:
        f"{OUT}/logs/annotate.log",
    benchmark:
        f"{OUT}/benchmarks/annotate.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb_from_input(1000, 2),
        runtime=runtime_from_input(60, 60),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/annotate.py"
