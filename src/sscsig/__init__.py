"""sscsig: patient-level single-cell CITE-seq signatures of clinical complications."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sscsig")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0+unknown"
