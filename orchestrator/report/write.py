"""`orchestrate report`: summary.csv, the plots, and report.md/report.html beside a run.

The report answers the lab study's questions from this run's numbers only (answers.py);
report.md's sections are in reportmd.py, report.html's page in reporthtml.py. This module
writes them, with the figures of the evidence sections, each file whole or not at all.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..rows import hostcounters, intervals, layout, tcpinfo
from . import iperf3, pairs, plots, stats
from ..experiment.dimensions import with_pair
from ..rows.durable import disk_error, write_atomic
from .html import render_html, render_pairs_html
from .markdown import pairs_compared, render_markdown, render_pairs_markdown
from ..rows.results import MeasurementChecks, check_format, repair_torn_tail
from .runfolder import RunData, load_run, pair_view
from .variants import variant_folder, variants

def _over_time(run: RunData, redo: str, series: pd.DataFrame | None = None, folder: str = layout.PLOTS) -> str:
    """intervals.csv (rebuilt from the raw files for an older run folder), its figure and the
    stall list, by the run's own `checks.min_interval_fraction`. With several pairs, `series` is one
    pair's rows and `folder` that pair's plots folder."""
    checks = run.config.get("checks") if isinstance(run.config.get("checks"), dict) else {}
    fraction = float(checks.get("min_interval_fraction", MeasurementChecks.min_interval_fraction))
    if series is None:
        series = intervals.ensure(run.path, run.results)
    found = intervals.stalls(series, fraction)
    name = None
    if not series.empty:
        try:
            plots.write_throughput_over_time(series, {s.cell_id: [r.index for r in s.low] for s in found},
                                             run.path / folder)
        except OSError as exc:
            raise disk_error(Path(exc.filename or run.path / folder), exc, redo=redo) from None
        name = f"{folder}/throughput_over_time"
    return intervals.report_section(found, fraction, name, not series.empty)


def _cpu_went(run: RunData, redo: str, folder: str = layout.PLOTS) -> str:
    bars = hostcounters.cpu_bars(run.results)
    name = None
    if not bars.empty:
        try:
            plots.write_where_cpu_went(bars, run.path / folder)
        except OSError as exc:
            raise disk_error(Path(exc.filename or run.path / folder), exc, redo=redo) from None
        name = f"{folder}/where_cpu_went"
    return hostcounters.report_section(run.results, name)


def _pair_evidence(run: RunData, redo: str) -> dict[str, str]:
    """The evidence sections once per pair, each from that pair's rows, figures under plots/pairs/PAIR/."""
    # An intervals.csv without a pair column holds the "default" pair's rows (dimensions.with_pair).
    series = with_pair(intervals.ensure(run.path, run.results))
    evidence = {}
    for pair in run.pairs:
        view = pair_view(run, pair)
        folder = f"plots/pairs/{variant_folder(pair)}"
        own = series[series["pair"].astype(str) == pair]
        evidence[pair] = (_over_time(view, redo, own.reset_index(drop=True), folder) + "\n"
                          + tcpinfo.report_section(view.results) + "\n" + _cpu_went(view, redo, folder)
                          + "\n" + iperf3.report_section(view.results))
    return evidence


def write_report(run_dir: Path, baseline: str | None = None) -> Path:
    """summary.csv, plots/*.png and *.svg, report.md and report.html in the run folder; returns report.md.

    A run on several host pairs also gets pairs.csv and the "Pairs compared" section: each pair
    against `baseline` (default: the run's first pair; a name the run lacks is a ConfigError,
    raised before anything is written).

    A torn last row of results.csv (a crash or a full disk mid-write) is set aside first, as
    `--resume` does. Every file is written whole or not at all: a full disk is a DiskError."""
    run_dir = Path(run_dir)
    rows = run_dir / layout.RESULTS
    if rows.is_file():
        check_format(rows)  # another format version is refused before it is touched
        repair_torn_tail(rows)
    run = load_run(run_dir)
    base = pairs.baseline_pair(run, baseline)
    redo = f"orchestrate report {run.path}" + (f" --baseline {baseline}" if baseline else "")
    if pairs.is_multi_pair(run):
        return _write_pairs_report(run, base, baseline is not None, redo)
    summary, written = _summary_and_plots(run, redo)
    evidence = _over_time(run, redo) + "\n" + tcpinfo.report_section(run.results) + "\n" + _cpu_went(run, redo)
    evidence += "\n" + iperf3.report_section(run.results)
    text = render_markdown(run, summary, {label: list(paths) for label, paths in written.items()}, evidence)
    report = run.path / layout.REPORT_MD
    write_atomic(report, text, redo=redo)
    write_atomic(run.path / layout.REPORT_HTML, render_html(run, summary, written, evidence), redo=redo)
    return report


def _summary_and_plots(run: RunData, redo: str) -> tuple[pd.DataFrame, dict[str, dict[str, list[Path]]]]:
    """summary.csv written whole (iperf3 cells included), then the study's plots per variant from
    our cells only: iperf3's reference cells get a section of their own."""
    summary = stats.summarize(run.results)
    write_atomic(run.path / layout.SUMMARY, summary.to_csv(index=False), redo=redo)
    summary = iperf3.without_reference(summary)
    try:
        written = {
            label: plots.write_plots(group, run.path / layout.PLOTS / variant_folder(label) if label else run.path / layout.PLOTS)
            for label, group in variants(summary)
        }
    except OSError as exc:
        raise disk_error(Path(exc.filename or run.path / layout.PLOTS), exc, redo=redo) from None
    return summary, written


def _write_pairs_report(run: RunData, baseline: str, requested: bool, redo: str) -> Path:
    """The report of a run on several pairs: the pairs compared first, the study's plots with one row
    of panels per pair, then each pair's own findings as a one-pair report gives them."""
    table = pairs.ratio_table(run, baseline)
    write_atomic(run.path / layout.PAIRS, table.to_csv(index=False), redo=redo)
    summary, written = _summary_and_plots(run, redo)
    evidence = _pair_evidence(run, redo)
    section = pairs_compared(run, baseline, table, requested)
    text = render_pairs_markdown(run, summary, {label: list(paths) for label, paths in written.items()}, section.markdown(),
                                 evidence)
    report = run.path / layout.REPORT_MD
    write_atomic(report, text, redo=redo)
    write_atomic(run.path / layout.REPORT_HTML, render_pairs_html(run, summary, written, section, evidence), redo=redo)
    return report
