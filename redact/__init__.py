"""redact: find and irreversibly blur faces and licence plates in street-level imagery."""

__version__ = "0.1.0"
