# Shared helpers of the rule files.


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
