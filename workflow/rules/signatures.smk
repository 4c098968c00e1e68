# Donor-level gene-signature scores in their states, tested per contrast (sscsig.stats).


rule signatures:
    input:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        **DESIGN,
    output:
        scores=f"{OUT}/signatures/donor_scores.tsv",
        tests=f"{OUT}/signatures/tests.tsv",
        coverage=f"{OUT}/signatures/gene_coverage.tsv",
        provenance=multiext(f"{OUT}/signatures/", "donor_scores.tsv.provenance.json",
                            "tests.tsv.provenance.json", "gene_coverage.tsv.provenance.json"),
    params:
        signatures=SIGNATURES,
        signature_params=config["signature_params"],
        seed=config["seed"],
    log:
        f"{OUT}/logs/signatures.log",
    benchmark:
        f"{OUT}/benchmarks/signatures.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 0.6),  # the cells in the tests' log-normalised RNA: 8.7 GB at 901k cells, 15.9 GB file
        runtime=runtime_from_input(30, 30),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/signatures.py"
