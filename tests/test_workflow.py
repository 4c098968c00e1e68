"""End-to-end: Snakemake on a tiny demo cohort, then checks of the tables against the contract."""

import json
import subprocess
import sys
from pathlib import Path

import mudata as md
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ["cell_state", "parent", "contrast", "n_case", "n_control", "prop_case", "prop_control",
            "log2fc", "ci_low", "ci_high", "pvalue", "fdr", "testable", "hypothesis"]


@pytest.mark.slow
def test_tables_well_formed(demo_run):
    for comp in ("SRC", "ILD"):
        t = pd.read_csv(demo_run / f"tables/complication_{comp}.tsv", sep="\t")
        assert list(t.columns[: len(REQUIRED)]) == REQUIRED
        assert t.cell_state.nunique() >= 15
        assert set(t.contrast) == {f"{comp}_vs_SSc", f"{comp}_vs_HD"}
        testable = t.testable.astype(bool)
        assert t.loc[testable, "pvalue"].between(0, 1).all()
        assert t.loc[testable, "fdr"].ge(t.loc[testable, "pvalue"] - 1e-12).all()
        assert t.loc[~testable, "pvalue"].isna().all() and t.loc[~testable, "reason"].notna().all()
        assert (t.loc[testable, "ci_low"] <= t.loc[testable, "log2fc"]).all()
        assert (t.loc[testable, "log2fc"] <= t.loc[testable, "ci_high"]).all()
        hyp = t[t.hypothesis == "hypothesis"]
        want = "CD14.EGR1" if comp == "SRC" else "CD8.TEM_T2ISG"
        assert set(hyp.cell_state) == {want}
        assert (demo_run / f"tables/complication_{comp}.md").read_text().startswith(f"# Complication {comp}")
        assert (demo_run / f"tables/complication_{comp}.tsv.provenance.json").exists()
        # composition of all cells, Milo and pseudobulk summaries joined per state and contrast
        for col in ("log2fc_all", "fdr_all", "milo_logfc", "milo_frac_sig", "de_genes_tested",
                    "de_top_up", "prot_top_up"):
            assert col in t.columns
        assert t["milo_logfc"].notna().mean() > 0.5 and t["log2fc_all"].notna().any()
        assert (t["de_genes_tested"].fillna(0) > 0).any()
    for contrast in ("SRC_vs_SSc", "ILD_vs_SSc"):
        de = pd.read_csv(demo_run / f"pseudobulk/{contrast}.genes.tsv", sep="\t")
        assert {"gene", "log2FoldChange", "pvalue", "padj", "cell_state"} <= set(de.columns) and len(de)
        enr = pd.read_csv(demo_run / f"pseudobulk/{contrast}.enrichment.tsv", sep="\t")
        assert "HALLMARK_TNFA_SIGNALING_VIA_NFKB" in set(enr.gene_set)
    nh = pd.read_csv(demo_run / "milo/nhoods.tsv", sep="\t")
    assert set(nh.contrast) >= {"SRC_vs_SSc", "ILD_vs_SSc"} and (nh.design == "~age + condition").all()


@pytest.mark.slow
def test_annotation_agrees_with_truth(demo_run):
    """Tiny demo (150 cells/donor, totalVI 60 epochs): F1 against the simulator's truth on the true
    singlets QC kept. The default demo (800 cells/donor, auto epochs) reaches lineage 0.97 / state 0.90
    (README, `benchmarks/annotation.py`); here the state bar is lower because totalVI sees 5x fewer cells
    for 60 epochs."""
    from sscsig.annotate import annotation_vs_truth

    obs = md.read_h5mu(demo_run / "cohort/annotated.h5mu").obs
    summary, table = annotation_vs_truth(obs, demo_run / "demo/truth/cells.tsv")
    assert summary["lineage_macro_f1"] >= 0.90 and summary["state_macro_f1"] >= 0.75, summary
    assert summary["f1_CD14.EGR1"] >= 0.80 and summary["f1_CD8.TEM_T2ISG"] >= 0.80, summary
    assert summary["kept_true_singlets"] > 0.9 * len(obs) and set(table["level"]) == {"lineage", "cell_state"}
    assert {"lineage", "cell_state", "lineage_confidence", "cell_state_confidence"} <= set(obs.columns)
    # every state the twin has is a population of its own: its calls stand out on its antibodies, and no
    # table carries the warning for a significant state that does not
    sep = pd.read_csv(demo_run / "cohort/state_separation.tsv", sep="\t")
    judged = sep[(sep["cells"] >= 30) & sep["substate_of"].isna()]
    assert len(judged) >= 15 and judged["stands_out"].astype(bool).all(), judged
    assert sep.set_index("state").loc["CD14.EGR1", "substate_of"] == "CD14.Mono"
    for comp in ("SRC", "ILD"):
        assert "do not stand out" not in (demo_run / f"tables/complication_{comp}.md").read_text()


