"""`orchestrate report`: summary.csv, the plots, and report.md/report.html beside a run.

The report answers the lab study's questions from this run's numbers only (answers.py);
report.md's sections are in reportmd.py, report.html's page in reporthtml.py. This module
writes them, with the figures of the evidence sections, each file whole or not at all.
"""

from __future__ import annotations

from pathlib import Path

from . import hostcounters, intervals, plots, referencereport, stats, tcpinfo
from .files import disk_error, write_atomic
from .reporthtml import render_html
from .reportmd import render_markdown
from .runfolder import RunData, load_run
from .results import MeasurementChecks, check_format, repair_torn_tail
from .variants import variant_folder, variants

def _over_time(run: RunData, redo: str) -> str:
    """intervals.csv (rebuilt from the raw files for an older run folder), its figure and the
    stall list, by the run's own `checks.min_interval_fraction`."""
    checks = run.config.get("checks") if isinstance(run.config.get("checks"), dict) else {}
    fraction = float(checks.get("min_interval_fraction", MeasurementChecks.min_interval_fraction))
    series = intervals.ensure(run.path, run.results)
    found = intervals.stalls(series, fraction)
    name = None
    if not series.empty:
        try:
            plots.write_throughput_over_time(series, {s.cell_id: [r.index for r in s.low] for s in found},
                                             run.path / "plots")
        except OSError as exc:
            raise disk_error(Path(exc.filename or run.path / "plots"), exc, redo=redo) from None
        name = "plots/throughput_over_time"
    return intervals.report_section(found, fraction, name, not series.empty)


def _cpu_went(run: RunData, redo: str) -> str:
    bars = hostcounters.cpu_bars(run.results)
    name = None
    if not bars.empty:
        try:
            plots.write_where_cpu_went(bars, run.path / "plots")
        except OSError as exc:
            raise disk_error(Path(exc.filename or run.path / "plots"), exc, redo=redo) from None
        name = "plots/where_cpu_went"
    return hostcounters.report_section(run.results, name)


def write_report(run_dir: Path) -> Path:
    """summary.csv, plots/*.png and *.svg, report.md and report.html in the run folder; returns report.md.

    A torn last row of results.csv (a crash or a full disk mid-write) is set aside first, as
    `--resume` does. Every file is written whole or not at all: a full disk is a DiskError."""
    run_dir = Path(run_dir)
    if (run_dir / "results.csv").is_file():
        check_format(run_dir / "results.csv")  # another format version is refused before it is touched
        repair_torn_tail(run_dir / "results.csv")
    run = load_run(run_dir)
    redo = f"orchestrate report {run.path}"
    summary = stats.summarize(run.results)
    write_atomic(run.path / "summary.csv", summary.to_csv(index=False), redo=redo)
    summary = referencereport.without_reference(summary)  # issue 11: iperf3 cells get their own section
    try:
        written = {
            label: plots.write_plots(group, run.path / "plots" / variant_folder(label) if label else run.path / "plots")
            for label, group in variants(summary)
        }
    except OSError as exc:
        raise disk_error(Path(exc.filename or run.path / "plots"), exc, redo=redo) from None
    evidence = _over_time(run, redo) + "\n" + tcpinfo.report_section(run.results) + "\n" + _cpu_went(run, redo)
    evidence += "\n" + referencereport.report_section(run.results)
    text = render_markdown(run, summary, {label: list(paths) for label, paths in written.items()}, evidence)
    report = run.path / "report.md"
    write_atomic(report, text, redo=redo)
    write_atomic(run.path / "report.html", render_html(run, summary, written, evidence), redo=redo)
    return report
