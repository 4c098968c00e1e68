"""What the reader sees: the per-complication tables and the report's figures.

Tables: :func:`complication_table` (from :func:`read_complication_inputs`), :func:`to_markdown`,
:func:`table_html`, :func:`write_table`. Figures: one function per plot (QC, UMAPs, marker heatmap,
composition, forest, Milo, volcano, signatures, integration metrics, tissue, the batch check), each writing a PNG atomically;
:func:`cohort_figures` and :func:`stats_figures` draw a run's set from its files.
"""

from ._figures import (batch_plot, biomarker_pca_plot, biomarker_roc_plot, cohort_figures, longitudinal_plot, composition_plot, donor_groups, forest_plot, heatmap_plot, metrics_plot,
                       milo_plot, qc_plot, qc_sample_plot, signature_plot, stats_figures, stress_plot, tissue_plot,
                       umap_plot, volcano_plot)
from ._tables import (TABLE_COLUMNS, complication_table, read_complication_inputs, separation_warnings, table_html,
                      to_markdown, write_table)

__all__ = ["TABLE_COLUMNS", "batch_plot", "biomarker_pca_plot", "biomarker_roc_plot", "cohort_figures", "complication_table", "composition_plot", "donor_groups",
           "forest_plot", "heatmap_plot", "longitudinal_plot", "metrics_plot", "milo_plot", "qc_plot", "qc_sample_plot",
           "read_complication_inputs", "separation_warnings", "signature_plot", "stats_figures", "stress_plot", "table_html", "tissue_plot", "to_markdown",
           "umap_plot", "volcano_plot", "write_table"]
