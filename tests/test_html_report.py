"""report.html: self-contained, and, in headless Chromium, what it renders equals table.csv."""
from __future__ import annotations

import csv
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from test_report import noisy, write_run  # the run-folder writer the report tests use

from iqabench.report import ReportOptions, build_report
from iqabench.report.grid import fmt

CHROMIUM = Path("/usr/bin/chromium")


class MainTable(HTMLParser):
    """The rows of <table id="main-table">'s body: [label, value text of each numeric cell]; plus
    <body>'s attributes and every <img>'s src and every <details>."""

    def __init__(self):
        super().__init__()
        self.rows, self.body, self.srcs, self.details = [], {}, [], 0
        self._in_table = self._in_body = False
        self._cell = None
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag == "img":
            self.srcs.append(attrs.get("src", ""))
        if tag == "details":
            self.details += 1
        if tag == "table":
            self._in_table = attrs.get("id") == "main-table"
        if self._in_table and tag == "tbody":
            self._in_body = True
        if self._in_body and tag == "tr":
            self.rows.append([])
        if self._in_body and tag == "td":
            self._cell = "label" if not self.rows[-1] else None
            if self._cell == "label":
                self.rows[-1].append("")
        if self._in_body and tag == "span" and attrs.get("class") == "v":
            self.rows[-1].append("")
            self._cell = "value"

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = self._in_body = False
        if tag in ("span", "td"):
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self.rows[-1][-1] += data


def build(tmp_path, plots: bool) -> dict:
    target = np.random.default_rng(1).uniform(1, 5, 60)
    results = tmp_path / "results"
    for k, (name, noise) in enumerate((("alpha", 0.4), ("beta", 1.0), ("gamma", 0.41))):
        write_run(results, name, "koniq", "official", noisy(target, noise, 1), target)
        if name != "gamma":  # an empty cell must sort last
            write_run(results, name, "spaq", "all", -noisy(target, noise, k + 5), target, method_hb=False)
        for s in (1, 2, 3):
            write_run(results, name, "kadid", f"ratio80-0-20-seed{s}", noisy(target, noise * s, 10 + s), target)
    write_run(results, "alpha", "koniq", "official", target[:10], target[:10], limit=10, key="smoke")
    options = ReportOptions(progress=False, bootstrap_resamples=200, plots=plots, show_ci=True)
    return build_report(results, tmp_path / "out", options)


def expected_rows(summary) -> dict[str, list[str]]:
    """table.csv, as the page should show it: per label, each column's metrics formatted."""
    with open(summary["table_csv"], newline="") as fh:
        records = list(csv.DictReader(fh))
    columns = list(dict.fromkeys(r["column"] for r in records))
    out = {}
    for label in dict.fromkeys(r["label"] for r in records):
        cells = []
        for col in columns:
            found = [r for r in records if r["label"] == label and r["column"] == col]
            for metric in ("srcc", "plcc"):
                value = found[0][metric] if found else ""
                cells.append(fmt(float(value), 3) if value else "—")
        out[label] = cells
    return out


def test_html_is_self_contained_and_lists_every_run(tmp_path):
    summary = build(tmp_path, plots=False)
    page = summary["html"].read_text()
    parsed = MainTable()
    parsed.feed(page)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)  # nothing from the network
    assert "<link" not in page and "<script src" not in page
    assert all(src.startswith("data:image/png;base64,") for src in parsed.srcs)
    assert parsed.details == 3 * 5 - 1 + 1  # one manifest per run folder (gamma has no spaq), the smoke test too
    assert {r[0]: r[1:] for r in parsed.rows} == expected_rows(summary)
    assert "smoke test, n=10" in page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium not installed (Debian package: chromium)")
def test_rendered_page_sorts_shows_table_csv_and_loads_every_image(tmp_path):
    summary = build(tmp_path, plots=True)
    key = "koniq:srcc"
    url = summary["html"].resolve().as_uri() + f"#sort=-{key}"
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    parsed = MainTable()
    parsed.feed(result.stdout)

    expect = expected_rows(summary)
    shown = {r[0]: r[1:] for r in parsed.rows}
    assert shown == expect  # every rendered cell equals table.csv's value, as formatted
    # sorted by the fragment: koniq SRCC descending (the first column's first metric)
    koniq = [float(r[1 + 2 * 1]) for r in parsed.rows]  # columns: kadid, koniq, spaq
    assert koniq == sorted(koniq, reverse=True) and len(koniq) == 3
    assert f'data-sorted="-{key}"' in result.stdout
    n_images = len(parsed.srcs)
    assert n_images == 3 * 3 - 1 + 1  # one scatter per cell (8 cells) and the heat map
    assert parsed.body.get("data-images-ok") == f"{n_images}/{n_images}"
