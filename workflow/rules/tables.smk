# One table per complication: every state's composition, Milo, pseudobulk and signature results
# (sscsig.report), with the merge's, the design's and the calls' (state_separation, the batch check)
# warnings on top.


rule tables:
    input:
        abundance=f"{OUT}/abundance/composition_tests.tsv",
        signatures=f"{OUT}/signatures/tests.tsv",
        milo=f"{OUT}/milo/states.tsv",
        de=lambda wc: [f"{OUT}/pseudobulk/{c}.summary.tsv" for c in contrasts_of(config["contrasts"], wc.complication)],
        merge_report=f"{OUT}/cohort/merge_report.json",
        design_warnings=DESIGN["warnings"],
        separation=f"{OUT}/cohort/state_separation.tsv",
        batch=f"{OUT}/abundance/batch_association.tsv",
        stress=[f"{OUT}/abundance/stress_adjusted.tsv"] if config["stress"]["enabled"] else [],
    output:
        tsv=f"{OUT}/tables/complication_{{complication}}.tsv",
        html=report(f"{OUT}/tables/complication_{{complication}}.html", category="Tables",
                    caption="../report/table.rst"),
        md=f"{OUT}/tables/complication_{{complication}}.md",
        provenance=f"{OUT}/tables/complication_{{complication}}.tsv.provenance.json",
    params:
        contrast_order=CONTRASTS,
        hypotheses=config["hypotheses"],
        milo_fdr=config["milo"]["fdr"],
        de_fdr=config["pseudobulk"]["fdr"],
        fdr=config["abundance"]["fdr"],
        confounding_pvalue=config["stress"]["confounding_pvalue"],
    log:
        f"{OUT}/logs/tables/{{complication}}.log",
    benchmark:
        f"{OUT}/benchmarks/tables/{{complication}}.tsv"
    resources:
        mem_mb=mem_mb_fixed(1000),
        runtime=10,
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/tables.py"
