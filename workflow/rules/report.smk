UMAP_KEYS = ["cell_state", "lineage", "batch", "group", *COMPLICATIONS]
HYP_PAIRS = [
    (c, h["cell_state"])
    for h in config.get("hypotheses", [])
    for c, spec in config["contrasts"].items()
    if spec.get("complication") == h["complication"]
]


rule figures_cohort:
    input:
        annotated=f"{OUT}/cohort/annotated.h5mu",
        counts=f"{OUT}/abundance/donor_state_counts.tsv",
        scores=f"{OUT}/signatures/donor_scores.tsv",
        sheet=SHEET,
    output:
        **{
            f"umap_{k}": report(
                f"{OUT}/figures/umap_{k}.png",
                category="Integration" if k == "batch" else "Annotation",
                caption="../report/umap.rst",
            )
            for k in UMAP_KEYS
        },
        heatmap=report(f"{OUT}/figures/heatmap.png", category="Annotation",
                       caption="../report/heatmap.rst"),
        composition=report(f"{OUT}/figures/composition.png", category="Abundance",
                           caption="../report/composition.rst"),
        signatures=report(f"{OUT}/figures/signatures.png", category="Signatures",
                          caption="../report/signatures.rst"),
    log:
        f"{OUT}/logs/figures_cohort.log",
    benchmark:
        f"{OUT}/benchmarks/figures_cohort.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 0.7),
        runtime=runtime_from_input(20, 20),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/step.py"


rule integration_metrics:
    input:
        annotated=f"{OUT}/cohort/annotated.h5mu",
    output:
        tsv=f"{OUT}/integration/metrics.tsv",
        provenance=f"{OUT}/integration/metrics.tsv.provenance.json",
        png=report(f"{OUT}/figures/integration_metrics.png", category="Integration",
                   caption="../report/integration_metrics.rst"),
    log:
        f"{OUT}/logs/integration_metrics.log",
    benchmark:
        f"{OUT}/benchmarks/integration_metrics.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 0.7),
        runtime=runtime_from_input(20, 20),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/step.py"


rule figures_stats:
    input:
        tables=expand(f"{OUT}/tables/complication_{{c}}.tsv", c=COMPLICATIONS),
        milo=f"{OUT}/milo/nhoods.tsv",
        de=expand(f"{OUT}/pseudobulk/{{contrast}}.genes.tsv", contrast=CONTRASTS),
    output:
        **{
            f"forest_{c}": report(f"{OUT}/figures/forest_{c}.png", category="Abundance",
                                  caption="../report/forest.rst")
            for c in COMPLICATIONS
        },
        milo=report(f"{OUT}/figures/milo_nhoods.png", category="Abundance", caption="../report/milo.rst"),
        **{
            f"volcano_{c}_{s}": report(f"{OUT}/figures/volcano_{c}_{s}.png", category="Signatures",
                                       caption="../report/volcano.rst")
            for c, s in HYP_PAIRS
        },
    log:
        f"{OUT}/logs/figures_stats.log",
    benchmark:
        f"{OUT}/benchmarks/figures_stats.tsv"
    resources:
        mem_mb=mem_mb_fixed(1500),
        runtime=20,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/step.py"


rule report_figures:
    input:
        qc_png=f"{OUT}/qc/summary.png",
        qc_samples=expand(f"{OUT}/qc/figures/{{sample}}.png", sample=SAMPLES),
        cohort=rules.figures_cohort.output,
        stats=rules.figures_stats.output,
        metrics=rules.integration_metrics.output.png,
        mds=expand(f"{OUT}/tables/complication_{{c}}.md", c=COMPLICATIONS),
        merge_report=f"{OUT}/cohort/merge_report.json",
        sheet=SHEET,
    output:
        html=f"{OUT}/summary.html",
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    resources:
        mem_mb=mem_mb_fixed(1000),
        runtime=10,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/step.py"
