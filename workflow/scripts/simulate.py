"""Rule simulate: the demo twin cohort (sscsig.demo)."""
from pathlib import Path

from sscsig.io import rule_logging

with rule_logging(snakemake):
    from sscsig.demo import DemoParams, simulate_cohort

    p = snakemake.params
    simulate_cohort(Path(snakemake.output.sheet).parent, DemoParams.from_config(p.demo, seed=p.seed))
