"""Polku benchmarks: speed, scale and quality against the targets of issue 5 (``python -m benchmarks.run``)."""
