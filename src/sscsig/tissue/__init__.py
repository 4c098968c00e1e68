"""Tissue samples (sheet column ``tissue``): tissue-only cell types from a marker file
(:func:`call_tissue_types`), mapping of the tissue's immune cells onto the blood states
(:func:`map_tissue`, :func:`map_to_blood`; the blood reference model trained once per tissue by
:func:`train_tissue_reference`), the blood monocyte -> tissue macrophage trajectory
(:func:`tissue_trajectory`, :func:`diffusion_pseudotime`, :func:`gene_trends`), T-cell clonotypes
shared by a tissue and the donor's blood (:func:`define_clonotypes`, scirpy) and the per-state
tissue table (:func:`tissue_table`)."""

from ._clonotypes import clone_sharing, define_clonotypes, read_vdj, sharing_by_state
from ._map import MODEL_SETTINGS, UNMAPPED, map_tissue, map_to_blood, read_tissue, train_tissue_reference
from ._tables import tissue_table
from ._trajectory import diffusion_pseudotime, gene_trends, tissue_trajectory
from ._types import IMMUNE, call_tissue_types, load_tissue_markers, log_cp10k

__all__ = ["IMMUNE", "MODEL_SETTINGS", "UNMAPPED", "call_tissue_types", "clone_sharing", "define_clonotypes",
           "diffusion_pseudotime", "gene_trends", "read_vdj", "sharing_by_state",
           "load_tissue_markers", "log_cp10k", "map_tissue", "map_to_blood",
           "read_tissue", "tissue_table", "tissue_trajectory", "train_tissue_reference"]
