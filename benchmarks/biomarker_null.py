"""Null check of the biomarker models: on cohorts with nothing planted, the permutation p-values are
~uniform and the out-of-fold AUC is ~0.5 (nothing leaks from the test folds). Run by hand.

    python benchmarks/biomarker_null.py --seeds 20 --out benchmarks/biomarker_null.tsv [--jobs 2]

Each seed simulates the demo design's donor x state counts with no effect (``sscsig.demo``,
``simulate_state_counts``, the study's 27 donors), builds the within-parent log-ratio features and
runs the pipeline's nested cross-validation with the default config (1,000 permutations) for the
primary contrasts SRC_vs_SSc (4 vs 17) and ILD_vs_SSc (10 vs 7). ``--effect`` plants the default
effects instead (power).
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--effect", action="store_true", help="plant the default effects (x3) instead of none")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    from sscsig.config import validate_config
    from sscsig.demo import STATE_LINEAGE, DemoParams, simulate_state_counts
    from sscsig.design import Design
    from sscsig.stats import donor_features, evaluate

    cfg = validate_config(yaml.safe_load(open("config/config.yaml")))
    opts = {k: v for k, v in cfg["biomarker"].items() if k not in ("enabled", "covariates", "pseudocount")}
    contrasts = {k: cfg["contrasts"][k] for k in ("SRC_vs_SSc", "ILD_vs_SSc")}
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        t0 = time.time()
        counts, sheet = simulate_state_counts(DemoParams(seed=seed, null=not args.effect))
        design = Design.from_sheet(sheet, contrasts=contrasts, complications=cfg["complications"])
        feats = donor_features(counts, dict(STATE_LINEAGE), pseudocount=cfg["biomarker"]["pseudocount"])
        for c in design.contrasts.values():
            ev = evaluate(feats, c.groups, **opts, seed=seed, n_jobs=args.jobs)
            rows.append({"seed": seed, "contrast": c.name, "auc": ev["auc"], "ci_low": ev["ci"][0],
                         "ci_high": ev["ci"][1], "perm_pvalue": ev["perm_pvalue"]})
        print(f"seed {seed}: {time.time() - t0:.0f} s", rows[-2:], flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(args.out, sep="\t", index=False, float_format="%.4g")
    n = len(df)
    print(df.groupby("contrast").agg(mean_auc=("auc", "mean"), share_p05=("perm_pvalue", lambda p: (p < 0.05).mean()),
                                     median_p=("perm_pvalue", "median")))
    print(f"all: mean AUC {df['auc'].mean():.3f}; p < 0.05 in {(df['perm_pvalue'] < 0.05).mean():.1%} of {n} "
          f"(Monte-Carlo +/- {2 * np.sqrt(0.05 * 0.95 / n):.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
