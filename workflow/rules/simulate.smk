rule simulate:
    output:
        sheet=f"{OUT}/demo/samples.tsv",
        data=[DATA[s] for s in SAMPLES],
        raw=[RAW[s] for s in RAW],
        cells=f"{OUT}/demo/truth/cells.tsv",
        effects=f"{OUT}/demo/truth/effects.tsv",
    params:
        out_dir=lambda wildcards, output: str(Path(output.sheet).parent),
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
        "../scripts/step.py"
