"""Model registry, shipped weights and cards, installed as the data package ``redact._models``
(see redact/resources.py)."""
