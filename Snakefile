# sscsig: patient-level single-cell CITE-seq signatures of clinical complications.
# Run:  snakemake --cores N                       (demo cohort, see config/config.yaml)
#       snakemake --cores N --config samples=config/samples.tsv outdir=results/mycohort
# One rule file per stage (workflow/rules/<stage>.smk), one script per rule (workflow/scripts/<rule>.py),
# each calling one stage of the library (src/sscsig); see README "Layout".
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


report: "workflow/report/workflow.rst"


if MODE == "demo":

    include: "workflow/rules/demo.smk"


include: "workflow/rules/design.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/integrate.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/abundance.smk"
include: "workflow/rules/milo.smk"
include: "workflow/rules/pseudobulk.smk"
include: "workflow/rules/signatures.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/stress.smk"
include: "workflow/rules/biomarker.smk"
include: "workflow/rules/longitudinal.smk"


if TISSUES:

    include: "workflow/rules/tissue.smk"


rule all:
    input:
        expand(f"{OUT}/tables/complication_{{c}}.{{ext}}", c=COMPLICATIONS, ext=["tsv", "md", "html"]),
        f"{OUT}/cohort/annotated.h5mu",
        rules.qc_summary.output,
        expand(f"{OUT}/qc/figures/{{sample}}.png", sample=SAMPLES + list(TISSUE_OF)),
        rules.integration_metrics.output,
        rules.figures_cohort.output,
        rules.figures_stats.output,
        expand(f"{OUT}/biomarker/{{c}}/metrics.tsv", c=COMPLICATIONS if config["biomarker"]["enabled"] else []),
        [f"{OUT}/qc/stress.tsv"] if config["stress"]["enabled"] else [],
        [f"{OUT}/biomarker/longitudinal.tsv"] if LONGITUDINAL else [],
        expand(f"{OUT}/tables/tissue_{{t}}.tsv", t=TISSUES),
        expand(f"{OUT}/tissue/figures/{{t}}.png", t=TISSUES),
        expand(f"{OUT}/tissue/trajectory_{{t}}.tsv", t=TRAJECTORY_TISSUES),
    default_target: True
