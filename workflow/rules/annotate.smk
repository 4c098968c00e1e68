# Cell states from marker scores, or from a labelled reference the user supplies (sscsig.annotate).
from sscsig.annotate import MODEL_SETTINGS, marker_options
from sscsig.design import design_columns

# annotation.method reference / both: the reference model, trained once for the reference and the cohort's
# panel (the merged cohort's genes and antibodies, so it trains beside integrate); annotate maps onto it, and
# changing the mapping's settings or the marker file does not train it again
REFERENCE_MODEL = [f"{OUT}/cohort/reference_model"] if REFERENCE_FILES else []
# its params: the reference's reading and the model's training, not the mapping's (min_probability, classifier...)
MODEL_PARAMS = {k: v for k, v in config["annotation"]["reference"].items()
                if k in ("path", "label_key", "lineage_key", "batch_key", "labels", *MODEL_SETTINGS)}


rule reference_model:
    input:
        h5mu=f"{OUT}/cohort/merged.h5mu",
        reference=REFERENCE_FILES,
    output:
        directory(f"{OUT}/cohort/reference_model"),
    params:
        reference=MODEL_PARAMS,
        seed=config["seed"],
    log:
        f"{OUT}/logs/reference_model.log",
    benchmark:
        f"{OUT}/benchmarks/reference_model.tsv"
    threads: 2
    resources:
        # the reference's counts in memory; of the cohort only the genes' and antibodies' names are read
        mem_mb=lambda wildcards, input, attempt: int(2000 + 3 * sum(os.path.getsize(f) for f in input.reference) / 1e6) * attempt,
        runtime=lambda wildcards, input, attempt: 120 * attempt,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/reference_model.py"


rule annotate:
    input:
        h5mu=f"{OUT}/cohort/integrated.h5mu",
        markers=config["annotation"]["markers"],
        reference=REFERENCE_FILES,
        model=REFERENCE_MODEL,
        standin_table=config["annotation"]["standin_table"] or [],
        merge_report=f"{OUT}/cohort/merge_report.json",
    output:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        panel_evidence=report(f"{OUT}/cohort/panel_evidence.tsv", category="Annotation",
                              caption="../report/panel_evidence.rst"),
        state_separation=report(f"{OUT}/cohort/state_separation.tsv", category="Annotation",
                                caption="../report/state_separation.rst"),
    params:
        # the design columns a per-group programme background (substate_group_key) is checked against
        annotation=marker_options(config["annotation"],
                                  design_columns=design_columns(config["contrasts"], config["complications"])),
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
