"""The demo twin: a simulated cohort with the reference study's design and planted truth.

:func:`simulate_cohort` writes Cell Ranger h5 libraries, a sample sheet and the truth tables;
:func:`simulate_state_counts` draws only the donor x state counts (for calibration and power);
:func:`study_design` is the study's 27 donors. Demo code only: no stage imports it.
"""

from ._simulate import (DemoParams, donor_composition, planted_effects, sample_path, simulate_cohort,
                        simulate_state_counts, study_design, write_10x_h5)
from ._states import STATE_LINEAGE

__all__ = ["STATE_LINEAGE", "DemoParams", "donor_composition", "planted_effects", "sample_path", "simulate_cohort",
           "simulate_state_counts", "study_design", "write_10x_h5"]
