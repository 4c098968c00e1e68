"""Thin dispatcher: each rule's `script:` lands here and makes one call into sscsig.steps."""

import logging
import os
import sys

from sscsig import steps

sm = snakemake  # noqa: F821  (injected by Snakemake)
_log = open(sm.log[0], "w")
sys.stderr = sys.stdout = _log
logging.basicConfig(stream=_log, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
cfg = dict(sm.config)
i, o, p = sm.input, sm.output, sm.params
rule = sm.rule

if rule == "simulate":
    steps.simulate(p.out_dir, cfg)
elif rule == "qc":
    steps.ingest_qc(i.data, sm.wildcards.sample, o.h5mu, o.cells, o.summary, cfg,
                    raw=i.raw[0] if len(i.raw) else None, out_png=o.png)
elif rule == "qc_summary":
    steps.qc_summary(list(i.summaries), o.tsv, o.png, cfg)
elif rule == "merge":
    samples = [s.rsplit("/", 1)[-1].removesuffix(".h5mu") for s in i.h5mu]
    steps.merge(dict(zip(samples, i.h5mu)), list(i.summaries), i.sheet, o.h5mu, cfg, out_report=o.report)
elif rule == "integrate":
    steps.integrate_and_cluster(i[0], o.h5mu, cfg, model_dir=o.model[0] if len(o.model) else None,
                                threads=sm.threads)
elif rule == "annotate":
    steps.annotate(i.h5mu, i.markers, o[0], cfg)
elif rule == "abundance":
    steps.abundance(i.h5mu, i.sheet, o.counts, o.results, cfg)
elif rule == "signatures":
    steps.signatures(i.h5mu, i.sheet, o.scores, o.tests, o.coverage, cfg)
elif rule == "tables":
    steps.tables(i.abundance, i.signatures, sm.wildcards.complication, o.tsv, o.md, cfg,
                 merge_report=i.merge_report, sheet_path=i.sheet, milo_states=i.milo,
                 de_summaries=list(i.de), out_html=o.html)
elif rule == "milo":
    steps.milo(i.h5mu, i.sheet, o.nhoods, o.states, cfg)
elif rule == "pseudobulk":
    steps.pseudobulk(i.h5mu, i.sheet, sm.wildcards.contrast, o.genes, o.proteins, o.summary,
                     o.enrichment, cfg)
elif rule == "figures_cohort":
    steps.figures_cohort(i.annotated, i.counts, i.scores, i.sheet, dict(o.items()), cfg)
elif rule == "integration_metrics":
    steps.integration_metrics(i.annotated, o.tsv, o.png, cfg)
elif rule == "figures_stats":
    steps.figures_stats(dict(zip(cfg["complications"], i.tables)), i.milo,
                        dict(zip(cfg["contrasts"], i.de)), dict(o.items()), cfg)
elif rule == "report_figures":
    steps.report([i.qc_png, *i.qc_samples, i.metrics, *i.cohort, *i.stats], dict(zip(cfg["complications"], i.mds)),
                 o.html, cfg, merge_report=i.merge_report, sheet_path=i.sheet)
else:
    raise SystemExit(f"no sscsig step for rule {rule!r}")

# Fault injection for the test of Snakemake's cleanup of failed jobs (tests/test_workflow.py): the
# step has written all its outputs, then the job fails; Snakemake must remove them.
if os.environ.get("SSCSIG_FAIL_AFTER_RULE") == rule:
    raise RuntimeError(f"SSCSIG_FAIL_AFTER_RULE={rule}: injected failure after the outputs were written")