@pytest.mark.slow
def test_totalvi_and_wnn_mix_batches_better_than_unintegrated(demo_run):
    m = pd.read_csv(demo_run / "integration/metrics.tsv", sep="\t").set_index("embedding")
    assert {"totalVI", "WNN", "Harmony", "unintegrated (PCA)"} <= set(m.index)
    assert bool(m.loc["totalVI", "pipeline_method"]) and m["pipeline_method"].sum() == 1
    raw = m.loc["unintegrated (PCA)"]
    for name in ("totalVI", "WNN"):
        assert m.loc[name, "ilisi"] > raw["ilisi"] + 0.05 and m.loc[name, "batch_asw"] > raw["batch_asw"], m
    integrated = md.read_h5mu(demo_run / "cohort/annotated.h5mu")
    assert integrated.uns["integration"]["method"] == "totalvi"
    assert integrated["prot"].layers["totalvi_denoised"].shape == integrated["prot"].shape
    assert (demo_run / "cohort/totalvi_model/model.pt").exists()


@pytest.mark.slow
def test_qc_outputs_and_dsb_in_the_run(demo_run):
    summary = pd.read_csv(demo_run / "qc/summary.tsv", sep="\t")
    assert len(summary) == 29 + 10  # 27 donors, SSc01 at three timepoints; 10 tissue samples
    summary = summary[~summary["sample"].str.endswith(("_kidney", "_lung"))]  # blood: raw droplets, DSB
    assert (summary.cells_in == summary.cells_kept + summary.cells_removed).all()
    assert {"removed_isotype_outlier", "removed_protein_doublet", "thr_genes", "thr_pct_mito_max"} <= set(summary)
    assert (summary.protein_norm == "dsb").all() and (summary.dsb_empty_droplets >= 100).all()
    for s in summary["sample"]:
        assert (demo_run / f"qc/figures/{s}.png").stat().st_size > 10_000
    prot = md.read_h5mu(demo_run / "cohort/annotated.h5mu")["prot"]
    assert "dsb" in prot.layers and np.isfinite(prot.layers["dsb"]).all()


@pytest.mark.slow
def test_every_rule_logged_and_benchmarked(demo_run):
    assert (demo_run / "qc/summary.tsv").exists()
    bench = list((demo_run / "benchmarks").rglob("*.tsv"))
    rules = {"simulate", "design", "qc_summary", "merge", "integrate", "annotate", "integration_metrics",
             "abundance", "milo", "signatures", "figures_cohort", "figures_stats"}
    assert {b.stem for b in bench} >= rules | {"pseudobulk"} and len(bench) >= 27 + 2 + len(rules)
    for b in bench:
        assert "max_rss" in b.read_text().splitlines()[0]
    logs = {p.stem for p in (demo_run / "logs").rglob("*.log")}
    assert logs >= rules | {"SSc01_PBMC", "pseudobulk", "SRC"}
    assert "totalVI" in (demo_run / "logs/integrate.log").read_text()  # the script's logging reaches the log
    assert not (demo_run / "summary.html").exists()  # one report: snakemake --report
    for png in (demo_run / "figures").glob("*.png"):
        assert png.stat().st_size > 5000


