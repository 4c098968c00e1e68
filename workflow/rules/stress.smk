# The handling-stress check (sscsig.stats): a dissociation / warm-wait gene set scored per cell, per
# sample and batch, and every composition test re-run with the donors' stress score as a covariate.


rule stress:
    input:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        counts=f"{OUT}/abundance/donor_state_counts.tsv",
        composition=f"{OUT}/abundance/composition_tests.tsv",
        **DESIGN,
    output:
        samples=f"{OUT}/qc/stress.tsv",
        adjusted=f"{OUT}/abundance/stress_adjusted.tsv",
        provenance=[f"{OUT}/qc/stress.tsv.provenance.json", f"{OUT}/abundance/stress_adjusted.tsv.provenance.json"],
        png=report(f"{OUT}/figures/stress.png", category="QC", caption="../report/stress.rst"),
    params:
        genes=STRESS_GENES,
        lineage=config["stress"]["lineage"],
        abundance=section("abundance", drop=("fdr",)),
        max_vif=config["stress"]["max_vif"],
        batch_key=config["integration"]["batch_key"],
        complications=COMPLICATIONS,
        seed=config["seed"],
    log:
        f"{OUT}/logs/stress.log",
    benchmark:
        f"{OUT}/benchmarks/stress.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 0.6),  # the log-normalised RNA once, as signatures (no counts)
        runtime=runtime_from_input(30, 30),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/stress.py"
