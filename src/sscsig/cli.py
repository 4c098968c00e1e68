"""Command line: ``sscsig simulate`` (demo cohorts) and ``sscsig validate`` (config + sheet)."""

from __future__ import annotations

import argparse
import logging
import sys

import yaml


def _simulate(args) -> int:
    from .simulate import DemoParams, simulate_cohort

    params = DemoParams(seed=args.seed, cells_per_donor=args.cells_per_donor, effect_src=args.effect_src,
                        effect_ild=args.effect_ild, null=args.null, src_oldest=args.src_oldest,
                        with_raw=args.with_raw)
    sheet = simulate_cohort(args.out, params)
    print(f"wrote {len(sheet)} samples to {args.out} (sheet {args.out}/samples.tsv, truth in {args.out}/truth)")
    return 0


def _validate(args) -> int:
    from .config import cohort_mode, load_sample_sheet, validate_config

    with open(args.config) as fh:
        config = yaml.safe_load(fh)
    if args.samples:
        config["samples"] = args.samples
    validate_config(config)
    if cohort_mode(config) == "sheet":
        sheet = load_sample_sheet(config["samples"], config)
        print(f"config and sample sheet OK: {len(sheet)} samples, {sheet['donor'].nunique()} donors")
    else:
        print("config OK (demo cohort)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .ingest import InputError

    parser = argparse.ArgumentParser(prog="sscsig", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("simulate", help="write a demo cohort with planted truth")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cells-per-donor", type=int, default=800)
    s.add_argument("--null", action="store_true", help="plant no effect")
    s.add_argument("--effect-src", type=float, default=3.0, help="fold change of CD14.EGR1 share in SRC")
    s.add_argument("--effect-ild", type=float, default=3.0, help="fold change of CD8.TEM_T2ISG share in ILD")
    s.add_argument("--src-oldest", action="store_true", help="confounded variant: SRC donors are the oldest")
    s.add_argument("--with-raw", action="store_true",
                   help="also write raw_feature_bc_matrix.h5 with empty droplets (raw_path, for DSB)")
    s.set_defaults(func=_simulate)
    v = sub.add_parser("validate", help="check a config (and its sample sheet) without running anything")
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