@pytest.mark.slow
def test_design_is_written_once_and_read_by_the_statistics(demo_run):
    """The design rule writes the validated sheet, the donors and each contrast's groups; no other rule
    reads the sample sheet (rule files: only design.smk names SHEET as an input)."""
    donors = pd.read_csv(demo_run / "design/donors.tsv", sep="\t", index_col="donor")
    groups = pd.read_csv(demo_run / "design/groups.tsv", sep="\t", index_col="donor")
    assert len(donors) == 27 and list(groups.columns) == ["SRC_vs_SSc", "SRC_vs_HD", "ILD_vs_SSc", "ILD_vs_HD"]
    samples = pd.read_csv(demo_run / "design/samples.tsv", sep="\t")
    assert len(samples) == 29 and samples["in_group_tests"].sum() == 27  # one sample per donor in the tests
    counts = pd.read_csv(demo_run / "abundance/donor_state_counts.tsv", sep="\t", index_col=0)
    obs = md.read_h5mu(demo_run / "cohort/annotated.h5mu").obs
    baseline = obs[(obs["donor"] == "SSc01") & (obs["sample"] == "SSc01_PBMC") & (obs["cell_state"] != "Unassigned")]
    assert counts.loc["SSc01"].sum() == len(baseline)  # the later samples of SSc01 are not pooled in
    assert (groups["SRC_vs_SSc"] == 1).sum() == 4 and (groups["SRC_vs_SSc"] == 0).sum() == 17
    assert (groups["ILD_vs_SSc"] == 1).sum() == 10 and (groups["ILD_vs_SSc"] == 0).sum() == 7
    assert json.loads((demo_run / "design/warnings.json").read_text()) == []
    # the batch check of the calls, on the same donors: the tiny demo's 3 batches hold every group
    from sscsig.stats import BATCH_COLUMNS

    check = pd.read_csv(demo_run / "abundance/batch_association.tsv", sep="\t")
    assert list(check.columns) == BATCH_COLUMNS and set(check["cell_state"]) == set(counts.columns)
    tested = check[check["testable"]]
    assert len(tested) >= 10 and (tested["n_batches"] == 3).all() and (tested["n_donors"] <= 27).all()
    assert tested["pvalue"].between(0, 1).all() and check.loc[~check["testable"], "reason"].str.len().gt(0).all()
    assert (demo_run / "figures/batch_check.png").stat().st_size > 10_000
    readers = [f.name for f in (ROOT / "workflow/rules").glob("*.smk") if "SHEET" in f.read_text()]
    assert sorted(readers) == ["common.smk", "design.smk"]


@pytest.mark.slow
def test_lint_is_clean(tmp_path):
    tissue = tmp_path / "tissue.yaml"  # the tissue rule file is included only with tissue samples
    tissue.write_text("demo:\n  with_tissue: true\n")
    for extra in ([], ["--configfile", "config/config.yaml", str(tissue), "--config", f"outdir={tmp_path}/out"]):
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", *extra], cwd=ROOT, capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Lints for" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def _sheet_with_changed_sample(small_cohort, tmp_path, *, n_cells=None, gex_only=False, name="changed"):
    """The small cohort's sheet (absolute paths) with its first sample replaced by an .h5ad of its
    first ``n_cells`` cells (all with None), RNA only with ``gex_only``. Returns (sheet path, sheet,
    the new file)."""
    import anndata as ad
    import scanpy as sc

    sheet = pd.read_csv(small_cohort / "samples.tsv", sep="\t")
    sheet["path"] = [str(small_cohort / p) for p in sheet["path"]]
    a = sc.read_10x_h5(sheet.loc[0, "path"], gex_only=gex_only)
    a = a[:n_cells].copy() if n_cells else a
    a.var_names_make_unique()
    path = tmp_path / f"{name}.h5ad"
    ad.AnnData(X=a.X, obs=a.obs, var=a.var[["feature_types"]]).write_h5ad(path)
    sheet.loc[0, "path"] = str(path)
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    return tmp_path / "samples.tsv", sheet, path


