"""The shape of the project: stages import shared helpers only, every config key reaches a function
whose default is the schema's, and every rule has its own script, log, benchmark and resources."""

import ast
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src/sscsig"
SHARED = {"config", "design", "protein", "rna", "io", "errors", "neighbors", "training", "mapping", "nbglm", "scoring"}
FAMILIES = {"qc", "integrate", "annotate", "stats", "tissue", "report", "demo"}


def _sscsig_imports(path: Path) -> set[str]:
    """Top-level sscsig modules a file imports (relative or absolute)."""
    tree = ast.parse(path.read_text())
    pkg_parts = path.relative_to(PKG.parent).with_suffix("").parts  # ('sscsig', 'stats', '_milo')
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg_parts[: len(pkg_parts) - node.level])
                mod = base + (node.module.split(".") if node.module else [])
                names = [mod] if node.module else [mod + [a.name] for a in node.names]
            elif node.module and node.module.split(".")[0] == "sscsig":
                names = [node.module.split(".")]
            else:
                continue
            for n in names:
                if len(n) > 1:
                    out.add(n[1])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "sscsig" and len(parts) > 1:
                    out.add(parts[1])
    return out


def test_ls_shows_the_stage_families_and_shared_helpers():
    entries = {p.stem for p in PKG.iterdir() if not p.name.startswith("__") and p.name != "data"}
    assert FAMILIES | SHARED <= entries
    assert entries <= FAMILIES | SHARED | {"cli"}, entries - FAMILIES - SHARED


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_stage_imports_shared_helpers_never_another_stage(family):
    for f in (PKG / family).glob("*.py"):
        other = _sscsig_imports(f) - SHARED - {family}
        assert not other, f"{f.relative_to(ROOT)} imports stage family {sorted(other)}"


def test_shared_helpers_import_no_stage():
    for f in [*PKG.glob("*.py"), *(PKG / "io").glob("*.py")]:
        if f.stem in ("cli", "__init__"):
            continue
        assert not (_sscsig_imports(f) & FAMILIES), f


def test_base_statistics_modules_do_not_import_each_other():
    """abundance, milo, pseudobulk and signatures stand alone; the composite checks built on them
    (biomarker models, the stress check) may call them."""
    for name in ("_abundance", "_milo", "_pseudobulk", "_signatures"):
        text = (PKG / "stats" / f"{name}.py").read_text()
        assert not (_sscsig_imports(PKG / "stats" / f"{name}.py") - SHARED), name
        assert not re.search(r"from \._\w+ import", text), name


def _signature_defaults(func) -> dict:
    return {k: p.default for k, p in inspect.signature(func).parameters.items()
            if p.kind is p.KEYWORD_ONLY}


def _norm(v):
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    return v


def _sections():
    from sscsig.annotate import annotate, annotate_by_reference, load_reference
    from sscsig.integrate import cluster, integrate, run_totalvi
    from sscsig.io import read_sample
    from sscsig.protein import dsb_normalise, select_empty_droplets
    from sscsig.qc import qc_sample
    from sscsig.stats import biomarker_complication, differential_abundance, run_milo, run_pseudobulk
    from sscsig.tissue import map_tissue, map_to_blood, tissue_trajectory

    # config section -> (function that takes its keys, keys that go elsewhere and where)
    return {
        "features": (read_sample, {}),
        "qc": (qc_sample, {"panel_policy": "merge_samples", "panel_min_fraction": "merge_samples"}),
        "qc.dsb": (None, {}),
        "integration": (integrate, {"compare": "cohort_integration_metrics", "gpu": "rule resources"}),
        "integration.totalvi": (run_totalvi, {}),
        "clustering": (cluster, {}),
        "annotation": (annotate, {"markers": "load_markers", "method": "rule annotate",
                                  "reference": "load_reference + annotate_by_reference"}),
        "annotation.reference": (None, {"path": "load_reference (its file)"}),
        "abundance": (differential_abundance, {"fdr": "stats_figures"}),
        "milo": (run_milo, {}),
        "pseudobulk": (run_pseudobulk, {"gene_sets_file": "rule input", "min_set_size": "enrichment"}),
        "biomarker": (biomarker_complication, {"enabled": "rule all"}),
        "tissue": (map_tissue, {"tissues": "rule qc (per tissue)", "markers": "load_tissue_markers",
                                "map": "map_to_blood", "trajectory": "tissue_trajectory"}),
        "tissue.map": (map_to_blood, {}),
        "tissue.trajectory": (tissue_trajectory, {"tissues": "rule all"}),
    }, {"qc.dsb": (select_empty_droplets, dsb_normalise),
        "annotation.reference": (load_reference, annotate_by_reference)}


