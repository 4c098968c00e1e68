rule abundance:
    input:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        sheet=SHEET,
    output:
        counts=f"{OUT}/abundance/donor_state_counts.tsv",
        results=f"{OUT}/abundance/composition_tests.tsv",
        provenance=multiext(f"{OUT}/abundance/", "donor_state_counts.tsv.provenance.json",
                            "composition_tests.tsv.provenance.json"),
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
        "../scripts/step.py"
