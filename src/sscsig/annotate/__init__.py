"""Cell-state annotation: hierarchical marker scores (protein + RNA) and their accuracy.

:func:`load_markers`, :func:`annotate` (lineage, then fine states and module-high substates),
:func:`subcluster` (Leiden within lineages), :func:`annotation_f1` and
:func:`annotation_vs_truth` (scoring against known labels or the demo's truth).
"""

from ._accuracy import annotation_f1, annotation_vs_truth
from ._markers import COMPONENTS, PROTEIN_LAYERS, annotate, load_markers, subcluster

__all__ = ["COMPONENTS", "PROTEIN_LAYERS", "annotate", "annotation_f1", "annotation_vs_truth", "load_markers",
           "subcluster"]