@pytest.mark.slow
def test_user_sample_sheet_runs(small_cohort, tmp_path):
    """`--config samples=PATH outdir=DIR` runs a cohort given by a sheet (here: a simulated one, one
    sample cut to 30 cells and dropped by ``qc.on_too_few_cells: drop`` with a warning that reaches
    the tables, their provenance and the report)."""
    _, sheet, _ = _sheet_with_changed_sample(small_cohort, tmp_path, n_cells=30, name="small")
    # biomarker stage off: this run checks sheet mode and the drop warning (and that the stage can be off)
    # and WNN: the integration is not what it checks (totalVI's training was 72 of its 205 s; the tiny demo,
    # the SIGKILL rerun and the Slurm run cover totalVI end to end)
    (tmp_path / "drop.yaml").write_text("qc:\n  on_too_few_cells: drop\nbiomarker:\n  enabled: false\n"
                                        "integration:\n  method: wnn\n")
    out = tmp_path / "sheet_run"
    # the complication tables and what they need (the demo run builds `all`: integration metrics and figures)
    targets = [str(out / f"tables/complication_{c}.html") for c in ("SRC", "ILD")]
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--configfile", "config/config.yaml",
           str(tmp_path / "drop.yaml"), "--config", f"samples={tmp_path}/samples.tsv", f"outdir={out}", "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for comp in ("SRC", "ILD"):
        t = pd.read_csv(out / f"tables/complication_{comp}.tsv", sep="\t")
        assert list(t.columns[: len(REQUIRED)]) == REQUIRED and len(t) > 20
    assert not (out / "demo").exists()  # nothing simulated in sheet mode
    # the stage is off: the whole workflow (`all`, dry run) has no biomarker job left to run
    rest = subprocess.run(cmd[:3] + cmd[3 + len(targets):-1] + ["-n"], cwd=ROOT, capture_output=True, text=True)
    assert rest.returncode == 0, rest.stderr[-3000:]
    jobs = {line.split()[0] for line in rest.stdout.split("Job stats:")[1].splitlines()[3:] if line.strip()}
    assert {"all", "integration_metrics", "figures_cohort"} <= jobs and not [j for j in jobs if "biomarker" in j], jobs
    dropped = sheet.loc[0, "sample"]
    assert dropped not in set(md.read_h5mu(out / "cohort/merged.h5mu").obs["sample"])
    assert f"'{dropped}'" in (out / "tables/complication_SRC.md").read_text()
    assert any(dropped in w for w in json.loads((out / "tables/complication_ILD.tsv.provenance.json")
                                                .read_text())["warnings"])
    assert dropped in (out / "tables/complication_SRC.html").read_text()  # the report's table item


def test_the_rule_files_load_no_heavy_library():
    """Every Snakemake start builds the DAG, each Slurm job's too, and with it imports what the rule
    files import from sscsig. Those modules leave scanpy, scipy.stats, torch, scikit-learn and
    matplotlib to the scripts that use them: with scanpy and scipy.stats loaded through the tissue
    package, the tiny demo's dry run took 6.2 s instead of 3.0 s (2-core AMD EPYC)."""
    import re

    sources = [ROOT / "Snakefile", *sorted((ROOT / "workflow/rules").glob("*.smk"))]
    modules = sorted({m for f in sources for m in re.findall(r"^from (sscsig[\w.]*) import", f.read_text(), re.M)})
    assert {"sscsig.config", "sscsig.annotate", "sscsig.tissue"} <= set(modules), modules
    heavy = ["scanpy", "scipy.stats", "torch", "scvi", "sklearn", "matplotlib.pyplot", "pertpy", "pydeseq2"]
    code = f"import sys\nimport {', '.join(modules)}\nprint(' '.join(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [], f"the rule files' imports load {proc.stdout.split()}"


def test_bad_config_stops_before_any_output(tmp_path):
    out = tmp_path / "never"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--config", f"outdir={out}", "seeed=3", "-n"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "seeed" in proc.stdout + proc.stderr
    assert not out.exists()


def test_a_group_key_that_is_not_a_sheet_column_stops_before_any_output(tmp_path):
    """annotation.substate_group_key (or gate_group_key, or integration.batch_key) names a sample-sheet
    column; a typo is one console line naming the key and the sheet's columns at parse time, not an error in
    the annotate, integrate or abundance job."""
    for section, key in (("annotation", "substate_group_key"), ("integration", "batch_key")):
        out = tmp_path / "never"
        extra = tmp_path / "extra.yaml"
        extra.write_text(f"{section}:\n  {key}: lane\n")
        cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--configfile", "config/config.yaml", str(extra),
               "--config", f"outdir={out}", "-n"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode != 0
        line = next(x for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("sscsig: error:"))
        assert f"{section}.{key} 'lane': not a column of the sample sheet" in line and "batch" in line
        assert not out.exists()


