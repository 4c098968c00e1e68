rule simulate:
    output:
        sheet=f"{OUT}/demo/samples.tsv",
        data=[DATA[s] for s in SAMPLES],
        cells=f"{OUT}/demo/truth/cells.tsv",
        effects=f"{OUT}/demo/truth/effects.tsv",
    params:
        out_dir=f"{OUT}/demo",
    log:
        f"{OUT}/logs/simulate.log",
    benchmark:
        f"{OUT}/benchmarks/simulate.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/step.py"
