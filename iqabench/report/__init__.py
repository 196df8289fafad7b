"""The reporter: tables (Markdown, LaTeX, CSV), figures and an HTML page from result files only.

Modules, one job each: collect (read run folders), identity (what a table row is, readable labels),
select (which runs make the table, reruns, smoke tests, medians over splits), compare (significance
marks, statistics in iqabench.significance), grid (the table as data), markdown / latex / csvfiles /
htmlpage (renderers), breakdown (per distortion type and level), plots (figures), build (all of it).
"""
from iqabench.report.build import build_report, summary_lines
from iqabench.report.options import ReportOptions

__all__ = ["ReportOptions", "build_report", "summary_lines"]
