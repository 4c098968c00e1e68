"""Integration of RNA and protein across batches, clustering, and integration metrics.

:func:`integrate` (totalVI by default; WNN, Harmony, unintegrated PCA), :func:`run_totalvi`,
:func:`log_normalised` (log1p CP10k a block of cells at a time, from memory or disk),
:func:`selected_counts` (some genes' counts, likewise; both from :mod:`sscsig.rna`, re-exported),
:func:`cluster` (kNN graph, Leiden, UMAP), :func:`integration_metrics` and
:func:`cohort_integration_metrics` (scib-metrics: batch mixing and conserved biology).
"""

from ._cluster import cluster, neighbours_and_clusters
from ..rna import log_normalised, selected_counts
from ._integrate import METHODS, harmony, integrate, normalise
from ._metrics import (EMBEDDING_NAMES, METRIC_COLUMNS, cohort_integration_metrics, compared_embeddings,
                       graph_neighbours, integration_metrics, knn, subsample)
from ._totalvi import auto_epochs, run_totalvi

__all__ = ["EMBEDDING_NAMES", "METHODS", "METRIC_COLUMNS", "auto_epochs", "cluster", "cohort_integration_metrics",
           "compared_embeddings", "graph_neighbours", "harmony", "integrate", "integration_metrics", "knn", "log_normalised",
           "neighbours_and_clusters", "normalise", "run_totalvi", "selected_counts", "subsample"]
