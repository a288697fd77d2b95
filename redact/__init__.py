"""redact: find and irreversibly blur faces and licence plates in street-level imagery."""

from importlib.metadata import PackageNotFoundError, version

try:  # one source: pyproject.toml's version, as installed
    __version__ = version("redact")
except PackageNotFoundError:  # an uninstalled source tree
    __version__ = "0+unknown"
