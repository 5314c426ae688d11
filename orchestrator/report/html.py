"""report.html: the same findings as report.md, answer first, as one page that carries its
own figures, style and script, so it still works offline or mailed on its own."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown
import pandas as pd

from .answers import questions_section, summary_section
from .markdown import (COUNTER_PLOTS, METHOD, PLOT_TITLES, PairsSection, caveats_section, condition_flags, pair_body,
                       problems_section, rr_table, setup_section, stream_tables)
from .runfolder import RunData, pair_view, user_space_only
from .variants import variants

HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45;
       background: #fff; color: #111; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #eee; }
th.sortable { cursor: pointer; user-select: none; }
th.sortable::after { content: " \\2195"; color: #999; }
th[aria-sort=ascending]::after { content: " \\2191"; color: #000; }
th[aria-sort=descending]::after { content: " \\2193"; color: #000; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-weight: 600; }
pre { background: #f5f5f5; padding: 0.75rem; overflow-x: auto; }
details { margin: 0.75rem 0; }
details > summary { cursor: pointer; font-weight: 600; font-size: 1.1rem; }
.headline { border: 1px solid #ddd; padding: 0.5rem; }
@media print {
  body { max-width: none; margin: 0; background: #fff; color: #000; font-size: 10pt; }
  figure { break-inside: avoid; page-break-inside: avoid; }
  figure img { width: 100%; }
  table { break-inside: auto; }
  tr { break-inside: avoid; }
  th.sortable::after { content: ""; }
  details > summary { list-style: none; }
}
"""

# Hand-written rather than a library: the page must work offline, attached to a mail, with no CDN.
HTML_SCRIPT = """
(function () {
  var UNITS = {B: 1, KiB: 1024, MiB: 1048576, GiB: 1073741824};
  function key(text) {
    var t = text.trim().replace(/^[\u00d7x]/, "").replace(/,/g, "");
    var m = t.match(/^([-+]?[0-9]*\\.?[0-9]+(?:e[-+]?[0-9]+)?)\\s*(B|KiB|MiB|GiB)?/i);
    if (!m) return null;
    return parseFloat(m[1]) * (m[2] ? UNITS[m[2]] || 1 : 1);
  }
  function sortBy(table, column, th) {
    var body = table.tBodies[0];
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column] ? a.cells[column].textContent : "", y = b.cells[column] ? b.cells[column].textContent : "";
      var kx = key(x), ky = key(y), order;
      if (kx !== null && ky !== null) order = kx - ky;
      else if (kx !== null) order = -1;
      else if (ky !== null) order = 1;
      else order = x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }
  document.querySelectorAll("table").forEach(function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
      th.classList.add("sortable");
      th.title = "sort by this column";
      th.addEventListener("click", function () { sortBy(table, column, th); });
    });
  });
  // Collapsed sections would be missing from paper.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  });
})();
"""

HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style></head><body>
{body}
<script>{script}</script>
</body></html>
"""


def _html(text: str) -> str:
    return markdown.markdown(text, extensions=["tables", "fenced_code"])


def _figure(path: Path, title: str) -> str:
    """An SVG plot as a data URI: the page carries its images, and each figure keeps its own ids."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{html.escape(title)}">'
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def _collapsed(summary_text: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{html.escape(summary_text)}</summary>\n{body}\n</details>"


def _inline_plots(page: str, run_path: Path) -> str:
    """Sections written in markdown name their figures as files under plots/; the page carries
    them instead, so it still works when mailed on its own. Markdown writes `alt` before `src`,
    so the `src` is found wherever it stands in the tag."""

    def inline(match: re.Match) -> str:
        data = base64.b64encode((run_path / f"{match.group(2)}.svg").read_bytes()).decode("ascii")
        return f'{match.group(1)}src="data:image/svg+xml;base64,{data}"'

    page = re.sub(r'(<img\b[^>]*?\s)src="(plots/[^"]+?)\.(?:png|svg)"', inline, page)
    return re.sub(r'<a href="plots/[^"]*">[^<]*</a>', "", page)


def render_html(run: RunData, summary: pd.DataFrame, plot_paths: dict[str, dict[str, list[Path]]],
                evidence: str = "") -> str:
    """The same findings as report.md, answer first: summary, headline figure and problem cells,
    then per combination the plots and full answers; tables, setup and method collapsed."""
    cells, rows = len(summary), len(run.results)
    parts = [f"<h1>{html.escape(f'Run {run.run_id}')}</h1>",
             _html(f"{cells} cells, {rows} cell repetitions, from `{run.path.name}/results.csv`; "
                   "one row per cell in `summary.csv`.")]
    parts.append(_html(summary_section(run, summary)))
    headline = next((paths for by_name in plot_paths.values() for name, paths in by_name.items()
                     if name == "throughput_vs_size"), None)
    if headline:
        svg = next(p for p in headline if p.suffix == ".svg")
        parts.append(f'<div class="headline">{_figure(svg, PLOT_TITLES["throughput_vs_size"])}</div>')
    parts.append(_html(problems_section(summary)))
    parts.append(_html(caveats_section(run, summary)))
    for label, group in variants(summary):
        if label:
            parts.append(f"<h1>{html.escape(f'With {label}')}</h1>")
        parts.append("<h2>Plots</h2>")
        parts += _plot_figures(run, plot_paths.get(label, {}))
        parts.append(_html(questions_section(group, run)))
        tables = (stream_tables(group, user_space_only(run.results), condition_flags(run, group)) + "\n" + rr_table(group)) if not group.empty else "No cells.\n"
        parts.append(_collapsed("Tables: every cell (click a column to sort)", _html(tables)))
    if evidence.strip():
        parts.append(_inline_plots(_html(evidence), run.path))
    parts.append(_collapsed("Setup: hosts, link and config", _html(setup_section(run).removeprefix("## Setup\n"))))
    parts.append(_collapsed("How the numbers are made", _html(METHOD.split("\n", 1)[1])))
    return HTML_PAGE.format(title=html.escape(f"Run {run.run_id}"), style=HTML_STYLE, script=HTML_SCRIPT,
                            body="\n".join(parts))


def _plot_figures(run: RunData, paths_by_name: dict[str, list[Path]]) -> list[str]:
    """One variant's plots as figures, each counter plot with its user-space-only note where perf
    counted user space only."""
    user = user_space_only(run.results)
    parts = []
    for name, paths in paths_by_name.items():
        svg = next(p for p in paths if p.suffix == ".svg")
        parts.append(_figure(svg, PLOT_TITLES.get(name, name)))
        if user and name in COUNTER_PLOTS:
            parts.append(_html(f"*User space only:* {user.caveat}."))
    return parts


def render_pairs_html(run: RunData, summary: pd.DataFrame, plot_paths: dict[str, dict[str, list[Path]]],
                      pairs_section: PairsSection, evidence: dict[str, str]) -> str:
    """report.html of a run on several pairs: the pairs compared first (open), the plots with one
    row of panels per pair, then each pair's findings, collapsed, as a one-pair report gives them."""
    title = f"Run {run.run_id}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             _html(f"{len(summary)} cells over {len(run.pairs)} host pairs ({', '.join(run.pairs)}), "
                   f"{len(run.results)} cell repetitions, from `{run.path.name}/results.csv`; "
                   "one row per pair and cell in `summary.csv`."),
             f'<section id="pairs">{_html(pairs_section.head)}{_html(pairs_section.facts)}'
             + _collapsed(f"{pairs_section.detail_title} (click a column to sort)", _html(pairs_section.detail))
             + "</section>"]
    for label, _ in variants(summary):
        parts.append(f"<h2>{html.escape(f'Plots with {label}' if label else 'Plots')}</h2>")
        parts.append(_html("Each plot has one row of panels per pair, on one y scale per metric."))
        parts += _plot_figures(run, plot_paths.get(label, {}))
    for pair in run.pairs:
        view = pair_view(run, pair)
        own = summary[summary["pair"].astype(str) == pair].reset_index(drop=True) if not summary.empty else summary
        body = _inline_plots(_html("\n".join(pair_body(view, own, evidence.get(pair, "")))), run.path)
        parts.append(_collapsed(f"Pair {pair}: answers, setup, problems and tables", body))
    parts.append(_collapsed("How the numbers are made", _html(METHOD.split("\n", 1)[1])))
    return HTML_PAGE.format(title=html.escape(title), style=HTML_STYLE, script=HTML_SCRIPT, body="\n".join(parts))
