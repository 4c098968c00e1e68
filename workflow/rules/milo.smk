# Neighbourhood differential abundance (Milo) per contrast (sscsig.stats).


rule milo:
    input:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        **DESIGN,
    output:
        nhoods=f"{OUT}/milo/nhoods.tsv",
        states=f"{OUT}/milo/states.tsv",
        provenance=multiext(f"{OUT}/milo/", "nhoods.tsv.provenance.json", "states.tsv.provenance.json"),
    params:
        milo=config["milo"],
        seed=config["seed"],
    log:
        f"{OUT}/logs/milo.log",
    benchmark:
        f"{OUT}/benchmarks/milo.tsv"
    resources:
        mem_mb=mem_mb_from_input(2000, 0.25),
        runtime=runtime_from_input(60, 60),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/milo.py"
