# Donor-level differential abundance of cell states per contrast (sscsig.stats).


rule abundance:
    input:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        **DESIGN,
    output:
        counts=f"{OUT}/abundance/donor_state_counts.tsv",
        results=f"{OUT}/abundance/composition_tests.tsv",
        provenance=multiext(f"{OUT}/abundance/", "donor_state_counts.tsv.provenance.json",
                            "composition_tests.tsv.provenance.json"),
    params:
        abundance=section("abundance", drop=("fdr",)),  # fdr: the figures' threshold
    log:
        f"{OUT}/logs/abundance.log",
    benchmark:
        f"{OUT}/benchmarks/abundance.tsv"
    resources:
        mem_mb=mem_mb_fixed(2000),
        runtime=30,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/abundance.py"