def test_every_config_key_reaches_a_function_whose_default_is_the_schemas():
    from sscsig.config import default

    sections, split = _sections()
    for name, (func, elsewhere) in sections.items():
        schema = default(name)
        funcs = [func] if func else list(split[name])
        params = {}
        for f in funcs:
            params.update(_signature_defaults(f))
        for key, value in schema.items():
            if key in elsewhere:
                continue
            assert key in params, f"config {name}.{key} is no keyword of {[f.__name__ for f in funcs]}"
            d = params[key]
            if d is None and isinstance(value, dict):  # a mapping: None = the schema's
                continue
            assert _norm(d) == _norm(value), f"{name}.{key}: signature default {d!r}, schema {value!r}"


def test_demo_parameters_default_to_the_schema():
    import dataclasses

    from sscsig.config import default
    from sscsig.demo import DemoParams

    fields = {f.name: f.default for f in dataclasses.fields(DemoParams)}
    for key, value in default("demo").items():
        assert fields["null" if key == "null_cohort" else key] == value, key
    assert DemoParams.from_config(default("demo"), seed=0) == DemoParams()


def test_validate_config_fills_every_default(tmp_path):
    from sscsig.config import default, validate_config

    minimal = {"complications": ["SRC"],
               "contrasts": {"c": {"complication": "SRC", "case": {"SRC": True}, "control": {"SRC": False}}}}
    cfg = validate_config(minimal)
    assert cfg["qc"]["nmads"]["pct_mito"] == 3.0 and cfg["integration"]["totalvi"]["max_epochs"] == "auto"
    assert cfg["contrasts"]["c"]["covariates"] == [] and cfg["hypotheses"] == [] and cfg["outdir"] == "results"
    assert default("qc.dsb")["min_empty"] == 100
    partial = validate_config({**minimal, "qc": {"nmads": {"pct_mito": 4.0}}})
    assert partial["qc"]["nmads"] == {**default("qc.nmads"), "pct_mito": 4.0}


def _rules():
    out = {}
    for f in (ROOT / "workflow/rules").glob("*.smk"):
        text = f.read_text()
        for m in re.finditer(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", text, re.S | re.M):
            out[m.group(1)] = (f.stem, m.group(2))
    return out


def test_every_rule_has_its_own_script_log_benchmark_and_resources():
    rules = _rules()
    assert {"design", "qc", "merge", "integrate", "annotate", "abundance", "milo", "pseudobulk", "signatures",
            "tables"} <= set(rules)
    scripts = {p.stem for p in (ROOT / "workflow/scripts").glob("*.py")}
    for name, (_, body) in rules.items():
        for key in ("log:", "benchmark:", "resources:", "conda:", "script:"):
            assert key in body, f"rule {name} has no {key}"
        assert f'script:\n        "../scripts/{name}.py"' in body, f"rule {name} does not call scripts/{name}.py"
    assert scripts == set(rules), scripts ^ set(rules)
    for s in (ROOT / "workflow/scripts").glob("*.py"):
        text = s.read_text()
        assert "with rule_logging(snakemake)" in text and len(text.splitlines()) <= 30, s.name
        assert "snakemake.config[" not in text, f"{s.name} reads the config instead of its params"


def test_every_report_item_has_a_caption_file():
    for f in (ROOT / "workflow/rules").glob("*.smk"):
        for cap in re.findall(r'caption="\.\./report/([\w.]+)"', f.read_text()):
            assert (ROOT / "workflow/report" / cap).exists(), (f.name, cap)
