"""Atomic writers and provenance shared by every stage.

Every output is written under a temporary name in its folder and renamed when complete, so a file
either is whole or does not exist; tables carry a ``<table>.provenance.json`` sidecar (written
first), h5mu files a ``uns['sscsig_provenance'][<step>]`` entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

MAIN_DEPENDENCIES = (
    "anndata", "mudata", "muon", "scanpy", "scvi-tools", "harmonypy", "statsmodels", "numpy",
    "scipy", "pandas", "snakemake",
)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash or exception inside the block leaves no file at ``path`` (and no temporary file). A
    temporary file left by a killed process (SIGKILL runs no cleanup) is removed by the next write of
    the same path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_tsv(df: pd.DataFrame, path: str | Path, *, index: bool = False, config: dict | None = None,
              step: str | None = None, extra: dict | None = None) -> None:
    """Write a TSV atomically, floats with 6 significant digits (stable across platforms).

    With ``step``, a ``<path>.provenance.json`` sidecar (versions, config hash, seed, ``extra``) is
    written beside it, first, so that a table never exists without its provenance.
    """
    if step is not None:
        with atomic_path(f"{path}.provenance.json") as tmp:
            tmp.write_text(json.dumps({**provenance(config, step=step), **(extra or {})}, indent=2,
                                      sort_keys=True, default=str))
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=index, float_format="%.6g")


def write_json(obj, path: str | Path, *, sort_keys: bool = False) -> None:
    """Write JSON atomically (indented; numpy scalars as numbers)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=sort_keys, default=_json_default))


def _json_default(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def write_h5mu(mdata, path: str | Path, *, passthrough: str | Path | None = None, elements=()) -> None:
    """Write a MuData atomically (gzip-free for speed; h5mu is an intermediate).

    Parameters
    ----------
    mdata
        The MuData.
    path
        Where to write it.
    passthrough, elements
        An h5mu and the modality layers of it (e.g. ``("mod/rna/layers/counts",)``) that ``mdata``
        was read without (:func:`sscsig.io.read_h5mu` ``skip``): they are copied unchanged into the
        output, a block at a time, so a rule that does not use them never holds them. A mapping
        ``{output element: input element}`` renames on the way, e.g.
        ``{"mod/rna/layers/counts": "mod/rna/X"}`` (the merged cohort's raw counts become the
        counts layer). The modality's cells must be those of ``mdata``, in the same order.
    """
    import h5py
    from anndata.io import read_elem

    pairs = [(d.strip("/"), s.strip("/")) for d, s in
             (elements.items() if isinstance(elements, dict) else ((e, e) for e in elements))]
    with atomic_path(path) as tmp:
        mdata.write_h5mu(str(tmp))
        if not pairs:
            return
        with h5py.File(passthrough, "r") as src, h5py.File(tmp, "r+") as dst:
            for e, s in pairs:
                for mod in {e.split("/")[1], s.split("/")[1]}:
                    if not read_elem(src[f"mod/{mod}/obs"]).index.equals(mdata[mod].obs_names):
                        raise ValueError(f"{passthrough}: modality {mod!r} cells differ from those written to {path}; "
                                         f"cannot pass {s} through")
                if e in dst:
                    raise ValueError(f"{path}: {e} was written and is also to be passed through")
                layers = e.rsplit("/", 1)[0]
                if layers not in dst:
                    dst.create_group(layers).attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
                _copy_blockwise(src[s], dst[layers], e.rsplit("/", 1)[1])


_COPY_BLOCK = 1 << 24  # elements per block (64 MB of float32)


def _copy_blockwise(elem, parent, name: str) -> None:
    """Copy an HDF5 dataset or group of datasets (a sparse matrix) with its attributes, about
    ``_COPY_BLOCK`` elements (whole rows) at a time."""
    import h5py

    if isinstance(elem, h5py.Group):
        g = parent.create_group(name)
        g.attrs.update(elem.attrs)
        for k, v in elem.items():
            _copy_blockwise(v, g, k)
        return
    d = parent.create_dataset(name, shape=elem.shape, dtype=elem.dtype)
    d.attrs.update(elem.attrs)
    if elem.shape == ():
        d[()] = elem[()]
        return
    rows = max(1, _COPY_BLOCK // max(1, int(np.prod(elem.shape[1:]))))
    for i in range(0, elem.shape[0], rows):
        d[i:i + rows] = elem[i:i + rows]


def versions() -> dict[str, str]:
    """Versions of sscsig and its main dependencies."""
    out = {}
    for name in ("sscsig", *MAIN_DEPENDENCIES):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def config_hash(config: dict) -> str:
    """SHA-256 of the configuration, canonical JSON (sorted keys)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def provenance(config: dict | None, *, step: str) -> dict:
    """What produced an output: step, versions, config hash and seed."""
    config = config or {}
    return {
        "step": step,
        "versions": versions(),
        "config_sha256": config_hash(config),
        "seed": config.get("seed"),
    }


def stamp(mdata, config: dict | None, *, step: str) -> None:
    """Record provenance in ``mdata.uns['sscsig_provenance'][step]`` (JSON string, h5-safe)."""
    block = mdata.uns.setdefault("sscsig_provenance", {})
    block[step] = json.dumps(provenance(config, step=step), sort_keys=True)
