"""The pyiqa family: every pyiqa metric as a method `pyiqa:<name>` (family.py), the table of files
each metric reads (weights.py, generated) and its generator (derive.py)."""
