"""The batch check of the calls (``sscsig.stats.batch_association``) on cohorts with a truth.

    python benchmarks/batch_check.py OUTDIR/RUN [OUTDIR/RUN ...] [--out benchmarks/batch_check.tsv]

Each RUN is a pipeline run of ``benchmarks/annotation_othersim.py`` (``seed<N>_cells<M>[_<variant>]``)
or of ``benchmarks/annotation_variants.py``: its ``results/cohort/integrated.h5mu`` is annotated again
in memory as the annotate rule would with today's config (so every run is judged with the same
annotator), and the batch check is run twice on the donors of the group tests: on the pipeline's calls
and on the true labels of the same cells (``data/truth/cells.tsv``). The true labels carry no
batch-driven calls, so their flags are the check's false alarms in cohorts where state shares do not
depend on the batch (both simulators draw donors' shares independently of their batch); the
pipeline's flags where the truth has none are calls that follow the batches.

Writes one row per run and label source: states tested, states flagged (FDR < ``abundance.fdr``) and
which, and the calls' state macro-F1 for context (``OUT``, default ``benchmarks/batch_check.tsv``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def check_run(run: Path, *, fdr: float) -> list[dict]:
    """Both label sources of one run (see the module docstring)."""
    import yaml

    import annotation_variants as av
    from sscsig.annotate import annotation_vs_truth
    from sscsig.config import validate_config
    from sscsig.design import Design, design_columns
    from sscsig.io import read_cell_table, read_h5mu
    from sscsig.stats import batch_association, donor_batches, state_counts, state_parents

    cfg = validate_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()))
    mdata = read_h5mu(run / "results/cohort/integrated.h5mu")
    av._annotate_as_the_rule_would(mdata, run.name)
    obs = mdata.obs.copy()
    sheet = pd.read_csv(run / "data/samples.tsv", sep="\t")
    complications = [c for c in cfg["complications"] if c in sheet]
    contrasts = {k: v for k, v in cfg["contrasts"].items() if v["complication"] in complications}
    design = Design.from_sheet(sheet, contrasts=contrasts, complications=complications)
    columns = design_columns(contrasts, complications)
    truth = read_cell_table(run / "data/truth/cells.tsv").reindex(obs.index)
    summary, _ = annotation_vs_truth(obs, run / "data/truth/cells.tsv")
    rows = []
    for source in ("pipeline", "truth"):
        o = obs if source == "pipeline" else obs.assign(cell_state=truth["cell_state"].astype(str).to_numpy(),
                                                         lineage=truth["lineage"].astype(str).to_numpy())
        o = o[design.cells_in_tests(o) & truth["cell_state"].notna().to_numpy()]
        counts = state_counts(o)
        res = batch_association(counts, state_parents(o), donor_batches(design.samples), design.donors,
                                columns=columns, min_parent_cells=cfg["abundance"]["min_parent_cells"],
                                min_state_cells=cfg["abundance"]["min_state_cells"])
        hit = res[res["testable"] & (res["fdr"] < fdr)].sort_values("pvalue")
        rows.append({"run": run.name, "labels": source, "state_macro_f1": round(summary["state_macro_f1"], 3),
                     "states_tested": int(res["testable"].sum()), "states_flagged": len(hit),
                     "flagged": ", ".join(f"{r.cell_state} ({r.fdr:.1g})" for r in hit.itertuples())})
        print(pd.DataFrame([rows[-1]]).to_string(index=False), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/batch_check.tsv")
    ap.add_argument("--fdr", type=float, default=0.1)
    args = ap.parse_args(argv)
    rows = [r for run in args.runs for r in check_run(run, fdr=args.fdr)]
    pd.DataFrame(rows).to_csv(args.out, sep="\t", index=False)
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
