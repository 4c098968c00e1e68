"""Per-sample quality control and the merge of the kept cells into one cohort.

:func:`qc_sample` (RNA and protein QC, doublets, CLR/DSB, the too-few-cells policy),
:func:`merge_samples` / :func:`merge_qc_outputs` (one cohort MuData, antibody panel policy,
the merge report and its warnings).
"""

from ._merge import cohort_warnings, merge_qc_outputs, merge_samples
from ._qc import QCResult, REASONS, call_scrublet, check_enough_cells, mad_bounds, qc_sample

__all__ = ["QCResult", "REASONS", "call_scrublet", "check_enough_cells", "cohort_warnings", "mad_bounds",
           "merge_qc_outputs", "merge_samples", "qc_sample"]
