"""Command line: ``sscsig simulate`` (demo cohorts) and ``sscsig validate`` (config, sheet and the
headers of every input file, without running anything)."""

from __future__ import annotations

import argparse
import logging
import sys

import yaml


def _simulate(args) -> int:
    from .demo import DemoParams, simulate_cohort

    params = DemoParams(seed=args.seed, cells_per_donor=args.cells_per_donor, effect_src=args.effect_src,
                        effect_ild=args.effect_ild, null=args.null, src_oldest=args.src_oldest,
                        with_raw=args.with_raw)
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
                            panel_policy=config["qc"]["panel_policy"])
    for w in [*design.warnings, *warnings]:
        print(f"sscsig: warning: {w}", file=sys.stderr)
    groups = ", ".join(f"{c.name} {c.n_case} vs {c.n_control}" for c in design.contrasts.values())
    print(f"config, sample sheet and input files OK: {len(sheet)} samples, {sheet['donor'].nunique()} donors "
          f"(contrasts: {groups})")
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
    s.set_defaults(func=_simulate)
    v = sub.add_parser("validate", help="check a config, its sample sheet and every input file's header "
                                        "without running anything")
    v.add_argument("--config", default="config/config.yaml")
    v.add_argument("--samples", default=None)
    v.set_defaults(func=_validate)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except InputError as exc:
        print(f"sscsig: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
