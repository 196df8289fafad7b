"""`iqabench import`: published per-image outputs become a run folder on a carded dataset.

A file's entries are matched to the card (ids not on the card: counted and named in one line), the
scores come from the formula of the file's format (recorded), and the run is written through the
run store like any other: one record per image of the chosen split part (an image the file lacks is
a failure record, "not in the imported file"), metrics from the records. The labels are the card's
by default, so the run sits beside runs made here and can be tested against them; `labels="file"`
uses the file's own (as its authors published). When the file carries labels, their agreement
with the card's is recorded either way. Only the dataset's metadata is read, never its images.
"""
from __future__ import annotations

from iqabench.imports.importer import ImportConfig, ImportResult, import_outputs

__all__ = ["ImportConfig", "ImportResult", "import_outputs"]
