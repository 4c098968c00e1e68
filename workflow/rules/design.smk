# The study design (sscsig.design): the validated sheet (blood samples; tissue samples apart), one row
# per donor, each contrast's case and control donors, and the design's warnings; every later rule
# reads these instead of the sheet.


rule design:
    input:
        sheet=SHEET,
    output:
        **DESIGN,
        tissue_samples=TISSUE_DESIGN,
        provenance=multiext(f"{OUT}/design/", "samples.tsv.provenance.json", "donors.tsv.provenance.json",
                            "groups.tsv.provenance.json", "contrasts.tsv.provenance.json",
                            "tissue_samples.tsv.provenance.json"),
    params:
        complications=COMPLICATIONS,
        contrasts=config["contrasts"],
        batch_key=config["integration"]["batch_key"],
        baseline=config["longitudinal"]["baseline"],
        tissues=list(config["tissue"]["tissues"]),
    log:
        f"{OUT}/logs/design.log",
    benchmark:
        f"{OUT}/benchmarks/design.tsv"
    resources:
        mem_mb=mem_mb_fixed(1000),
        runtime=10,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/design.py"