def _snakemake(*args, out, env=None, config=(), targets=()):
    import os

    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--configfile", "config/config.yaml",
           *args, "--config", f"outdir={out}", *config, "-q"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})


def _tables(results: Path) -> dict[str, bytes]:
    files = sorted(results.glob("tables/complication_*.tsv")) + sorted(results.glob("tables/*.md")) + \
        sorted(results.glob("abundance/*.tsv")) + sorted(results.glob("signatures/*.tsv")) + \
        [results / "qc/summary.tsv", results / "tables/tissue_kidney.tsv", results / "tissue/trajectory_kidney.tsv"]
    return {str(f.relative_to(results)): f.read_bytes() for f in files}


@pytest.mark.slow
def test_sigkill_during_integration_then_rerun_incomplete_gives_identical_tables(demo_run, tmp_path):
    """Kill the whole run (SIGKILL, no cleanup) while `integrate` is computing; restart with
    `--rerun-incomplete`; the tables equal those of the uninterrupted run (`demo_run`) byte for byte,
    which is also the two-run identity check of docs/reproducibility.md. The second run starts from
    the first's simulated data and per-sample QC (copied with their times; both have byte-level tests
    of their own, and the Slurm test repeats them): it re-runs `design`, `merge`, `qc_summary` and
    everything from `integrate` on."""
    import os
    import shutil
    import signal
    import time

    cfg = demo_run.parent / "tiny.yaml"
    out = tmp_path / "results"
    shutil.copytree(demo_run / "demo", out / "demo")  # copy2: the files keep their times, so neither step re-runs
    shutil.copytree(demo_run / "qc", out / "qc", ignore=shutil.ignore_patterns("summary.*", "stress.*"))  # re-run
    targets = [*(str(out / f"tables/complication_{c}.md") for c in ("SRC", "ILD")), str(out / "qc/summary.tsv"),
               str(out / "tables/tissue_kidney.tsv")]  # the kidney's mapping and trajectory (seeded) too
    cmd = [sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--configfile", "config/config.yaml",
           str(cfg), "--config", f"outdir={out}", "-q"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    log = out / "logs/integrate.log"
    deadline = time.time() + 600
    while not log.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert log.exists() and proc.poll() is None, "integrate never started"
    time.sleep(4)  # inside the integration step
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "cohort/integrated.h5mu").exists()  # atomic: nothing half-written under the name
    assert (out / "cohort/merged.h5mu").exists() and not (out / "tables").exists()
    unlock = _snakemake(str(cfg), "--unlock", out=out)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    proc2 = _snakemake(str(cfg), "--rerun-incomplete", out=out, targets=targets)
    assert proc2.returncode == 0, proc2.stdout[-3000:] + proc2.stderr[-3000:]
    assert not list((out / "cohort").glob(".*.tmp"))  # the killed write's temporary file is gone
    first, second = _tables(demo_run), _tables(out)
    assert set(first) == set(second) and len(first) >= 9
    for name in first:
        assert first[name] == second[name], f"{name} differs between the two runs"


def _workflow_copy(dest: Path) -> Path:
    """The workflow (Snakefile, rules, scripts, config) copied to ``dest``, to change a script there."""
    import shutil

    dest.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", dest)
    for d in ("workflow", "config", "envs"):
        shutil.copytree(ROOT / d, dest / d)
    return dest


