import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sscsig.config import cohort_mode, load_sample_sheet, validate_config
from sscsig.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def config():
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_shipped_config_is_valid(config):
    validate_config(config)
    assert cohort_mode(config) == "demo"
    assert cohort_mode({**config, "samples": "x.tsv"}) == "sheet"


def test_misspelled_key_rejected(config):
    bad = copy.deepcopy(config)
    bad["qc"]["max_pct_mitto"] = 10
    with pytest.raises(InputError, match="qc.*max_pct_mitto"):
        validate_config(bad)
    bad = copy.deepcopy(config)
    bad["sed"] = 1
    with pytest.raises(InputError, match="sed"):
        validate_config(bad)


def test_contrast_with_unknown_complication(config):
    bad = copy.deepcopy(config)
    bad["contrasts"]["SRC_vs_SSc"]["complication"] = "PAH"
    with pytest.raises(InputError, match="PAH"):
        validate_config(bad)


def test_empty_signature_rejected(config):
    bad = copy.deepcopy(config)
    bad["signatures"]["EGR1_NFkB"]["genes"] = []
    with pytest.raises(InputError, match="EGR1_NFkB"):
        validate_config(bad)


def test_demo_sheet_loads(write_sheet, config):
    sheet = load_sample_sheet(write_sheet(), config)
    assert len(sheet) == 27 and sheet["SRC"].dtype == bool


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.drop(columns=["batch"]), r"required column\(s\) \['batch'\]"),
        (lambda d: pd.concat([d, d.iloc[[0]]]), "duplicate sample id.*SSc01_PBMC"),
        (lambda d: d.assign(SRC=["maybe"] + list(d.SRC[1:])), "column 'SRC' must be boolean.*SSc01_PBMC.*maybe"),
        (lambda d: d.assign(age=[None] + list(d.age[1:])), "covariate 'age'.*SSc01_PBMC"),
        (lambda d: d.assign(path=["/nonexistent/x.h5"] + list(d.path[1:])), "SSc01_PBMC.*does not exist"),
        (lambda d: d.drop(columns=["ILD"]), "complication 'ILD'"),
        (lambda d: pd.concat([d, d.iloc[[0]].assign(sample="SSc01_b", age=99)]), "donor 'SSc01' has conflicting 'age'"),
    ],
)
def test_bad_sheets_name_the_problem(write_sheet, config, mutate, message):
    with pytest.raises(InputError, match=message):
        load_sample_sheet(write_sheet(mutate), config)


def test_timepoints_one_baseline_sample_per_donor(write_sheet, config):
    from sscsig.config import design_from_sheet, validate_config

    config = validate_config(config)

    def add_followup(d, tp="week12", base="baseline"):
        extra = d.iloc[[0]].assign(sample="SSc01_w12", timepoint=tp)
        return pd.concat([d.assign(timepoint=base), extra], ignore_index=True)

    sheet = load_sample_sheet(write_sheet(add_followup), config)
    design = design_from_sheet(sheet, config)
    assert len(design.donors) == 27 and design.samples["in_group_tests"].sum() == 27
    obs = pd.DataFrame({"sample": ["SSc01_PBMC", "SSc01_w12", "HD01_PBMC"]})
    assert list(design.cells_in_tests(obs)) == [True, False, True]
    with pytest.raises(InputError, match="donor 'SSc01' has 2 samples at the baseline timepoint 'baseline'"):
        load_sample_sheet(write_sheet(lambda d: add_followup(d, tp="baseline")), config)
    with pytest.raises(InputError, match="donor 'SSc01' has 0 samples at the baseline"):
        load_sample_sheet(write_sheet(lambda d: add_followup(d).assign(
            timepoint=lambda x: ["pre" if s.startswith("SSc01") else "baseline" for s in x["sample"]])), config)
    # an empty timepoint is the baseline
    sheet = load_sample_sheet(write_sheet(lambda d: add_followup(d, base="")), config)
    assert (sheet.loc[sheet["sample"] == "SSc01_PBMC", "timepoint"] == "baseline").all()


def test_design_columns_are_the_contrasts_selectors(config):
    """The columns a per-batch programme background is checked against (annotate's design_columns): the
    group, the complications and any further column a contrast selects on, never a covariate."""
    from sscsig.design import design_columns

    cfg = validate_config(config)
    assert design_columns(cfg["contrasts"], cfg["complications"]) == ["group", *cfg["complications"]]
    cfg["contrasts"]["SRC_vs_SSc"]["case"] = {**cfg["contrasts"]["SRC_vs_SSc"]["case"], "treatment": "MMF"}
    cfg["contrasts"]["SRC_vs_SSc"]["covariates"] = ["age", "smoker"]
    # complications given as SRC only: ILD comes in as another selector, sorted with treatment after group and SRC
    assert design_columns(cfg["contrasts"], ["SRC"]) == ["group", "SRC", "ILD", "treatment"]
