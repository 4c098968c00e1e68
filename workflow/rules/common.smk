# Validation of the config and the sample sheet (once, here), the cohort's samples, and helpers of
# the rule files. A problem with the config, the sheet or an input file's header stops the run here
# with one line naming the key, sample or file, before any job runs and before anything is written.
import os
import sys

import pandas as pd

from sscsig.config import (blood_rows, cohort_mode, load_sample_sheet, resolve_gene_set_file, resolve_signatures,
                           tissue_rows, validate_config)
from sscsig.demo import sample_path, study_design, tissue_design, tissue_sample_path, vdj_design
from sscsig.design import contrasts_of, hypothesis_pairs
from sscsig.errors import InputError
from sscsig.io import check_inputs

try:
    validate_config(config)  # fills in the schema's defaults
    MODE = cohort_mode(config)
    OUT = config["outdir"].rstrip("/")
    SIGNATURES = resolve_signatures(config["signatures"])  # name -> {genes, states}
    GENE_SETS = str(resolve_gene_set_file(config["pseudobulk"]["gene_sets_file"]))
    STRESS_GENES = resolve_signatures({"stress": {"gene_set_file": config["stress"]["gene_set_file"],
                                                  "gene_set": config["stress"]["gene_set"], "states": ["all"]}})[
        "stress"]["genes"]
    if MODE == "demo":
        SHEET = f"{OUT}/demo/samples.tsv"
        _sheet = study_design(src_oldest=config["demo"]["src_oldest"], longitudinal=config["demo"]["longitudinal"])
        SAMPLES = list(_sheet["sample"])
        DATA = {s: str(sample_path(f"{OUT}/demo", s)) for s in SAMPLES}
        RAW = {s: str(sample_path(f"{OUT}/demo", s, raw=True)) for s in SAMPLES} if config["demo"]["with_raw"] else {}
        _tissue = tissue_design(_sheet) if config["demo"]["with_tissue"] else tissue_rows(_sheet)
        DATA |= {s: str(tissue_sample_path(f"{OUT}/demo", s, t)) for s, t in zip(_tissue["sample"], _tissue["tissue"])}
        VDJ = {s: f"{OUT}/demo/{p}" for s, p in vdj_design(pd.concat([_sheet.assign(tissue="blood"), _tissue])).items()} \
            if config["demo"]["with_tissue"] else {}
    else:
        SHEET = config["samples"]
        _sheet = load_sample_sheet(SHEET, config)
        if workflow.is_main_process:  # not again inside each cluster job
            for _w in check_inputs(_sheet, rna_type=config["features"]["rna_type"],
                                   protein_type=config["features"]["protein_type"],
                                   technical_pattern=config["features"]["technical_pattern"],
                                   panel_policy=config["qc"]["panel_policy"],
                                   panel_min_fraction=config["qc"]["panel_min_fraction"],
                                   min_shared_genes=config["tissue"]["map"]["min_shared_genes"]):
                print(f"sscsig: warning: {_w}", file=sys.stderr)
        VDJ = {s: p for s, p in zip(_sheet["sample"], _sheet.get("vdj_path", [""] * len(_sheet))) if p}
        _tissue = tissue_rows(_sheet)
        _sheet = blood_rows(_sheet)
        SAMPLES = list(_sheet["sample"])
        DATA = dict(zip(_sheet["sample"], _sheet["path"])) | dict(zip(_tissue["sample"], _tissue["path"]))
        RAW = {s: r for s, r in zip(_sheet["sample"], _sheet.get("raw_path", [""] * len(_sheet))) if r}
except InputError as exc:
    sys.exit(f"sscsig: error: {exc}")

# the batch key and the annotation's per-group settings name a sample-sheet column (each cell's obs carries
# its sample's row; the integration and the batch check of the calls group by the batch key)
_bad_keys = [f"{sec}.{k} {config[sec][k]!r}" for sec, k in (("integration", "batch_key"),
             ("annotation", "gate_group_key"), ("annotation", "substate_group_key"))
             if config[sec][k] is not None and config[sec][k] not in _sheet.columns]
if _bad_keys:
    sys.exit(f"sscsig: error: {' and '.join(_bad_keys)}: not a column of the sample sheet {SHEET} "
             f"(columns: {', '.join(map(str, _sheet.columns))})")

# annotation layers "dsb" exist only when every blood sample has raw droplets and DSB is not switched off
_dsb_users = [f"annotation.{k}" for k in ("gate_layer", "protein_layer") if config["annotation"][k] == "dsb"]
if _dsb_users and (config["qc"]["protein_norm"] == "clr" or any(s not in RAW for s in SAMPLES)):
    _why = ("qc.protein_norm is clr" if config["qc"]["protein_norm"] == "clr" else
            "blood sample(s) without raw_path: " + ", ".join(s for s in SAMPLES if s not in RAW))
    sys.exit(f"sscsig: error: {' and '.join(_dsb_users)}: dsb needs every blood sample's empty droplets "
             f"(sheet column raw_path) and DSB normalisation; {_why}")

