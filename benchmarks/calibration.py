"""Calibration, power and confounding of the donor-level composition tests, over many seeds.

Two modes (run by hand; results in the README):

* ``pipeline``: the whole pipeline (simulate -> QC -> integration -> annotation -> tests) per seed,
  with Snakemake, on demo cohorts (``--null`` for null cohorts). What a user gets, but ~1-2 min a seed.
* ``counts``: the composition part of the simulator only (the cells' true states, before QC and
  annotation) -> the same donor-level tests. Hundreds of seeds in seconds: power curves over effect
  size and the confounding check.

Examples::

    python benchmarks/calibration.py pipeline --null --seeds 20 --cells-per-donor 200 --out /tmp/calib
    python benchmarks/calibration.py pipeline --seeds 20 --cells-per-donor 800 --out /tmp/power
    python benchmarks/calibration.py counts --seeds 500 --out benchmarks/study_counts
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
PRIMARY = {"SRC_vs_SSc": "CD14.EGR1", "ILD_vs_SSc": "CD8.TEM_T2ISG"}


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """One row per seed: share of testable tests with p < 0.05, states at FDR < 0.1, hypotheses."""
    rows = []
    for seed, r in results.groupby("seed"):
        t = r[r["testable"].astype(bool)]
        row = {"seed": seed, "tests": len(t), "p_lt_05": float((t["pvalue"] < 0.05).mean()),
               "any_fdr_lt_01": bool((t["fdr"] < 0.1).any()),
               "hits": ";".join(sorted(f"{c}:{s}" for c, s in zip(t.loc[t.fdr < 0.1, "contrast"],
                                                                   t.loc[t.fdr < 0.1, "cell_state"])))}
        for contrast, state in PRIMARY.items():
            hit = t[(t["contrast"] == contrast) & (t["cell_state"] == state)]
            row[f"fdr_{contrast}_{state}"] = float(hit["fdr"].iloc[0]) if len(hit) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def report(per_seed: pd.DataFrame, results: pd.DataFrame) -> str:
    n = len(per_seed)
    t = results[results["testable"].astype(bool)]
    rate = float((t["pvalue"] < 0.05).mean())
    mc = 1.96 * np.sqrt(0.05 * 0.95 / len(t))
    per_state = t.assign(hit=t["fdr"] < 0.1).groupby(["contrast", "cell_state"])["hit"].mean()
    lines = [f"seeds: {n}; testable tests: {len(t)}",
             f"share of tests with p < 0.05: {rate:.4f} (nominal 0.05, +/- {mc:.4f} Monte-Carlo 95%)",
             f"seeds with any state at FDR < 0.1: {per_seed['any_fdr_lt_01'].mean():.3f}",
             f"most frequent (contrast, state) at FDR < 0.1: {per_state.idxmax()} in "
             f"{per_state.max():.3f} of seeds"]
    for contrast, state in PRIMARY.items():
        col = f"fdr_{contrast}_{state}"
        lines.append(f"{state} in {contrast}: FDR < 0.1 in {(per_seed[col] < 0.1).mean():.3f} of seeds")
    return "\n".join(lines)


def run_pipeline(args) -> pd.DataFrame:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        run = out / f"seed{seed}"
        extra = out / f"seed{seed}.yaml"
        demo = {"cells_per_donor": args.cells_per_donor, "null_cohort": args.null,
                "src_oldest": args.src_oldest}
        if args.effect_src is not None:
            demo["effect_src"] = args.effect_src
        if args.effect_ild is not None:
            demo["effect_ild"] = args.effect_ild
        extra.write_text(yaml.safe_dump({"demo": demo, "seed": seed, "outdir": str(run)}))
        target = run / "abundance/composition_tests.tsv"
        cmd = [sys.executable, "-m", "snakemake", str(target), "--cores", str(args.cores), "--snakefile",
               str(ROOT / "Snakefile"), "--directory", str(ROOT), "--quiet", "all", "--configfile",
               str(ROOT / "config/config.yaml"), str(extra)]
        subprocess.run(cmd, check=True, cwd=ROOT)
        frames.append(pd.read_csv(target, sep="\t").assign(seed=seed))
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    return pd.concat(frames, ignore_index=True)


def run_counts(args, *, effect_src=None, effect_ild=None, null=None, covariates=None) -> pd.DataFrame:
    from sscsig.config import validate_config
    from sscsig.demo import STATE_LINEAGE, DemoParams, simulate_state_counts
    from sscsig.design import Design
    from sscsig.stats import test_contrast

    cfg = validate_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    contrasts = {k: v for k, v in cfg["contrasts"].items() if k in PRIMARY}
    if covariates is not None:
        contrasts = {k: {**v, "covariates": covariates} for k, v in contrasts.items()}
    frames = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        params = DemoParams(seed=seed, cells_per_donor=args.cells_per_donor,
                            null=args.null if null is None else null, src_oldest=args.src_oldest,
                            effect_src=effect_src or args.effect_src or 3.0,
                            effect_ild=effect_ild or args.effect_ild or 3.0)
        counts, sheet = simulate_state_counts(params)
        design = Design.from_sheet(sheet, contrasts=contrasts, complications=cfg["complications"])
        options = {k: v for k, v in cfg["abundance"].items() if k != "fdr"}
        for c in design.contrasts.values():
            frames.append(test_contrast(counts, dict(STATE_LINEAGE), design.donors, c, **options).assign(seed=seed))
    return pd.concat(frames, ignore_index=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["pipeline", "counts"])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=100)
    ap.add_argument("--cells-per-donor", type=int, default=800)
    ap.add_argument("--null", action="store_true")
    ap.add_argument("--src-oldest", action="store_true")
    ap.add_argument("--effect-src", type=float, default=None)
    ap.add_argument("--effect-ild", type=float, default=None)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.mode == "pipeline":
        results = run_pipeline(args)
        per_seed = summarise(results)
        results.to_csv(out / "results.tsv", sep="\t", index=False)
        per_seed.to_csv(out / "per_seed.tsv", sep="\t", index=False)
        text = report(per_seed, results)
    else:
        null = run_counts(args, null=True)
        text = "CALIBRATION (null cohorts)\n" + report(summarise(null), null)
        results = run_counts(args)
        per_seed = summarise(results)
        text += "\n\nPOWER (default demo effects)\n" + report(per_seed, results)
        results.to_csv(out / "results.tsv.gz", sep="\t", index=False)
        # power curve over effect size (both planted effects scaled together)
        curve = []
        for fc in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0):
            r = summarise(run_counts(args, effect_src=fc, effect_ild=fc, null=fc == 1.0))
            curve.append({"fold_change": fc,
                          **{f"power_{c}_{s}": float((r[f"fdr_{c}_{s}"] < 0.1).mean()) for c, s in PRIMARY.items()}})
        curve = pd.DataFrame(curve)
        curve.to_csv(out / "power_curve.tsv", sep="\t", index=False)
        # confounding: SRC donors the oldest; CD8.Naive falls with age
        conf = {}
        for label, cov in (("with age", ["age"]), ("without age", [])):
            a2 = argparse.Namespace(**{**vars(args), "src_oldest": True})
            r = run_counts(a2, null=True, covariates=cov)
            t = r[(r.contrast == "SRC_vs_SSc") & (r.cell_state == "CD8.Naive") & r.testable.astype(bool)]
            conf[label] = float((t["fdr"] < 0.1).mean())
        text += "\npower curve (FDR < 0.1, share of seeds):\n" + curve.to_string(index=False)
        text += ("\nconfounding (SRC donors oldest, null cohort): CD8.Naive (age-driven) at FDR < 0.1 in "
                 f"SRC_vs_SSc: {conf['with age']:.3f} of seeds with age in the design, "
                 f"{conf['without age']:.3f} without")
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
