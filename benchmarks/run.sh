#!/usr/bin/env bash
# Usage: bash benchmarks/run.sh CELLS_PER_DONOR OUTDIR [CORES]  -- demo cohort at that size, then per-rule table.
set -euo pipefail
cells=${1:?cells per donor}; out=${2:?outdir}; cores=${3:-2}
cfg=$(mktemp --suffix=.yaml); printf 'demo:\n  cells_per_donor: %s\n' "$cells" > "$cfg"
/usr/bin/time -v .venv/bin/snakemake --cores "$cores" --configfile config/config.yaml "$cfg" --config outdir="$out" -q 2> "$out.time" || { tail -30 "$out.time"; exit 1; }
grep -E "Elapsed|Maximum resident" "$out.time"
.venv/bin/python benchmarks/collect.py "$out"
