"""Image input/output: decode/encode with metadata preservation (:mod:`redact.io.codec`)."""
