"""The demo twin: a simulated cohort with the reference study's design and planted truth.

:func:`simulate_cohort` writes Cell Ranger h5 libraries, a sample sheet and the truth tables;
:func:`simulate_state_counts` draws only the donor x state counts (for calibration and power);
:func:`study_design` is the study's 27 donors, :func:`tissue_design` their kidney and lung samples
(``DemoParams.with_tissue``; with V(D)J of the lungs and their donors' blood, :func:`vdj_design`). Demo code only: no stage imports it.
"""

from ._simulate import (DemoParams, donor_composition, planted_effects, sample_path, simulate_cohort,
                        simulate_state_counts, study_design, write_10x_h5)
from ._states import STATE_LINEAGE
from ._tissue import tissue_design, tissue_sample_path, vdj_design, vdj_sample_path

__all__ = ["STATE_LINEAGE", "DemoParams", "donor_composition", "planted_effects", "sample_path", "simulate_cohort",
           "simulate_state_counts", "study_design", "tissue_design", "tissue_sample_path", "vdj_design",
           "vdj_sample_path", "write_10x_h5"]
