# sscsig: patient-level single-cell CITE-seq signatures of clinical complications.
# Run:  snakemake --cores N                       (demo cohort, see config/config.yaml)
#       snakemake --cores N --config samples=config/samples.tsv outdir=results/mycohort
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schemas/config.schema.yaml")

from sscsig.config import cohort_mode, load_sample_sheet, validate_config  # noqa: E402
from sscsig.simulate import design, sample_path  # noqa: E402

validate_config(config)
OUT = config["outdir"].rstrip("/")
MODE = cohort_mode(config)
if MODE == "demo":
    SHEET = f"{OUT}/demo/samples.tsv"
    SAMPLES = list(design(src_oldest=config.get("demo", {}).get("src_oldest", False))["sample"])
    DATA = {s: str(sample_path(f"{OUT}/demo", s)) for s in SAMPLES}
    RAW = {s: str(sample_path(f"{OUT}/demo", s, raw=True)) for s in SAMPLES} if config.get(
        "demo", {}).get("with_raw", False) else {}
else:
    SHEET = config["samples"]
    _sheet = load_sample_sheet(SHEET, config)
    validate(_sheet.drop(columns=config["complications"]), "config/schemas/samples.schema.yaml")
    SAMPLES = list(_sheet["sample"])
    DATA = dict(zip(_sheet["sample"], _sheet["path"]))
    RAW = {s: r for s, r in zip(_sheet["sample"], _sheet.get("raw_path", [""] * len(_sheet)))
           if isinstance(r, str) and r}
COMPLICATIONS = list(config["complications"])
CONTRASTS = list(config["contrasts"])


wildcard_constraints:
    sample="|".join(SAMPLES) if SAMPLES else "NONE",
    complication="|".join(COMPLICATIONS),
    contrast="|".join(CONTRASTS),


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


if MODE == "demo":

    include: "workflow/rules/simulate.smk"


include: "workflow/rules/qc.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/integrate.smk"
include: "workflow/rules/annotate.smk"
include: "workflow/rules/abundance.smk"
include: "workflow/rules/milo.smk"
include: "workflow/rules/pseudobulk.smk"
include: "workflow/rules/signatures.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        expand(f"{OUT}/tables/complication_{{c}}.tsv", c=COMPLICATIONS),
        expand(f"{OUT}/tables/complication_{{c}}.md", c=COMPLICATIONS),
        f"{OUT}/cohort/annotated.h5mu",
        f"{OUT}/qc/summary.tsv",
        f"{OUT}/summary.html",
    default_target: True
