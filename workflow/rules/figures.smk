# The report's figures of the annotated cohort and of the statistics (sscsig.report).
UMAP_KEYS = ["cell_state", "lineage", "batch", "group", *COMPLICATIONS]


rule figures_cohort:
    input:
        annotated=f"{OUT}/cohort/annotated.h5mu",
        counts=f"{OUT}/abundance/donor_state_counts.tsv",
        scores=f"{OUT}/signatures/donor_scores.tsv",
        **DESIGN,
    output:
        **{
            f"umap_{k}": report(
                f"{OUT}/figures/umap_{k}.png",
                category="Integration" if k == "batch" else "Annotation",
                caption="../report/umap.rst",
            )
            for k in UMAP_KEYS
        },
        heatmap=report(f"{OUT}/figures/heatmap.png", category="Annotation", caption="../report/heatmap.rst"),
        composition=report(f"{OUT}/figures/composition.png", category="Abundance",
                           caption="../report/composition.rst"),
        signatures=report(f"{OUT}/figures/signatures.png", category="Signatures",
                          caption="../report/signatures.rst"),
    params:
        complications=COMPLICATIONS,
        signatures=SIGNATURES,
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
        "../scripts/figures_cohort.py"


rule figures_stats:
    input:
        tables=expand(f"{OUT}/tables/complication_{{c}}.tsv", c=COMPLICATIONS),
        milo=f"{OUT}/milo/nhoods.tsv",
        de=expand(f"{OUT}/pseudobulk/{{contrast}}.genes.tsv", contrast=CONTRASTS),
        batch=f"{OUT}/abundance/batch_association.tsv",
        counts=f"{OUT}/abundance/donor_state_counts.tsv",
        samples=DESIGN["samples"],
    output:
        **{
            f"forest_{c}": report(f"{OUT}/figures/forest_{c}.png", category="Abundance",
                                  caption="../report/forest.rst")
            for c in COMPLICATIONS
        },
        milo=report(f"{OUT}/figures/milo_nhoods.png", category="Abundance", caption="../report/milo.rst"),
        batch=report(f"{OUT}/figures/batch_check.png", category="Abundance", caption="../report/batch_check.rst"),
        **{
            f"volcano_{c}_{s}": report(f"{OUT}/figures/volcano_{c}_{s}.png", category="Signatures",
                                       caption="../report/volcano.rst")
            for c, s in HYPOTHESES
        },
    params:
        tables={c: f"{OUT}/tables/complication_{c}.tsv" for c in COMPLICATIONS},
        de={c: f"{OUT}/pseudobulk/{c}.genes.tsv" for c in CONTRASTS},
        hypotheses=HYPOTHESES,
        abundance_fdr=config["abundance"]["fdr"],
        batch_key=config["integration"]["batch_key"],
        milo_fdr=config["milo"]["fdr"],
        de_fdr=config["pseudobulk"]["fdr"],
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
        "../scripts/figures_stats.py"
