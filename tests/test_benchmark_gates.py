"""benchmarks/annotation_gates.py (the marker calls from protein alone against manual gates) on
generated counts shaped like its data: the loader's TSV path, the per-study subsample, the calls and
the scores, including what a study without B cells or monocytes gets called."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import annotation_gates as G  # noqa: E402

#: gated label -> antibodies high in it (counts ~ 300 vs a background of ~ 8)
POPULATIONS = {"CD4 T": ["CD3", "CD4", "CD127"], "CD8 T": ["CD3", "CD8", "CD45RA"], "B": ["CD19", "CD45RA"],
               "monocytes": ["CD14", "CD4"], "NK": ["CD56", "CD45RA"]}


def _data(tmp_path, *, studies=("s1", "s2"), n=60, sorted_t="s3"):
    rng = np.random.default_rng(0)
    counts, meta = [], []
    plan = [(s, p) for s in studies for p in POPULATIONS] + [(sorted_t, "CD4 T"), (sorted_t, "CD8 T")]
    for study, pop in plan:
        lam = np.full(len(G.ANTIBODIES), 8.0)
        lam[[G.ANTIBODIES.index(a) for a in POPULATIONS[pop]]] = 300.0
        counts.append(rng.poisson(lam * rng.lognormal(0, 0.3, (n, 1)), (n, len(G.ANTIBODIES))))
        fine = {"CD8 T": "naive CD8", "CD4 T": "memory CD4", "monocytes": "classical monocyte"}.get(pop, "undefined")
        meta += [{"study_name": study, "cell_type_l1": pop, "cell_type_l2": fine}] * n
    meta = pd.DataFrame(meta)
    meta.loc[::50, "cell_type_l1"] = "undefined"  # cells the gating left out are not scored
    pd.DataFrame(np.vstack(counts), columns=G.ANTIBODIES).to_csv(tmp_path / "cell_x_adt.tsv.gz", sep="\t",
                                                                 index=False)
    meta.to_csv(tmp_path / "cell_x_feature.tsv.gz", sep="\t", index=False)
    return tmp_path


def test_subsample_caps_each_study_and_is_seeded():
    meta = pd.DataFrame({"study_name": ["a"] * 50 + ["b"] * 10})
    rows = G.subsample(meta, per_study=20, seed=1)
    assert (meta.iloc[rows].study_name.value_counts().to_dict()) == {"a": 20, "b": 10}
    assert len(np.unique(rows)) == len(rows)  # without replacement: the whole of a small study, once each
    assert np.array_equal(rows, G.subsample(meta, per_study=20, seed=1))
    assert not np.array_equal(rows, G.subsample(meta, per_study=20, seed=2))


def test_protein_only_calls_recover_clear_populations_and_are_scored(tmp_path):
    adt, meta = G.load(_data(tmp_path))
    counts, study = adt[G.ANTIBODIES].to_numpy(np.float64), meta["study_name"].to_numpy()
    calls = G.call(counts, study, refine=False, seed=0)
    assert len(calls) == len(meta)
    row, per_class = G.score(calls, meta, cohort="all studies", study="all")
    assert row["n_gated"] == int((meta.cell_type_l1 != "undefined").sum())
    assert row["lineage_macro_f1_without_DC"] >= 0.9, per_class
    assert set(per_class.level) == {"lineage", "fine"}
    # the sorted-T study scored within the cohort: its share called B / Mono is reported, and small
    sel = study == "s3"
    row3, _ = G.score(calls[sel].reset_index(drop=True), meta[sel], cohort="all studies", study="s3")
    assert row3["called_B_where_gates_have_none"] < 0.05 and row3["called_Mono_where_gates_have_none"] < 0.05
    assert "called_B_where_gates_have_none" not in row  # the cohort has B cells


def test_loader_says_what_to_install_without_the_files(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyreadr", None)  # as on a machine without it
    with pytest.raises(SystemExit, match="pyreadr"):
        G.load(tmp_path)
