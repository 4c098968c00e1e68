"""Files in and out: user libraries, the pipeline's own h5mu files, atomic writes with provenance,
header checks before a run, and the logging of a rule's script.

Reading user data
    :func:`read_sample` (one CITE-seq library -> MuData ``rna`` + ``prot``; 10x h5/MTX, h5ad,
    h5mu, BD Rhapsody CSV via :func:`read_rhapsody_csv`; cells named by :func:`cell_names`),
    :func:`read_cell_table` (a per-cell TSV with ``sample`` and ``barcode``, indexed by cell name), :func:`read_h5mu_modalities` (an .h5mu
    modality by modality), :func:`inspect_sample`
    and :func:`check_inputs` (headers only, before any job runs).
Reading cohort files
    :func:`read_obs`, :func:`read_elems`, :func:`read_modality` (only the matrices a rule uses),
    :func:`backed_matrix` (one matrix left on disk, read a block of cells at a time), :func:`read_h5mu`
    (the whole cohort less the layers a rule does not use; :func:`write_h5mu` passes them through),
    :func:`read_json` (a rule's JSON report).
Writing
    :func:`atomic_path`, :func:`write_tsv` (with a provenance sidecar), :func:`write_json`,
    :func:`write_h5mu`, :func:`stamp` (provenance inside an h5mu).
Rule scripts
    :func:`rule_logging`.
"""

from ._h5mu import backed_matrix, read_elems, read_h5mu, read_modality, read_obs
from ._inspect import SampleHeader, check_inputs, inspect_sample, panel_warnings
from ._read import cell_names, read_cell_table, read_h5mu_modalities, read_json, read_rhapsody_csv, read_sample
from ._rule import rule_logging
from ._write import atomic_path, config_hash, provenance, stamp, versions, write_h5mu, write_json, write_tsv

__all__ = ["SampleHeader", "atomic_path", "backed_matrix", "cell_names", "check_inputs", "config_hash", "inspect_sample", "panel_warnings",
           "provenance", "read_elems", "read_h5mu", "read_h5mu_modalities", "read_cell_table", "read_json", "read_modality", "read_obs", "read_rhapsody_csv", "read_sample", "rule_logging", "stamp",
           "versions", "write_h5mu", "write_json", "write_tsv"]