@pytest.mark.slow
def test_failed_job_leaves_no_outputs(small_cohort, tmp_path):
    """A job that fails after writing its outputs leaves none of them: Snakemake removes the outputs
    of failed jobs, and the run stops with the error. The failure is injected into a copy of the
    workflow (the qc script raises after its last write), not into the pipeline's code."""
    wf = _workflow_copy(tmp_path / "wf")
    script = wf / "workflow/scripts/qc.py"
    script.write_text(script.read_text() + "\n    raise RuntimeError('injected failure after the outputs were written')\n")
    out = tmp_path / "failing"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--until", "qc_summary", "--config", f"outdir={out}",
           f"samples={small_cohort}/samples.tsv", "-q"]
    proc = subprocess.run(cmd, cwd=wf, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "injected failure" in "".join(p.read_text() for p in (out / "logs/qc").glob("*.log"))
    assert "RuntimeError: injected failure" in proc.stderr  # one line on the console names it
    qc = out / "qc"
    left = [p.name for p in qc.rglob("*") if p.is_file()] if qc.exists() else []
    assert left == [], left


def test_input_file_errors_stop_the_run_before_any_job_with_one_line(small_cohort, tmp_path):
    """An RNA-only library in the sheet: `snakemake` (and `sscsig validate`) open every file's header
    at start-up and stop with one line naming the sample and the file; no job runs, nothing is written."""
    sheet, table, bad = _sheet_with_changed_sample(small_cohort, tmp_path, gex_only=True, name="rna_only")
    sample = table.loc[0, "sample"]
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--config", f"samples={sheet}",
                           f"outdir={out}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert [line for line in text.splitlines() if "sscsig" in line or "Error" in line] == [
        f"sscsig: error: sample {sample!r}: {bad} has no 'Antibody Capture' features "
        "(found ['Gene Expression']); sscsig needs the antibody-derived tags of a CITE-seq library"]
    assert "Traceback" not in text
    assert not out.exists()
    v = subprocess.run([sys.executable, "-m", "sscsig.cli", "validate", "--samples", str(sheet)], cwd=ROOT,
                       capture_output=True, text=True)
    assert v.returncode == 2 and f"sample {sample!r}: {bad} has no 'Antibody Capture' features" in v.stderr


@pytest.mark.slow
def test_input_error_inside_a_job_is_one_console_line_and_not_retried(small_cohort, tmp_path):
    """A sample that QC leaves with too few cells (qc.on_too_few_cells: stop) fails its job with one
    console line naming the rule, the sample and the reason; the traceback is in the job's log; with
    the default profile the deterministic failure is not retried."""
    _, sheet, _ = _sheet_with_changed_sample(small_cohort, tmp_path, n_cells=30, name="small")
    out = tmp_path / "run"
    s = sheet.loc[0, "sample"]
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/default", "--cores", "2",
                           "--until", "qc_summary", "--config", f"samples={tmp_path}/samples.tsv", f"outdir={out}"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("sscsig: error:")]
    assert len(errors) == 1, errors  # once: not retried
    assert errors[0].startswith(f"sscsig: error: rule qc (sample={s}): sample {s!r}: ") and "cells left after QC" in errors[0]
    log = (out / f"logs/qc/{s}.log").read_text()
    assert "Traceback" in log and "InputError" in log


