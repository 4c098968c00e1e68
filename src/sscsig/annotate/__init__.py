"""Cell-state annotation: hierarchical marker scores (protein + RNA), or a labelled reference, and
their accuracy.

:func:`load_markers`, :func:`annotate` (lineage, then fine states and module-high substates; its
options from the config by :func:`marker_options`; the lineage gate's levels by :func:`gate_thresholds`,
the lineages it applies to by :func:`unseparated_lineages`, the states whose antibody stains no
population by :func:`unseparated_states`; the state of cells without evidence by
:func:`no_evidence_cells`, from the raw counts of :func:`state_genes`; the count evidence a
module-high substate needs by :func:`count_evidence`, and the cells a state that needs it is closed to
by :func:`closed_states`),
:func:`load_reference`, :func:`read_label_table`, :func:`train_reference_model` (the reference
model, trained once per reference and cohort panel), :func:`annotate_by_reference` (scArches mapping
onto a user-supplied labelled reference, ``annotation.method: reference``),
:func:`subcluster` (Leiden within lineages), :func:`panel_evidence` (the marker evidence that
antibody panels differing between samples take away), :func:`annotation_f1` and
:func:`annotation_vs_truth` (scoring against known labels or the demo's truth), :func:`macro_f1_interval`
(how far the cells sampled could move a macro-F1), :func:`state_separation` (whether each state's calls
stand out from their lineage on the state's own markers, or were picked from a continuum or from a
state the cohort lacks).
"""

from ._accuracy import annotation_f1, annotation_vs_truth, confidence_calibration, macro_f1_interval
from ._diagnostics import state_separation
from ._markers import (COMPONENTS, GATE_MIN_DEFAULTS, PROTEIN_LAYERS, annotate, closed_states, confounded_groups,
                       count_evidence, gate_thresholds, load_markers, marker_options,
                       no_evidence_cells, panel_evidence, refine_states, score_support,
                       state_genes, subcluster, unseparated_lineages, unseparated_states)
from ._reference import MODEL_SETTINGS, annotate_by_reference, load_reference, read_label_table, train_reference_model

__all__ = ["COMPONENTS", "GATE_MIN_DEFAULTS", "MODEL_SETTINGS", "PROTEIN_LAYERS", "annotate", "annotate_by_reference",
           "annotation_f1", "annotation_vs_truth", "closed_states", "confidence_calibration", "confounded_groups",
           "count_evidence", "gate_thresholds", "load_markers", "load_reference", "macro_f1_interval",
           "marker_options",
           "no_evidence_cells", "panel_evidence", "read_label_table", "refine_states", "score_support", "state_genes",
           "state_separation", "subcluster", "train_reference_model", "unseparated_lineages", "unseparated_states"]
