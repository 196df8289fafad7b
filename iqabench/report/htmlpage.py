"""report.html: one self-contained page (inline CSS and script, figures as data: URIs, no network).

Every table sorts when its header is clicked; the main table also sorts on load from the URL
fragment `#sort=<key>` (ascending) or `#sort=-<key>` (descending), where <key> is a header's
data-key ("method", or "<column slug>:<metric>"), and records the sort in `data-sorted` on the
table. After the page has loaded, the script sets `data-images-ok="<loaded>/<total>"` on <body>,
counting images that are complete with a natural width above 0.
"""
from __future__ import annotations

import base64
import html
import json

from iqabench.metrics import label as metric_label
from iqabench.report.breakdown import BreakdownRow
from iqabench.report.compare import PairTest
from iqabench.report.grid import NULL, Grid, fmt, legend
from iqabench.report.plots import slug
from iqabench.report.select import RunEntry

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}
th,td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}th[colspan]{text-align:center;cursor:default}
th{background:#f3f3f3;cursor:pointer;user-select:none;white-space:nowrap}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
td.best .v{font-weight:700}.pm,.ci{color:#666;font-size:90%}
td.left{text-align:left}pre{font-size:12px;max-width:900px;overflow:auto;background:#f8f8f8;padding:.5em}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs figure{margin:0}.figs img{max-width:420px;height:auto}
figcaption{font-size:12px;color:#555}.note{color:#555;font-size:13px}
"""

_JS = """
(function(){
  function value(td){
    var v = td.getAttribute('data-value');
    if (v === null) return td.textContent.trim().toLowerCase();
    return v === '' ? null : parseFloat(v);
  }
  function sortTable(table, key, desc){
    var heads = table.tHead.rows[table.tHead.rows.length - 1].cells, col = -1;
    for (var i = 0; i < heads.length; i++){
      if (heads[i].getAttribute('data-key') === key) col = i;
      heads[i].removeAttribute('data-dir');
    }
    if (col < 0) return false;
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function(a, b){
      var x = value(a.cells[col]), y = value(b.cells[col]);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   /* empty cells last, whatever the direction */
      if (y === null) return -1;
      var c = x < y ? -1 : x > y ? 1 : 0;
      return desc ? -c : c;
    });
    rows.forEach(function(r){ body.appendChild(r); });
    heads[col].setAttribute('data-dir', desc ? 'desc' : 'asc');
    table.setAttribute('data-sorted', (desc ? '-' : '') + key);
    return true;
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
    Array.prototype.forEach.call(heads, function(th){
      th.addEventListener('click', function(){
        sortTable(table, th.getAttribute('data-key'), th.getAttribute('data-dir') === 'asc');
      });
    });
  });
  var m = /(?:^#|&)sort=([^&]+)/.exec(location.hash);
  var main = document.getElementById('main-table');
  if (m && main){
    var key = decodeURIComponent(m[1]), desc = key.charAt(0) === '-';
    sortTable(main, desc ? key.slice(1) : key, desc);
  }
  window.addEventListener('load', function(){
    var imgs = document.images, ok = 0;
    for (var i = 0; i < imgs.length; i++) if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
    document.body.setAttribute('data-images-ok', ok + '/' + imgs.length);
  });
})();
"""


def e(text) -> str:
    return html.escape(str(text), quote=True)


def column_key(grid: Grid, col, metric: str) -> str:
    """The data-key of a main-table header: "<column slug>:<metric>"."""
    return f"{slug(grid.titles[col])}:{metric}"


def img(png: bytes, alt: str) -> str:
    return f'<img alt="{e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _num_td(value, text: str, extra: str = "", cls: str = "") -> str:
    data = "" if value is None else repr(float(value))
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} data-value="{data}"><span class="v">{e(text)}</span>{extra}</td>'


def main_table(grid: Grid) -> str:
    d = grid.options.decimals
    head1 = '<tr><th rowspan="1"></th>' + "".join(
        f'<th colspan="{len(grid.metrics)}" data-key="">{e(grid.titles[c])}</th>' for c in grid.columns) + "</tr>"
    head2 = '<tr><th data-key="method">Method</th>' + "".join(
        f'<th data-key="{e(column_key(grid, c, m))}">{e(grid.options.header(m))}</th>'
        for c in grid.columns for m in grid.metrics) + "</tr>"
    rows = []
    for ident in grid.rows:
        tds = [f'<td class="left">{e(grid.row_label(ident))}</td>']
        for col in grid.columns:
            for metric in grid.metrics:
                g = grid.get(ident, col, metric)
                extra = ""
                if g.spread is not None:
                    extra += f'<span class="pm"> ± {e(fmt(g.spread, d))}</span>'
                if g.ci is not None:
                    extra += f'<span class="ci"> [{e(fmt(g.ci[0], d))}, {e(fmt(g.ci[1], d))}]</span>'
                extra += ("<sup>†</sup>" if g.tied else "") + ("<sup>‡</sup>" if g.falling else "")
                extra += "<sup>§</sup>" if g.own_labels else ""
                tds.append(_num_td(g.value, g.text, extra, "best" if g.bold else ""))
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<table id="main-table" class="sortable"><thead>{head1}{head2}</thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _table(table_id: str, heads: list[tuple[str, str]], rows: list[list[str]]) -> str:
    head = "".join(f'<th data-key="{e(k)}">{e(t)}</th>' for k, t in heads)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f'<table id="{table_id}" class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def runs_table(entries: list[RunEntry], labels: dict, decimals: int) -> str:
    heads = [("method", "Method"), ("dataset", "Dataset"), ("split", "Split"), ("part", "Part"), ("n", "n"),
             ("failed", "Failed"), ("status", "Status"), ("srcc", metric_label("srcc")), ("plcc", metric_label("plcc")), ("role", "Role"),
             ("manifest", "Run")]
    rows = []
    for x in entries:
        m = x.run.metrics or {}
        manifest = json.dumps(x.run.manifest, indent=1, sort_keys=True, default=str)
        rows.append([f'<td class="left">{e(labels[x.identity])}</td>', f'<td class="left">{e(x.run.dataset)}</td>',
                     f'<td class="left">{e(x.run.split)}</td>', f'<td class="left">{e(x.run.part)}</td>',
                     _num_td(x.run.n, "?" if x.run.n is None else str(x.run.n)),
                     _num_td(m.get("n_failed"), str(m.get("n_failed", "?"))),
                     f'<td class="left">{e(x.run.status)}</td>',
                     _num_td(x.run.metric("srcc"), fmt(x.run.metric("srcc"), decimals)),
                     _num_td(x.run.metric("plcc"), fmt(x.run.metric("plcc"), decimals)),
                     f'<td class="left">{e(x.remark)}</td>',
                     f'<td class="left"><details><summary>{e(x.run.rel)}</summary><pre>{e(manifest)}</pre>'
                     f'</details></td>'])
    return _table("runs-table", heads, rows)


def significance_table(tests: list[PairTest], labels: dict, titles: dict) -> str:
    heads = [("column", "Column"), ("metric", "Metric"), ("a", "Method A"), ("b", "Method B"), ("n", "n"),
             ("diff", "A − B"), ("ci", "95% CI"), ("p_boot", "p (bootstrap)"), ("p_w", "p (Williams)"),
             ("note", "Note")]
    rows = []
    for t in tests:
        ci = "" if t.ci_low is None else f"[{t.ci_low:.3f}, {t.ci_high:.3f}]"
        rows.append([f'<td class="left">{e(titles[t.column])}</td>', f'<td class="left">{e(t.metric)}</td>',
                     f'<td class="left">{e(labels[t.a])}</td>', f'<td class="left">{e(labels[t.b])}</td>',
                     _num_td(t.n, str(t.n)), _num_td(t.diff, fmt(t.diff, 3)), f'<td>{e(ci)}</td>',
                     _num_td(t.p_bootstrap, _p(t.p_bootstrap)), _num_td(t.p_williams, _p(t.p_williams)),
                     f'<td class="left">{e(t.note)}</td>'])
    return _table("significance-table", heads, rows)


def _p(value: float | None) -> str:
    return NULL if value is None else "<0.0001" if value < 1e-4 else f"{value:.4f}"


def breakdown_tables(rows: list[BreakdownRow], labels_in_order: list[str], decimals: int) -> str:
    out = []
    for title, kind in sorted({(r.column_title, r.kind) for r in rows}):
        sub = [r for r in rows if r.column_title == title and r.kind == kind]
        methods = [m for m in labels_in_order if any(r.label == m for r in sub)]
        heads = [("group", kind), ("n", "n")] + [(f"m{i}", m) for i, m in enumerate(methods)]
        body = []
        for order, group in sorted({(r.order, r.group) for r in sub}):
            found = {r.label: r for r in sub if r.group == group}
            n = max(r.n for r in found.values())
            sort_value = "" if order[0] else f' data-value="{order[1]!r}"'  # levels sort as numbers
            body.append([f'<td class="left"{sort_value}>{e(group)}</td>',
                         _num_td(n, str(n))]
                        + [_num_td(found[m].srcc, fmt(found[m].srcc, decimals)) if m in found else _num_td(None, NULL)
                           for m in methods])
        out.append(f"<h3>{e(title)}: SRCC per {e(kind)}</h3>"
                   + _table(f"breakdown-{slug(title)}-{kind}", heads, body))
    return "".join(out)


def page(grid: Grid, notes: list[str], entries: list[RunEntry], tests: list[PairTest],
         breakdown: list[BreakdownRow], figures: list[tuple[str, bytes]], heat: bytes | None) -> str:
    d = grid.options.decimals
    order = [grid.labels[i] for i in grid.rows]
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">",
             f"<title>iqabench report</title><style>{_CSS}</style></head><body>",
             "<h1>iqabench results</h1>",
             f"<p class=\"note\">{e(' '.join(legend(grid)))} {NULL}: no full complete run (see the runs). "
             f"{e('Columns: ' + '; '.join(grid.column_sentences()) + '.')} Click a header to sort.</p>", main_table(grid)]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    if heat is not None:
        parts.append("<h2>SRCC heat map</h2>" + img(heat, "SRCC heat map"))
    if tests:
        parts.append("<h2>Significance</h2><p class=\"note\">Paired tests on the images both runs scored "
                     f"(bootstrap: {grid.options.bootstrap_resamples} resamples, seed {grid.options.bootstrap_seed}; "
                     "Williams' t after Steiger 1980). Also in significance.csv.</p>"
                     + significance_table(tests, grid.labels, grid.titles))
    if breakdown:
        parts.append("<h2>Per distortion type and level</h2>" + breakdown_tables(breakdown, order, d))
    if figures:
        parts.append("<h2>Scatter plots</h2><div class=\"figs\">" + "".join(
            f"<figure>{img(png, name)}<figcaption>{e(name)}</figcaption></figure>" for name, png in figures)
                     + "</div>")
    parts.append("<h2>Runs</h2><p class=\"note\">Every run folder found; open a run for its manifest.</p>"
                 + runs_table(entries, grid.labels, d))
    parts.append(f"<script>{_JS}</script></body></html>")
    return "".join(parts)