# tissue samples (sheet column tissue other than blood): the tissue rules map them onto the blood states
TISSUE_OF = dict(zip(_tissue["sample"], _tissue["tissue"]))
TISSUES = sorted(set(TISSUE_OF.values()))
TRAJECTORY_TISSUES = [t for t in config["tissue"]["trajectory"]["tissues"] if t in TISSUES]
DONOR_OF = dict(zip(_sheet["sample"], _sheet["donor"])) | dict(zip(_tissue["sample"], _tissue["donor"]))
# tissues with V(D)J in a tissue sample: rule tissue_clonotypes follows their clones into the donors' blood
VDJ_TISSUES = sorted({TISSUE_OF[s] for s in VDJ if s in TISSUE_OF})

# annotation.method reference / both: the labelled reference and its harmonisation table (rule annotate's inputs)
REFERENCE_FILES = [config["annotation"]["reference"][k] for k in ("path", "labels")
                   if config["annotation"]["method"] != "markers" and config["annotation"]["reference"][k]]

# donors sampled more than once (sheet column timepoint): rule longitudinal follows them
LONGITUDINAL = "timepoint" in _sheet.columns and bool(_sheet["donor"].duplicated().any())
COMPLICATIONS = list(config["complications"])
CONTRASTS = list(config["contrasts"])
HYPOTHESES = hypothesis_pairs(config["hypotheses"], config["contrasts"])  # (contrast, state)

# the design files every statistics rule reads (rule design)
DESIGN = {k: f"{OUT}/design/{k}.tsv" for k in ("donors", "groups", "contrasts")}
DESIGN["warnings"] = f"{OUT}/design/warnings.json"
DESIGN["samples"] = f"{OUT}/design/samples.tsv"
TISSUE_DESIGN = f"{OUT}/design/tissue_samples.tsv"  # the sheet's tissue rows (empty without); rule design


wildcard_constraints:
    sample="|".join(SAMPLES + list(TISSUE_OF)) if SAMPLES else "NONE",
    tissue="|".join(TISSUES) if TISSUES else "NONE",
    complication="|".join(COMPLICATIONS),
    contrast="|".join(CONTRASTS),


def section(name, *, drop=()):
    """A config section for a rule's params, without the keys that belong to another rule or function."""
    return {k: v for k, v in config[name].items() if k not in drop}


def sample_data(wildcards):
    """The data path of a sample (simulated in demo mode, from the sheet otherwise)."""
    return DATA[wildcards.sample]


def sample_raw(wildcards):
    """The raw droplets of a sample (``raw_path``; empty list when the sheet gives none)."""
    return [RAW[wildcards.sample]] if wildcards.sample in RAW else []


def mem_mb_from_input(base_mb, per_input_mb_factor):
    """A resources callable: base + factor x input size (MB), grown with the retry attempt.

    The rules' factors are fitted to the peak RSS measured at 50k and 230k cells
    (``benchmarks/run.sh``) with ~1.3-1.6x headroom, so ``--resources mem_mb=N`` lets Snakemake run
    jobs side by side without overcommitting memory."""

    def _mem(wildcards, input, attempt):
        return int((base_mb + per_input_mb_factor * input.size_mb) * attempt)

    return _mem


def mem_mb_fixed(mb):
    """A resources callable for rules whose inputs are small tables: ``mb`` x the retry attempt."""

    def _mem(wildcards, attempt):
        return int(mb * attempt)

    return _mem


def runtime_from_input(base_min, per_gb_min):
    """A runtime (minutes) callable: base + per-GB-of-input minutes, grown with the retry attempt."""

    def _runtime(wildcards, input, attempt):
        return int((base_min + per_gb_min * input.size_mb / 1024) * attempt)

    return _runtime


def qc_settings(wildcards):
    """Config qc for a blood sample; for a tissue sample, its tissue's qc settings over it."""
    qc = section("qc", drop=("panel_policy", "panel_min_fraction"))  # the merge's
    tissue = TISSUE_OF.get(wildcards.sample)
    return qc | config["tissue"]["tissues"][tissue].get("qc", {}) if tissue else qc


def tissue_qc_files(wildcards):
    """The QC'd samples of a tissue (rule tissue_map)."""
    return [f"{OUT}/qc/{s}.h5mu" for s, t in TISSUE_OF.items() if t == wildcards.tissue]


def tissue_vdj(tissue):
    """sample -> V(D)J file: the tissue's samples with one and their donors' blood samples with one."""
    samples = [s for s, t in TISSUE_OF.items() if t == tissue and s in VDJ]
    donors = {DONOR_OF[s] for s in samples}
    blood = [s for s in SAMPLES if s in VDJ and DONOR_OF[s] in donors]
    return {s: VDJ[s] for s in blood + samples}
