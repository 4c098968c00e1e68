# Cell states from marker scores (sscsig.annotate).


rule annotate:
    input:
        h5mu=f"{OUT}/cohort/integrated.h5mu",
        markers=config["annotation"]["markers"],
    output:
        f"{OUT}/cohort/annotated.h5mu",
    params:
        annotation=section("annotation", drop=("markers",)),
        seed=config["seed"],
    log:
        f"{OUT}/logs/annotate.log",
    benchmark:
        f"{OUT}/benchmarks/annotate.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 2),
        runtime=runtime_from_input(60, 60),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/annotate.py"
