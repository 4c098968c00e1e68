"""Donor-level statistics of the annotated cohort, per contrast of the design.

Cells are never replicates: every test is on donors (:class:`sscsig.design.Design`).

:func:`differential_abundance` (quasi-Poisson GLM of each state's share of its parent and of all
cells), :func:`batch_association` (whether a state's calls follow the batches beyond the design), :func:`run_milo` (Milo neighbourhoods, pertpy + PyDESeq2), :func:`run_pseudobulk` and
:func:`enrichment` (PyDESeq2 per state with :class:`sscsig.nbglm.BatchedInference`, protein OLS, decoupler ulm), :func:`score_cells`,
:func:`donor_scores` and :func:`test_signatures` (gene-signature scores), :func:`biomarker_complication`
(nested cross-validated blood biomarker models, permutation tests) and :func:`predict_samples`.
"""

from ._abundance import (COLUMNS, differential_abundance, quasi_poisson_test, state_counts, state_parents,
                         test_contrast)
from ._batch import BATCH_COLUMNS, batch_association, batch_warnings, donor_batches, log_batch_check
from ._biomarker import (biomarker_complication, composition_pca, covariate_features, donor_features, evaluate,
                         fit_final, load_model, nested_cv, nested_cv_auc_stack, permutation_pvalue, predict_samples,
                         sample_trajectories, save_model, save_models)
from ._milo import milo_contrast, run_milo, subsample_per_donor, summarise_states
from ._pseudobulk import SUMMARY_COLUMNS, deseq2, enrichment, protein_tests, pseudobulk_counts, run_pseudobulk
from ._signatures import donor_scores, score_cells, test_signatures
from ._stress import (parent_stress, sample_stress, stress_adjusted_tests, stress_difference, stress_scores,
                      stress_warnings)

__all__ = ["BATCH_COLUMNS", "COLUMNS", "SUMMARY_COLUMNS", "batch_association", "batch_warnings", "donor_batches", "log_batch_check", "biomarker_complication", "composition_pca", "covariate_features", "deseq2",
           "differential_abundance", "donor_features", "donor_scores", "enrichment", "evaluate", "fit_final",
           "load_model", "nested_cv", "nested_cv_auc_stack", "permutation_pvalue", "predict_samples", "sample_trajectories", "save_model", "save_models",
           "milo_contrast", "protein_tests", "pseudobulk_counts", "quasi_poisson_test", "run_milo",
           "run_pseudobulk", "score_cells", "state_counts", "state_parents", "subsample_per_donor",
           "summarise_states", "test_contrast", "test_signatures", "parent_stress", "sample_stress",
           "stress_adjusted_tests", "stress_difference", "stress_scores", "stress_warnings"]
