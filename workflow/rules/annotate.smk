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
        # markers: the cohort without its counts (13.3 GB at 901k cells from a 16.6 GB file, benchmarks/chunked.py);
        # reference / both also read the counts and train the mapping
        mem_mb=mem_mb_from_input(1000, 1.0 if config["annotation"]["method"] == "markers" else 2),
        runtime=runtime_from_input(60, 60),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/annotate.py"
