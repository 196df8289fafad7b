"""iqabench: a harness that compares image-quality-assessment methods."""

__version__ = "0.1.0"
