"""The tiny demo through a real Slurm (snakemake-executor-plugin-slurm, profiles/slurm) gives the
same tables as a local run. Needs a running Slurm with accounting (.ci/run starts a single-node one
with tests/slurm/start_slurm.sh); skips with the reason elsewhere."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _slurm_reason() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sacct") is None:
        return "Slurm is not installed (sinfo/sacct not found)"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return f"no Slurm controller answers: {proc.stderr.strip()[:200]}"
    if subprocess.run(["sacct", "-n", "-X"], capture_output=True).returncode != 0:
        return "Slurm accounting (sacct) is not available"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    return None


@pytest.mark.slow
def test_tiny_demo_on_slurm_equals_local_run(demo_run, tmp_path):
    reason = _slurm_reason()
    if reason:
        pytest.skip(reason)
    partition = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()[0]
    import datetime

    start = (datetime.datetime.now() - datetime.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")
    out = tmp_path / "slurm_results"
    # targets first: --quiet and --config take several values and would swallow them
    targets = [str(out / f"tables/complication_{c}.{ext}") for c in ("SRC", "ILD") for ext in ("tsv", "md")]
    cmd = [sys.executable, "-m", "snakemake", *targets, "--profile", "profiles/slurm", "--jobs", "8",
           "--configfile", "config/config.yaml", str(demo_run.parent / "tiny.yaml"),
           "--config", f"outdir={out}", "--default-resources", f"slurm_partition={partition.rstrip('*')}",
           "mem_mb=1500", "runtime=30", "--slurm-init-seconds-before-status-checks", "5",
           "--seconds-between-status-checks", "5", "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in ("complication_SRC.tsv", "complication_ILD.tsv", "complication_SRC.md"):
        assert (out / "tables" / name).read_bytes() == (demo_run / "tables" / name).read_bytes(), name
    # the jobs went through Slurm: its accounting lists the pipeline's rules for this run
    acct = subprocess.run(["sacct", "-n", "-X", "-P", "--format=JobID,JobName,State,Comment", "-S", start],
                          capture_output=True, text=True).stdout
    print(acct)
    completed = [line for line in acct.splitlines() if "|COMPLETED|" in line]
    assert len(completed) >= 27 + 10, acct  # 29 QC jobs and the cohort-level rules


@pytest.mark.parametrize("gpu", [True, False])
def test_integrate_requests_a_gpu_only_when_asked(tmp_path, gpu):
    """`integration.gpu: true` puts gpu=1 on the integrate job (the plugin's --gpus=1); no other rule
    ever asks for one. Every job's memory and runtime are derived from its input and the attempt."""
    cfg = tmp_path / "gpu.yaml"
    cfg.write_text(f"integration:\n  gpu: {str(gpu).lower()}\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/config.yaml",
                           str(cfg), "--config", f"outdir={tmp_path}/out"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs, rule = {}, None
    for line in proc.stdout.splitlines():
        if line.startswith("rule "):
            rule = line[5:].rstrip(":")
        elif line.strip().startswith("resources:") and rule:
            jobs.setdefault(rule, line)
    assert "gpu=1" in jobs["integrate"] if gpu else "gpu=0" in jobs["integrate"], jobs["integrate"]
    assert not [r for r, res in jobs.items() if r != "integrate" and "gpu=1" in res]
    assert all("mem_mb=" in res and "runtime=" in res for r, res in jobs.items() if r != "all")
