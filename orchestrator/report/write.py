"""`orchestrate report`: summary.csv, the plots, and report.md/report.html beside a run.

The report answers the lab study's questions from this run's numbers only (answers.py);
report.md's sections are in markdown.py, report.html's page in html.py, the evidence sections
and their figures in evidence.py. This module writes them, each file whole or not at all.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import iperf3, pairs, plots
from .evidence import per_pair, sections
from .html import render_html, render_pairs_html
from .markdown import pairs_compared, render_markdown, render_pairs_markdown
from .runfolder import RunData, load_run
from .variants import variant_folder, variants
from ..rows import layout
from ..rows.durable import disk_error, write_atomic
from ..rows.results import check_format, repair_torn_tail


def write_report(run_dir: Path, baseline: str | None = None) -> Path:
    """write_report_with_summary's report.md."""
    return write_report_with_summary(run_dir, baseline)[0]


def write_report_with_summary(run_dir: Path, baseline: str | None = None) -> tuple[Path, pd.DataFrame]:
    """(report.md, every cell's summary row as summary.csv has it), so that the CLI need not read
    and summarize results.csv again.

    summary.csv, plots/*.png and *.svg, report.md and report.html in the run folder; returns report.md.

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
    whole, summary, written = _summary_and_plots(run, redo)
    evidence = sections(run, redo)
    text = render_markdown(run, summary, {label: list(paths) for label, paths in written.items()}, evidence)
    report = run.path / layout.REPORT_MD
    write_atomic(report, text, redo=redo)
    write_atomic(run.path / layout.REPORT_HTML, render_html(run, summary, written, evidence), redo=redo)
    return report, whole


def _summary_and_plots(run: RunData, redo: str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, list[Path]]]]:
    """summary.csv written whole (iperf3 cells included), then the study's plots per variant from
    the matrix's cells only: iperf3's reference cells, and the one_copy cells at one field the run
    added beside them, get a section of their own. Returns (the whole summary, the study's, plots)."""
    whole = run.summary
    write_atomic(run.path / layout.SUMMARY, whole.to_csv(index=False), redo=redo)
    summary = iperf3.without_reference(whole, run.config)
    try:
        written = {
            label: plots.write_plots(group, run.path / layout.PLOTS / variant_folder(label) if label else run.path / layout.PLOTS)
            for label, group in variants(summary)
        }
    except OSError as exc:
        raise disk_error(Path(exc.filename or run.path / layout.PLOTS), exc, redo=redo) from None
    return whole, summary, written


def _write_pairs_report(run: RunData, baseline: str, requested: bool, redo: str) -> tuple[Path, pd.DataFrame]:
    """The report of a run on several pairs: the pairs compared first, the study's plots with one row
    of panels per pair, then each pair's own findings as a one-pair report gives them."""
    table = pairs.ratio_table(run, baseline)
    write_atomic(run.path / layout.PAIRS, table.to_csv(index=False), redo=redo)
    whole, summary, written = _summary_and_plots(run, redo)
    evidence = per_pair(run, redo)
    section = pairs_compared(run, baseline, table, requested)
    text = render_pairs_markdown(run, summary, {label: list(paths) for label, paths in written.items()}, section.markdown(),
                                 evidence)
    report = run.path / layout.REPORT_MD
    write_atomic(report, text, redo=redo)
    write_atomic(run.path / layout.REPORT_HTML, render_pairs_html(run, summary, written, section, evidence), redo=redo)
    return report, whole
