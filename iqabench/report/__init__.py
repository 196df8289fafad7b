"""The reporter: tables (Markdown, LaTeX, CSV) and plots from result files only."""
from iqabench.report.build import build_report, summary_lines

__all__ = ["build_report", "summary_lines"]
