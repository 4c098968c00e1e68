import os
import subprocess
import sys
from pathlib import Path

import mudata as md
import pytest

md.set_options(pull_on_update=False)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# totalVI in the end-to-end tests: 60 epochs (the default, auto, scales to the data: 253 at 4k cells, early
# stopping ends it near 145). With the KL warm-up over half the epochs, 30 epochs left the tiny cohort's
# three batches unmixed (iLISI 0.00 vs 0.40 at 60 and 0.60 at auto)
TINY_TOTALVI = "integration:\n  totalvi:\n    max_epochs: 60\n"
# the tissue mapping in the end-to-end tests: 100 + 50 epochs (default 200 + 100; kidney state macro-F1
# 0.71 vs 0.85 on the tiny demo) and 800 genes for the whole-transcriptome lung (default 2,000)
TINY_TISSUE = "tissue:\n  map:\n    reference_epochs: 100\n    query_epochs: 50\n    n_genes: 800\n"
# the biomarker permutation tests with one outer split instead of three (the 1,000 permutations, the
# schema's minimum, stay): 4 x 1000 nested CVs per complication were 5 of the tiny demo's 17 minutes
TINY_BIOMARKER = "biomarker:\n  repeats: 1\n"
# The Slurm run (below) runs beside the other tests on CI's 2 cores. torch's OpenMP threads spin while they
# wait at a barrier, so a training that shares its cores starves and is starved: with the tiny-demo fixture
# and the Slurm run at once, totalVI's 60 epochs took 52 s alone and 300-400 s in CI. Sleeping waits change
# no number (same latent, byte for byte): two 2-thread trainings at once took 39 s instead of 120 s each
# (20 epochs). Alone they are slower (20 epochs 24-29 s -> 38 s; the tiny demo's 60 epochs 46 s -> 85 s, and
# the suite 39.9 min instead of 36.5 when the whole session had them), so only the background run gets them.
# It also runs at nice 19 (its Slurm jobs too: tests/slurm/start_slurm.sh sets PropagatePrioProcess=1), so
# that it takes the cores the other tests leave idle rather than half of theirs: with equal shares, a
# 2-thread training in a test stalls at every barrier whose other thread waits for a core (the seeded
# totalVI test 7 s alone, 91 s in CI beside the Slurm run, 8 s niced). Where the kernel groups processes
# by session (autogroup), nice acts only within a session and each Slurm job is one: .ci/run turns
# autogroups off. The run starts with the session, beside the local tiny demo, and the Slurm test runs
# last (pytest_collection_modifyitems), so the run has every idle moment of the session before the test
# waits for it.
SHARED_CPU_ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
BACKGROUND_NICE = 19


def mapping_sides(rng):
    """A small labelled reference (RNA + 6 antibodies, two batches) and a query with other depths:
    (reference RNA, reference protein, query RNA, query protein), counts in ``X``."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    def side(n, depth, prefix):
        states = np.resize(["A1", "A2", "B1"], n)
        lam = np.full((n, 80), 1.0)
        lam[states == "A1", :10], lam[states == "A2", 10:20], lam[states == "B1", 20:30] = 5, 5, 6
        pl = np.full((n, 6), 20.0)
        pl[states == "B1", 0], pl[states == "A2", 1] = 200, 150
        rna = ad.AnnData(sp.csr_matrix(rng.poisson(lam * depth).astype(np.float32)),
                         var=pd.DataFrame(index=[f"G{i}" for i in range(80)]),
                         obs=pd.DataFrame({"cell_state": states, "lineage": [x[0] for x in states],
                                           "batch": np.resize(["b1", "b2"], n)}, index=[f"{prefix}{i}" for i in range(n)]))
        prot = ad.AnnData(sp.csr_matrix(rng.poisson(pl).astype(np.float32)),
                          var=pd.DataFrame(index=[f"P{i}" for i in range(6)]))
        return rna, prot

    return (*side(240, 1.0, "r"), *side(120, 1.2, "q"))


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """A small simulated cohort (27 donors x ~120 cells), written once per session."""
    from sscsig.demo import DemoParams, simulate_cohort

    out = tmp_path_factory.mktemp("cohort")
    simulate_cohort(out, DemoParams(seed=3, cells_per_donor=120))
    return out


@pytest.fixture()
def shared_data():
    if not SHARED.is_dir():
        pytest.skip(f"real-data fixtures not present at {SHARED}")
    return SHARED


@pytest.fixture()
def write_sheet(tmp_path, small_cohort):
    """Write the small cohort's sample sheet (absolute paths), optionally changed by ``mutate(df)``."""
    import pandas as pd

    def write(mutate=None):
        df = pd.read_csv(small_cohort / "samples.tsv", sep="\t")
        df["path"] = [str(small_cohort / p) for p in df["path"]]
        if mutate:
            df = mutate(df)
        path = tmp_path / "samples.tsv"
        df.to_csv(path, sep="\t", index=False)
        return path

    return write


