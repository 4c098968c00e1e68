"""sscsig: patient-level single-cell CITE-seq signatures of clinical complications.

Stage families (each a subpackage with its public functions re-exported, as scanpy's ``pp``/``tl``):
``qc`` (per-sample QC, merge), ``integrate`` (totalVI / WNN / Harmony, clustering, metrics),
``annotate`` (marker-based cell states, accuracy), ``stats`` (donor-level abundance, Milo,
pseudobulk, signatures), ``report`` (tables, figures), ``demo`` (the simulated twin cohort).
Shared helpers every stage may import: ``config``, ``design``, ``protein``, ``io``, ``errors``.
"""

from importlib.metadata import PackageNotFoundError, version

import mudata as _md

# the modalities' obs are not pulled into the global obs on every update (mudata's future default)
_md.set_options(pull_on_update=False)

try:
    __version__ = version("sscsig")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"
