# Donor-level differential abundance of cell states per contrast, and whether each state's calls follow
# the batches beyond the design (sscsig.stats).
from sscsig.design import design_columns


rule abundance:
    input:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        **DESIGN,
    output:
        counts=f"{OUT}/abundance/donor_state_counts.tsv",
        results=f"{OUT}/abundance/composition_tests.tsv",
        batch=report(f"{OUT}/abundance/batch_association.tsv", category="Abundance",
                     caption="../report/batch_association.rst"),
        provenance=multiext(f"{OUT}/abundance/", "donor_state_counts.tsv.provenance.json",
                            "composition_tests.tsv.provenance.json", "batch_association.tsv.provenance.json"),
    params:
        abundance=section("abundance", drop=("fdr",)),  # fdr: the figures' threshold
        batch_key=config["integration"]["batch_key"],
        design_columns=design_columns(config["contrasts"], config["complications"]),
        fdr=config["abundance"]["fdr"],
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
