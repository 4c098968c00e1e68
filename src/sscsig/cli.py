"""Command line: ``sscsig simulate`` (demo cohorts), ``sscsig validate`` (config, sheet and the
headers of every input file, without running anything) and ``sscsig predict`` (a saved biomarker
model scores new patients' samples)."""

from __future__ import annotations

import argparse
import logging
import sys

import yaml


def _simulate(args) -> int:
    from .demo import DemoParams, simulate_cohort

    params = DemoParams(seed=args.seed, cells_per_donor=args.cells_per_donor, effect_src=args.effect_src,
                        effect_ild=args.effect_ild, null=args.null, src_oldest=args.src_oldest,
                        with_raw=args.with_raw, stress_in=args.stress_in, stress_fold=args.stress_fold,
                        longitudinal=args.longitudinal, with_tissue=args.with_tissue,
                        tissue_cells=args.tissue_cells, states=args.states)
    sheet = simulate_cohort(args.out, params)
    print(f"wrote {len(sheet)} samples to {args.out} (sheet {args.out}/samples.tsv, truth in {args.out}/truth)")
    return 0


def _validate(args) -> int:
    from .config import cohort_mode, design_from_sheet, load_sample_sheet, validate_config
    from .io import check_inputs

    with open(args.config) as fh:
        config = yaml.safe_load(fh)
    if args.samples:
        config["samples"] = args.samples
    validate_config(config)
    if cohort_mode(config) != "sheet":
        print("config OK (demo cohort)")
        return 0
    sheet = load_sample_sheet(config["samples"], config)
    design = design_from_sheet(sheet, config)
    warnings = check_inputs(sheet, rna_type=config["features"]["rna_type"],
                            protein_type=config["features"]["protein_type"],
                            technical_pattern=config["features"]["technical_pattern"],
                            panel_policy=config["qc"]["panel_policy"],
                            panel_min_fraction=config["qc"]["panel_min_fraction"],
                            min_shared_genes=config["tissue"]["map"]["min_shared_genes"])
    for w in [*design.warnings, *warnings]:
        print(f"sscsig: warning: {w}", file=sys.stderr)
    groups = ", ".join(f"{c.name} {c.n_case} vs {c.n_control}" for c in design.contrasts.values())
    n_tissue = int((sheet["tissue"] != "blood").sum()) if "tissue" in sheet.columns else 0
    print(f"config, sample sheet and input files OK: {len(sheet)} samples ({n_tissue} tissue), "
          f"{sheet['donor'].nunique()} donors "
          f"(contrasts: {groups})")
    return 0


def _predict(args) -> int:
    from pathlib import Path

    import h5py
    import pandas as pd

    from .errors import InputError
    from .io import read_modality, read_obs, write_tsv
    from .stats import load_model, predict_samples

    model, desc = load_model(args.model)
    path = Path(args.annotated)
    if not path.is_file():
        raise InputError(f"annotated file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            ok = "mod/rna" in f and "obs" in f
    except OSError as exc:
        raise InputError(f"{path} is not an h5mu file: {exc}") from None
    if not ok:
        raise InputError(f"{path} is not an annotated h5mu (no 'rna' modality or obs); use "
                         "<outdir>/cohort/annotated.h5mu of a run")
    obs = read_obs(path)
    missing = [c for c in ("cell_state", "sample") if c not in obs]
    if missing:
        raise InputError(f"{path}: obs has no {missing} column(s); is it annotated (rule annotate)?")
    sheet = pd.read_csv(args.sheet, sep="\t", dtype=str)
    for col in ("sample", "donor"):
        if col not in sheet:
            raise InputError(f"sample sheet {args.sheet}: column {col!r} missing")
    unknown = sorted(set(obs["sample"].astype(str)) - set(sheet["sample"]))
    if unknown:
        raise InputError(f"sample sheet {args.sheet} lacks samples of {path}: {unknown}")
    rna = read_modality(path, "rna")
    out = predict_samples(model, desc, obs, rna).merge(
        sheet[[c for c in ("sample", "donor", "timepoint") if c in sheet]], on="sample", how="left")
    write_tsv(out, args.out)
    print(f"scored {len(out)} samples with the {desc['contrast']} model ({desc['complication']}) -> {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .config import default
    from .errors import InputError

    demo = default("demo")
    parser = argparse.ArgumentParser(prog="sscsig", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("simulate", help="write a demo cohort with planted truth")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=default("seed"))
    s.add_argument("--cells-per-donor", type=int, default=demo["cells_per_donor"])
    s.add_argument("--null", action="store_true", help="plant no effect")
    s.add_argument("--effect-src", type=float, default=demo["effect_src"],
                   help="fold change of CD14.EGR1 share in SRC")
    s.add_argument("--effect-ild", type=float, default=demo["effect_ild"],
                   help="fold change of CD8.TEM_T2ISG share in ILD")
    s.add_argument("--src-oldest", action="store_true", help="confounded variant: SRC donors are the oldest")
    s.add_argument("--with-raw", action="store_true",
                   help="also write raw_feature_bc_matrix.h5 with empty droplets (raw_path, for DSB)")
    s.add_argument("--stress-in", default=demo["stress_in"], metavar="COMPLICATION",
                   help="plant handling stress in every monocyte of these donors' samples (e.g. SRC)")
    s.add_argument("--stress-fold", type=float, default=demo["stress_fold"], help="fold of the stress genes")
    s.add_argument("--longitudinal", action="store_true",
                   help="also sample SRC donor SSc01 before onset and after treatment (timepoint column)")
    s.add_argument("--with-tissue", action="store_true",
                   help="also a kidney biopsy (BD Rhapsody CSV) of each SRC donor and lung samples (10x) of ILD and "
                        "non-ILD donors (sheet column tissue; truth/tissue_cells.tsv)")
    s.add_argument("--tissue-cells", type=int, default=demo["tissue_cells"], help="cells per tissue sample")
    s.add_argument("--states", choices=["core", "study"], default=demo["states"],
                   help="state catalogue: core (23 states) or study (the reference study's 41 fine states)")
    s.set_defaults(func=_simulate)
    v = sub.add_parser("validate", help="check a config, its sample sheet and every input file's header "
                                        "without running anything")
    v.add_argument("--config", default="config/config.yaml")
    v.add_argument("--samples", default=None)
    v.set_defaults(func=_validate)
    pr = sub.add_parser("predict", help="score samples with a saved biomarker model")
    pr.add_argument("--model", required=True, help="<outdir>/biomarker/<complication>/model/<contrast>")
    pr.add_argument("--annotated", required=True, help="an annotated h5mu (cohort/annotated.h5mu of a run)")
    pr.add_argument("--sheet", required=True, help="the sample sheet of those samples (sample, donor[, timepoint])")
    pr.add_argument("--out", required=True, help="output TSV: sample, probability, donor, ...")
    pr.set_defaults(func=_predict)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except InputError as exc:
        print(f"sscsig: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
