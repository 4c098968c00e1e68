# Donors sampled more than once (sheet column timepoint; sscsig.stats): the hypothesis states' shares
# and the biomarker models' risk per sample over time.


rule longitudinal:
    input:
        h5mu=f"{OUT}/cohort/annotated.h5mu",
        composition=f"{OUT}/abundance/composition_tests.tsv",
        samples=DESIGN["samples"],
        models=expand(f"{OUT}/biomarker/{{c}}/model", c=COMPLICATIONS if config["biomarker"]["enabled"] else []),
    output:
        tsv=f"{OUT}/biomarker/longitudinal.tsv",
        provenance=f"{OUT}/biomarker/longitudinal.tsv.provenance.json",
        png=report(f"{OUT}/figures/longitudinal.png", category="Biomarkers", caption="../report/longitudinal.rst"),
    params:
        states=[h["cell_state"] for h in config["hypotheses"]],
        # the first contrast of each complication is its primary one (the biomarker model scored)
        models={c: contrasts_of(config["contrasts"], c)[0] for c in COMPLICATIONS if contrasts_of(config["contrasts"], c)},
        seed=config["seed"],
    log:
        f"{OUT}/logs/longitudinal.log",
    benchmark:
        f"{OUT}/benchmarks/longitudinal.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 1.3),
        runtime=runtime_from_input(30, 30),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/longitudinal.py"