@pytest.mark.slow
def test_snakemake_report_builds_and_renders_in_a_browser(demo_run, tmp_path):
    """`snakemake --report` after the run; Debian's chromium renders it headless: a non-blank
    screenshot, and the rendered page lists the report's categories and figures."""
    import shutil

    cfg = demo_run.parent / "tiny.yaml"
    report = demo_run / "report.html"
    proc = _snakemake(str(cfg), "--report", str(report), out=demo_run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report.stat().st_size > 200_000
    for png in (demo_run / "figures").glob("*.png"):
        assert png.stat().st_size > 5_000, png
    assert len(list((demo_run / "figures").glob("volcano_*.png"))) == 4
    m = pd.read_csv(demo_run / "integration/metrics.tsv", sep="\t")
    assert list(m.embedding) == ["totalVI", "WNN", "Harmony", "unintegrated (PCA)"]
    assert m[["batch_asw", "ilisi", "celltype_asw", "ari", "nmi"]].apply(lambda c: c.between(0, 1)).all().all()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (CI installs it: .ci/run)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--virtual-time-budget=15000"]
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1400,1000", report.as_uri()],
                   capture_output=True, text=True, timeout=180)
    assert shot.exists() and shot.stat().st_size > 20_000
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)
    assert pixels.std() > 0.05  # not a blank page
    dom = subprocess.run([browser, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=180).stdout
    for word in ("QC", "Annotation", "Abundance", "Signatures", "Tables", "Tissue"):
        assert word in dom, word


@pytest.mark.slow
def test_biomarker_outputs_and_predict_on_new_samples(demo_run, tmp_path):
    """Per complication: metrics (signature vs baseline, AUC with CI and permutation p), out-of-fold
    predictions, feature selection, PCA and one saved model per contrast; `sscsig predict` scores
    samples with a saved model and refuses a file it cannot use."""
    from sscsig.stats._biomarker import METRIC_COLUMNS

    for comp, contrasts in (("SRC", ["SRC_vs_SSc", "SRC_vs_HD"]), ("ILD", ["ILD_vs_SSc", "ILD_vs_HD"])):
        m = pd.read_csv(demo_run / f"biomarker/{comp}/metrics.tsv", sep="\t")
        assert list(m.columns) == METRIC_COLUMNS and set(m["model"]) == {"signature", "baseline"}
        assert (m["n_permutations"] >= 1000).all() and m["auc"].between(0, 1).all()
        assert (m["auc_ci_low"] <= m["auc"]).all() and (m["auc"] <= m["auc_ci_high"]).all()
        p = pd.read_csv(demo_run / f"biomarker/{comp}/predictions.tsv", sep="\t")
        assert {"donor", "truth", "probability", "fold", "contrast", "model"} <= set(p.columns)
        for c in contrasts:
            assert (demo_run / f"biomarker/{comp}/model/{c}/model.joblib").exists()
        assert {"PC1", "PC2", comp} <= set(pd.read_csv(demo_run / f"biomarker/{comp}/pca.tsv", sep="\t").columns)
        assert (demo_run / f"figures/biomarker_roc_{comp}.png").stat().st_size > 10_000
    src = m if comp == "SRC" else pd.read_csv(demo_run / "biomarker/SRC/metrics.tsv", sep="\t")
    assert "wide" in src[src.contrast == "SRC_vs_SSc"]["note"].iloc[0]  # 4 SRC donors: said, not hidden
    out = tmp_path / "risk.tsv"
    cmd = [sys.executable, "-m", "sscsig.cli", "predict", "--model", str(demo_run / "biomarker/SRC/model/SRC_vs_SSc"),
           "--annotated", str(demo_run / "cohort/annotated.h5mu"), "--sheet", str(demo_run / "demo/samples.tsv"),
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    risk = pd.read_csv(out, sep="\t")
    assert len(risk) == 29 and risk["probability"].between(0, 1).all() and "donor" in risk
    bad = subprocess.run(cmd[:-6] + ["--annotated", str(demo_run / "qc/summary.tsv"), "--sheet",
                                     str(demo_run / "demo/samples.tsv"), "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "not an h5mu file" in bad.stderr


@pytest.mark.slow
def test_stress_check_outputs(demo_run):
    s = pd.read_csv(demo_run / "qc/stress.tsv", sep="\t")
    assert len(s) == 29 and {"sample", "donor", "batch", "stress_all", "stress_Mono"} <= set(s.columns)
    assert s["stress_Mono"].notna().all()
    adj = pd.read_csv(demo_run / "abundance/stress_adjusted.tsv", sep="\t")
    assert {"log2fc_stress_adj", "fdr_stress_adj"} <= set(adj.columns) and adj["pvalue_stress_adj"].notna().any()
    t = pd.read_csv(demo_run / "tables/complication_SRC.tsv", sep="\t")
    assert t.loc[t.testable.astype(bool), "log2fc_stress_adj"].notna().mean() > 0.8
    assert (demo_run / "figures/stress.png").stat().st_size > 10_000


@pytest.mark.slow
def test_longitudinal_donor_is_followed_over_time(demo_run):
    """SSc01 sampled before SRC onset, at onset (baseline, in the group tests) and after treatment:
    per sample the hypothesis states' shares and each complication's biomarker risk."""
    t = pd.read_csv(demo_run / "biomarker/longitudinal.tsv", sep="\t")
    assert list(t["sample"]) == ["SSc01_pre", "SSc01_PBMC", "SSc01_post"]  # ordered by time
    assert list(t["in_training"]) == [False, True, False]
    assert {"share:CD14.EGR1", "share:CD8.TEM_T2ISG", "risk:SRC_vs_SSc", "risk:ILD_vs_SSc"} <= set(t.columns)
    assert t["risk:SRC_vs_SSc"].between(0, 1).all() and t["share:CD14.EGR1"].notna().all()
    assert (demo_run / "figures/longitudinal.png").stat().st_size > 10_000
