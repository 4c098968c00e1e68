"""Bad input gets a clear error naming the file, sample, column or key, and leaves nothing half-written.

The cases of the "bad input" issue that are not already covered in test_config.py (sheet columns,
duplicate ids, conflicting donors, non-boolean complications, NaN covariates, missing files,
misspelled keys), test_ingest_qc.py (corrupt h5, no Antibody Capture, non-integer counts) and
test_abundance.py (too few donors -> testable = false).
"""

import copy
import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from sscsig import io as _io
from sscsig.annotate import load_markers
from sscsig.config import design_from_sheet, load_sample_sheet, validate_config
from sscsig.errors import InputError
from sscsig.io import read_sample
from sscsig.qc import check_enough_cells, qc_sample
from sscsig.stats import score_cells

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def config():
    return validate_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["contrasts"]["SRC_vs_SSc"]["control"].update({"diagnosis": "SSc"}),
         "column 'diagnosis' used by a contrast is missing"),
        (lambda c: c["contrasts"]["SRC_vs_HD"]["control"].update({"group": "Healthy"}),
         "SRC_vs_HD.*value 'Healthy' never occurs in column 'group'"),
    ],
)
def test_contrast_with_unknown_column_or_value_stops_up_front(write_sheet, config, edit, message):
    edit(config)
    with pytest.raises(InputError, match=message):
        load_sample_sheet(write_sheet(), config)


def test_duplicated_gene_symbols_are_made_unique_with_a_warning(tmp_path, caplog):
    var = pd.DataFrame({"feature_types": ["Gene Expression"] * 3 + ["Antibody Capture"]},
                       index=["CD4", "CD4", "MS4A1", "CD3_TotalSeqB"])
    a = ad.AnnData(X=np.arange(20, dtype=np.float32).reshape(5, 4), var=var)
    a.write_h5ad(tmp_path / "dup.h5ad")
    with caplog.at_level(logging.WARNING):
        m = read_sample(tmp_path / "dup.h5ad", sample="S9")
    assert m["rna"].var_names.is_unique and list(m["rna"].var_names[:2]) == ["CD4", "CD4-1"]
    assert "S9" in caplog.text and "duplicated gene symbols" in caplog.text and "CD4" in caplog.text
    assert list(m["prot"].var_names) == ["ADT_CD3"]


def test_duplicated_antibodies_are_an_error(tmp_path):
    var = pd.DataFrame({"feature_types": ["Gene Expression", "Antibody Capture", "Antibody Capture"]},
                       index=["CD4", "CD3_TotalSeqB", "CD3"])
    ad.AnnData(X=np.ones((3, 3), dtype=np.float32), var=var).write_h5ad(tmp_path / "dup.h5ad")
    with pytest.raises(InputError, match="S8.*duplicated antibody names.*ADT_CD3"):
        read_sample(tmp_path / "dup.h5ad", sample="S8")


def test_empty_marker_lists_name_the_entry(tmp_path):
    base = yaml.safe_load((ROOT / "config/markers.yaml").read_text())
    bad = copy.deepcopy(base)
    lineage = next(iter(bad["lineages"]))
    bad["lineages"][lineage] = {k: [] for k in bad["lineages"][lineage]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(InputError, match=f"m.yaml: lineages.{lineage} has no markers"):
        load_markers(tmp_path / "m.yaml")
    (tmp_path / "e.yaml").write_text("lineages: {}\nstates: {}\n")
    with pytest.raises(InputError, match="e.yaml: 'lineages' is missing or empty"):
        load_markers(tmp_path / "e.yaml")
    load_markers(ROOT / "config/markers.yaml")  # the shipped file is fine


def test_absent_signature_genes_warn_and_report_coverage_then_error_when_too_few(caplog):
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(60)] + ["GBP5", "CXCR3"]
    rna = ad.AnnData(X=np.log1p(rng.poisson(2, (80, len(genes))).astype(np.float32)),
                     var=pd.DataFrame(index=genes), obs=pd.DataFrame(index=[f"c{i}" for i in range(80)]))
    sigs = {"T2": {"genes": ["GBP5", "CXCR3", "NOTAGENE"], "states": ["CD8.TEM"]}}
    with caplog.at_level(logging.WARNING):
        scores, cover = score_cells(rna, sigs, seed=0, min_coverage=0.5)
    row = cover.set_index("signature").loc["T2"]
    assert row["present"] == 2 and row["absent"] == "NOTAGENE" and row["coverage"] == pytest.approx(2 / 3)
    assert "NOTAGENE" in caplog.text and np.isfinite(scores["T2"]).all()
    with pytest.raises(InputError, match="signature 'T2': only 2/3 genes.*coverage 67%"):
        score_cells(rna, sigs, seed=0, min_coverage=0.9)


def test_zero_cells_left_after_qc(small_cohort):
    m = read_sample(small_cohort / "HD04_PBMC/filtered_feature_bc_matrix.h5", sample="HD04_PBMC")
    res = qc_sample(m, min_genes=100_000, scrublet=False, on_too_few_cells="drop", seed=0)
    assert res.summary["cells_kept"] == 0 and res.kept.n_obs == 0
    assert res.summary["removed_low_genes"] == res.summary["cells_in"]
    assert res.summary["dropped"] and "sample dropped" in res.summary["warning"]
    with pytest.raises(InputError, match="sample 'HD04_PBMC': 0 cells left after QC"):
        qc_sample(m, min_genes=100_000, scrublet=False, on_too_few_cells="stop", seed=0)
    with pytest.raises(InputError, match="sample 'HD04_PBMC': 0 cells left after QC"):
        check_enough_cells(res.summary, min_cells=1, policy="stop")
    assert "sample dropped" in check_enough_cells(res.summary, min_cells=1, policy="drop")


def test_complication_confounded_with_batch_is_a_warning(small_cohort, config):
    sheet = load_sample_sheet(small_cohort / "samples.tsv", config)
    assert design_from_sheet(sheet, config).warnings == []  # the demo design is not confounded
    conf = sheet.copy()
    conf["batch"] = np.where(conf["SRC"], "B_src", "B_other")
    warnings = design_from_sheet(conf, config).warnings
    assert any("'SRC_vs_SSc' is perfectly confounded with batch" in w for w in warnings)
    assert any("complication 'SRC' is perfectly confounded" in w for w in warnings)
    assert not any("ILD" in w for w in warnings)


def test_atomic_writers_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "table.tsv"
    with pytest.raises(RuntimeError):
        with _io.atomic_path(target) as tmp:
            tmp.write_text("half a tab")
            raise RuntimeError("killed mid-write")
    assert not target.exists() and list(target.parent.iterdir()) == []

    class Boom(pd.DataFrame):
        def to_csv(self, *a, **k):  # noqa: D102
            Path(a[0]).write_text("partial")
            raise OSError("disk full")

    with pytest.raises(OSError):
        _io.write_tsv(Boom({"a": [1]}), target)
    assert not target.exists() and list(target.parent.iterdir()) == []
    _io.write_tsv(pd.DataFrame({"a": [1.0]}), target, config={"seed": 4}, step="t")
    prov = yaml.safe_load(Path(f"{target}.provenance.json").read_text())
    assert prov["seed"] == 4 and prov["step"] == "t" and len(prov["config_sha256"]) == 64
    assert {"sscsig", "scanpy", "anndata", "mudata"} <= set(prov["versions"])
