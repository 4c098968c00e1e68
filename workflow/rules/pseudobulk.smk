# Pseudobulk differential expression per state, one job per contrast, and its enrichment (sscsig.stats).


rule pseudobulk:
    input:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        gene_sets=GENE_SETS,
        **DESIGN,
    output:
        genes=f"{OUT}/pseudobulk/{{contrast}}.genes.tsv",
        proteins=f"{OUT}/pseudobulk/{{contrast}}.proteins.tsv",
        summary=f"{OUT}/pseudobulk/{{contrast}}.summary.tsv",
        enrichment=f"{OUT}/pseudobulk/{{contrast}}.enrichment.tsv",
        provenance=multiext(f"{OUT}/pseudobulk/{{contrast}}.", "genes.tsv.provenance.json",
                            "proteins.tsv.provenance.json", "summary.tsv.provenance.json",
                            "enrichment.tsv.provenance.json"),
    params:
        pseudobulk=section("pseudobulk", drop=("gene_sets_file", "min_set_size")),
        min_set_size=config["pseudobulk"]["min_set_size"],
    log:
        f"{OUT}/logs/pseudobulk/{{contrast}}.log",
    benchmark:
        f"{OUT}/benchmarks/pseudobulk/{{contrast}}.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 2),
        runtime=runtime_from_input(60, 60),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/pseudobulk.py"
