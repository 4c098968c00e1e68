# Tissue samples (sscsig.tissue): tissue-only types and the mapping of each tissue's immune cells
# onto the blood states (the blood reference model for each tissue's panel trained once, rule
# tissue_reference_model), the blood monocyte -> tissue macrophage trajectory, T-cell clonotypes shared
# with the donors' blood (sheet column vdj_path), the per-state tissue table and figure. Included only
# when the sheet has tissue samples (column tissue); each tissue sample's QC is rule qc with the
# tissue's settings (config tissue.tissues.<tissue>.qc). Helpers (tissue_qc_files, tissue_vdj) are in
# common.smk.
from sscsig.tissue import MODEL_SETTINGS as TISSUE_MODEL_SETTINGS


rule tissue_reference_model:
    input:
        qc=tissue_qc_files,  # their genes' and antibodies' names only
        blood=f"{OUT}/cohort/annotated.h5mu",
    output:
        directory(f"{OUT}/tissue/{{tissue}}_reference_model"),
    params:
        # the blood model's training keys only: the mapping's keys re-run tissue_map, not this
        map={k: v for k, v in config["tissue"]["map"].items() if k in TISSUE_MODEL_SETTINGS},
        batch_key=config["integration"]["batch_key"],
        seed=config["seed"],
    log:
        f"{OUT}/logs/tissue_reference_model/{{tissue}}.log",
    benchmark:
        f"{OUT}/benchmarks/tissue_reference_model/{{tissue}}.tsv"
    # one torch / BLAS thread, as tissue_map (its model's training and the query's must run alike)
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(2000, 3),  # the blood cohort in memory (the tissue files count, a little more)
        runtime=runtime_from_input(30, 60),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/tissue_reference_model.py"


rule tissue_map:
    input:
        qc=tissue_qc_files,
        blood=f"{OUT}/cohort/annotated.h5mu",
        samples=TISSUE_DESIGN,
        markers=config["tissue"]["markers"],
        model=f"{OUT}/tissue/{{tissue}}_reference_model",
    output:
        h5mu=f"{OUT}/tissue/{{tissue}}_mapped.h5mu",
        blood_latent=f"{OUT}/tissue/{{tissue}}_blood_latent.h5ad",
        types=f"{OUT}/tissue/{{tissue}}_types.tsv",
    params:
        min_type_score=config["tissue"]["min_type_score"],
        map=config["tissue"]["map"],
        batch_key=config["integration"]["batch_key"],
        seed=config["seed"],
    log:
        f"{OUT}/logs/tissue_map/{{tissue}}.log",
    benchmark:
        f"{OUT}/benchmarks/tissue_map/{{tissue}}.tsv"
    # one torch / BLAS thread, fixed: the thread count changes totalVI's last bits (and so a few calls)
    threads: 1
    resources:
        mem_mb=mem_mb_from_input(2000, 3),
        runtime=runtime_from_input(30, 60),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/tissue_map.py"


rule tissue_clonotypes:
    input:
        vdj=lambda w: list(tissue_vdj(w.tissue).values()),
    output:
        f"{OUT}/tissue/{{tissue}}_clonotypes.tsv",
    params:
        files=lambda w: tissue_vdj(w.tissue),
        donors=lambda w: {s: DONOR_OF[s] for s in tissue_vdj(w.tissue)},
        compartments=lambda w: {s: TISSUE_OF.get(s, "blood") for s in tissue_vdj(w.tissue)},
    log:
        f"{OUT}/logs/tissue_clonotypes/{{tissue}}.log",
    benchmark:
        f"{OUT}/benchmarks/tissue_clonotypes/{{tissue}}.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 5),
        runtime=runtime_from_input(10, 30),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/tissue_clonotypes.py"


rule tissue_trajectory:
    input:
        h5mu=f"{OUT}/tissue/{{tissue}}_mapped.h5mu",
        blood_latent=f"{OUT}/tissue/{{tissue}}_blood_latent.h5ad",
    output:
        trends=report(f"{OUT}/tissue/trajectory_{{tissue}}.tsv", category="Tissue",
                      caption="../report/tissue_trajectory.rst"),
        entry=f"{OUT}/tissue/trajectory_{{tissue}}_entry.tsv",
        pseudotime=f"{OUT}/tissue/trajectory_{{tissue}}_pseudotime.tsv",
        facts=f"{OUT}/tissue/trajectory_{{tissue}}.json",
    params:
        trajectory={k: v for k, v in config["tissue"]["trajectory"].items() if k != "tissues"},
        seed=config["seed"],
    log:
        f"{OUT}/logs/tissue_trajectory/{{tissue}}.log",
    benchmark:
        f"{OUT}/benchmarks/tissue_trajectory/{{tissue}}.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 3),
        runtime=runtime_from_input(20, 30),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/tissue_trajectory.py"


rule tissue_table:
    input:
        h5mu=f"{OUT}/tissue/{{tissue}}_mapped.h5mu",
        pseudotime=lambda w: [f"{OUT}/tissue/trajectory_{w.tissue}_pseudotime.tsv"] if w.tissue in TRAJECTORY_TISSUES else [],
        clonotypes=lambda w: [f"{OUT}/tissue/{w.tissue}_clonotypes.tsv"] if w.tissue in VDJ_TISSUES else [],
        blood=f"{OUT}/cohort/annotated.h5mu",
        **DESIGN,
    output:
        table=report(f"{OUT}/tables/tissue_{{tissue}}.tsv", category="Tissue", caption="../report/tissue_table.rst"),
        donors=f"{OUT}/tissue/{{tissue}}_donor_shares.tsv",
        clones=f"{OUT}/tissue/{{tissue}}_clones.tsv",
        h5mu=f"{OUT}/tissue/{{tissue}}.h5mu",
    params:
        complications=COMPLICATIONS,
        signatures=SIGNATURES,
    log:
        f"{OUT}/logs/tissue_table/{{tissue}}.log",
    benchmark:
        f"{OUT}/benchmarks/tissue_table/{{tissue}}.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 2),
        runtime=runtime_from_input(10, 20),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/tissue_table.py"


rule tissue_figure:
    input:
        h5mu=f"{OUT}/tissue/{{tissue}}.h5mu",
        blood_latent=f"{OUT}/tissue/{{tissue}}_blood_latent.h5ad",
        shares=f"{OUT}/tissue/{{tissue}}_donor_shares.tsv",
        donors=DESIGN["donors"],
    output:
        png=report(f"{OUT}/tissue/figures/{{tissue}}.png", category="Tissue", caption="../report/tissue_figure.rst"),
    params:
        genes=config["tissue"]["trajectory"]["genes"][:2],
        complications=COMPLICATIONS,
        seed=config["seed"],
    log:
        f"{OUT}/logs/tissue_figure/{{tissue}}.log",
    benchmark:
        f"{OUT}/benchmarks/tissue_figure/{{tissue}}.tsv"
    resources:
        mem_mb=mem_mb_from_input(1000, 2),
        runtime=runtime_from_input(10, 20),
    conda:
        "../../envs/sscsig.yaml"
    script:
        "../scripts/tissue_figure.py"
