"""Donor-level statistics of the annotated cohort, per contrast of the design.

Cells are never replicates: every test is on donors (:class:`sscsig.design.Design`).

:func:`differential_abundance` (quasi-Poisson GLM of each state's share of its parent and of all
cells), :func:`run_milo` (Milo neighbourhoods, pertpy + PyDESeq2), :func:`run_pseudobulk` and
:func:`enrichment` (PyDESeq2 per state, protein OLS, decoupler ulm), :func:`score_cells`,
:func:`donor_scores` and :func:`test_signatures` (gene-signature scores).
"""

from ._abundance import (COLUMNS, differential_abundance, quasi_poisson_test, state_counts, state_parents,
                         test_contrast)
from ._milo import milo_contrast, run_milo, subsample_per_donor, summarise_states
from ._pseudobulk import SUMMARY_COLUMNS, deseq2, enrichment, protein_tests, pseudobulk_counts, run_pseudobulk
from ._signatures import donor_scores, score_cells, test_signatures

__all__ = ["COLUMNS", "SUMMARY_COLUMNS", "deseq2", "differential_abundance", "donor_scores", "enrichment",
           "milo_contrast", "protein_tests", "pseudobulk_counts", "quasi_poisson_test", "run_milo",
           "run_pseudobulk", "score_cells", "state_counts", "state_parents", "subsample_per_donor",
           "summarise_states", "test_contrast", "test_signatures"]
