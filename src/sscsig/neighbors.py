"""Nearest-neighbour search shared by the stages that build kNN graphs on an embedding (the
integrated space and WNN modalities in ``integrate``, Milo's neighbourhoods in ``stats``)."""

from __future__ import annotations

#: up to this many cells, neighbours are exact (scikit-learn, brute force: seconds at 50k cells);
#: above, approximate (pynndescent), whose numba compilation costs ~30 s in every new process
EXACT_KNN_MAX_CELLS = 50_000


def knn_transformer(n_cells: int) -> str:
    """scanpy's ``transformer`` for ``sc.pp.neighbors`` of ``n_cells`` cells (see :data:`EXACT_KNN_MAX_CELLS`)."""
    return "sklearn" if n_cells <= EXACT_KNN_MAX_CELLS else "pynndescent"


__all__ = ["EXACT_KNN_MAX_CELLS", "knn_transformer"]
