"""Shipped configs, installed as the data package ``redact._configs`` (see redact/resources.py)."""
