#!/usr/bin/env bash
# Usage: bash benchmarks/run.sh CELLS_PER_DONOR OUTDIR [CORES] [MEM_MB]  -- demo cohort at that size, then per-rule table.
# MEM_MB (default 20000): the memory Snakemake may hand out to jobs running side by side (rules declare mem_mb).
set -euo pipefail
cells=${1:?cells per donor}; out=${2:?outdir}; cores=${3:-2}; mem=${4:-20000}
cfg=$(mktemp --suffix=.yaml); printf 'demo:\n  cells_per_donor: %s\n' "$cells" > "$cfg"
/usr/bin/time -v .venv/bin/snakemake --cores "$cores" --resources mem_mb="$mem" --configfile config/config.yaml "$cfg" --config outdir="$out" -q 2> "$out.time" || { tail -30 "$out.time"; exit 1; }
grep -E "Elapsed|Maximum resident" "$out.time"
.venv/bin/python benchmarks/collect.py "$out"