# the tiny demo: 27 donors x ~150 cells, raw droplets (DSB), donor SSc01 sampled at three timepoints (29
# blood samples; the group tests use the 27 baseline samples), and 10 tissue samples (4 SRC kidneys, BD
# Rhapsody; 3 ILD + 3 non-ILD lungs, 10x) mapped with a short training
TINY_DEMO = ("demo:\n  cells_per_donor: 150\n  with_raw: true\n  longitudinal: true\n  with_tissue: true\n"
             "  tissue_cells: 300\n" + TINY_TOTALVI + TINY_TISSUE + TINY_BIOMARKER)
SLURM_TEST = "test_tiny_demo_on_slurm_equals_local_run"


def pytest_collection_modifyitems(session, config, items):
    """The Slurm test last: its run goes on in the background from the start of the session."""
    items.sort(key=lambda item: getattr(item, "originalname", item.name) == SLURM_TEST)  # stable: the others keep their order


def slurm_reason() -> str | None:
    """Why the Slurm test cannot run here (``None``: a Slurm with accounting answers and the executor
    plugin is installed)."""
    import shutil

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


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The tiny demo, run locally on 2 cores (the niced Slurm run beside it takes only what it leaves idle)."""
    out = tmp_path_factory.mktemp("demo_run")
    cfg = out / "tiny.yaml"
    cfg.write_text(TINY_DEMO)
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/config.yaml", str(cfg),
           "--config", f"outdir={out}/results", "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "results"


@pytest.fixture(scope="session", autouse=True)
def slurm_run(request, tmp_path_factory):
    """The tiny demo's complication tables through Slurm (tests/test_slurm.py), when that test is
    selected and a Slurm answers. It starts with the session and runs at nice 19 beside every other
    test, the local tiny demo (``demo_run``) included, on the cores they leave idle; most of its wall
    time is the executor's waits between status checks. ``None`` when not wanted (the test skips with
    the reason)."""
    import datetime
    import signal

    if SLURM_TEST not in {item.originalname for item in request.session.items} or slurm_reason():
        yield None
        return
    out = tmp_path_factory.mktemp("slurm_run")
    (out / "tiny.yaml").write_text(TINY_DEMO)
    partition = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()[0]
    results = out / "results"
    # targets first: --quiet and --config take several values and would swallow them
    targets = [str(results / f"tables/complication_{c}.{ext}") for c in ("SRC", "ILD") for ext in ("tsv", "md")]
    targets.append(str(results / "qc/summary.tsv"))  # the per-sample QC run twice (test_workflow's rerun copies it)
    cmd = ["nice", "-n", str(BACKGROUND_NICE), sys.executable, "-m", "snakemake", *targets, "--profile",
           "profiles/slurm", "--jobs", "8",
           "--configfile", "config/config.yaml", str(out / "tiny.yaml"),
           "--config", f"outdir={results}", "--default-resources", f"slurm_partition={partition.rstrip('*')}",
           "mem_mb=1500", "runtime=30", "--slurm-init-seconds-before-status-checks", "5",
           "--seconds-between-status-checks", "5", "-q"]
    run = {"results": results, "log": out / "snakemake.log",
           "start": (datetime.datetime.now() - datetime.timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S")}
    with open(run["log"], "w") as log:  # sbatch --export=ALL passes the environment to the jobs
        run["proc"] = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=SHARED_CPU_ENV)
    yield run
    proc = run["proc"]
    # the session ended first (-x, interrupted): snakemake cancels its Slurm jobs on SIGTERM
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
