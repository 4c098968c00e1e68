"""The tiny demo through a real Slurm (snakemake-executor-plugin-slurm, profiles/slurm) gives the
same tables as a local run. Needs a running Slurm with accounting (.ci/run starts a single-node one
with tests/slurm/start_slurm.sh); skips with the reason elsewhere."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import slurm_reason

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_demo_on_slurm_equals_local_run(slurm_run, request):
    """The run itself starts with the session (conftest ``slurm_run``), beside the other tests."""
    if slurm_run is None:
        pytest.skip(slurm_reason() or "the Slurm run was not started")
    demo_run = request.getfixturevalue("demo_run")  # the local run, to compare with
    proc, out = slurm_run["proc"], slurm_run["results"]
    assert proc.wait() == 0, slurm_run["log"].read_text()[-8000:]
    for name in ("tables/complication_SRC.tsv", "tables/complication_ILD.tsv", "tables/complication_SRC.md",
                 "qc/summary.tsv"):
        assert (out / name).read_bytes() == (demo_run / name).read_bytes(), name
    # the jobs went through Slurm: its accounting lists the pipeline's rules for this run
    acct = subprocess.run(["sacct", "-n", "-X", "-P", "--format=JobID,JobName,State,Comment", "-S",
                           slurm_run["start"]], capture_output=True, text=True).stdout
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
