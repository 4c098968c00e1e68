# The demo twin (sscsig.demo): simulated libraries, sample sheet and truth, when no sheet is given.


rule simulate:
    output:
        sheet=f"{OUT}/demo/samples.tsv",
        data=[DATA[s] for s in SAMPLES + list(TISSUE_OF)],
        vdj=list(VDJ.values()),
        raw=[RAW[s] for s in RAW],
        cells=f"{OUT}/demo/truth/cells.tsv",
        effects=f"{OUT}/demo/truth/effects.tsv",
        tissue_truth=[f"{OUT}/demo/truth/tissue_cells.tsv", f"{OUT}/demo/truth/vdj_cells.tsv"] if TISSUES else [],
    params:
        demo=config["demo"],
        seed=config["seed"],
    log:
        f"{OUT}/logs/simulate.log",
    benchmark:
        f"{OUT}/benchmarks/simulate.tsv"
    resources:
        mem_mb=mem_mb_fixed(4000),
        runtime=30,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/simulate.py"
