# Blood biomarkers per complication (sscsig.stats): nested-CV penalised logistic models of the donors'
# state shares and signature scores vs a covariates-only baseline, the composition PCA, final models.


rule biomarker:
    input:
        counts=f"{OUT}/abundance/donor_state_counts.tsv",
        composition=f"{OUT}/abundance/composition_tests.tsv",
        scores=f"{OUT}/signatures/donor_scores.tsv",
        **DESIGN,
    output:
        metrics=f"{OUT}/biomarker/{{complication}}/metrics.tsv",
        predictions=f"{OUT}/biomarker/{{complication}}/predictions.tsv",
        features=f"{OUT}/biomarker/{{complication}}/features.tsv",
        pca=f"{OUT}/biomarker/{{complication}}/pca.tsv",
        loadings=f"{OUT}/biomarker/{{complication}}/pca_loadings.tsv",
        provenance=multiext(f"{OUT}/biomarker/{{complication}}/", "metrics.tsv.provenance.json",
                            "predictions.tsv.provenance.json", "features.tsv.provenance.json",
                            "pca.tsv.provenance.json", "pca_loadings.tsv.provenance.json"),
        model=directory(f"{OUT}/biomarker/{{complication}}/model"),
        roc=report(f"{OUT}/figures/biomarker_roc_{{complication}}.png", category="Biomarkers",
                   caption="../report/biomarker_roc.rst"),
        pca_png=report(f"{OUT}/figures/biomarker_pca_{{complication}}.png", category="Biomarkers",
                       caption="../report/biomarker_pca.rst"),
    params:
        biomarker=section("biomarker", drop=("enabled",)),
        signatures=SIGNATURES,
        min_cells_per_donor=config["signature_params"]["min_cells_per_donor"],
        seed=config["seed"],
    log:
        f"{OUT}/logs/biomarker/{{complication}}.log",
    benchmark:
        f"{OUT}/benchmarks/biomarker/{{complication}}.tsv"
    threads: 2
    resources:
        mem_mb=mem_mb_fixed(2000),
        runtime=60,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/biomarker.py"
