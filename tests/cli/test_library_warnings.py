"""Warnings from numpy, matplotlib and pandas never reach the terminal: they are logged, into
run.log while a run's log is attached."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from orchestrator.cli import entry
from orchestrator.run import runner

from .test_cli import RUNS, orchestrate


def test_a_report_with_a_cell_that_moved_nothing_prints_no_warning(tmp_path):
    # A stream cell whose rows moved nothing (a valid file: figures are non-negative): its CPU per
    # byte once was infinite, numpy and matplotlib printed overflow warnings while the "Where the
    # CPU went" figure was drawn, and matplotlib then failed (exit 70). It has no bar now.
    run = Path(shutil.copytree(RUNS / "20261206T023809Z-labfull-87e3", tmp_path / "run"))
    path = run / "results.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    for row in rows[1:]:
        if row[header.index("cell_id")].startswith("stream-one_copy-4096B-1t-"):
            for name in ("throughput_gbps", "window_bytes", "messages_per_s", "bytes_sent", "bytes_received"):
                row[header.index(name)] = "0"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    done = orchestrate("report", str(run), timeout=600)
    assert done.returncode == 0, done.stderr
    said = done.stdout + done.stderr
    assert "Warning" not in said and "warn" not in said.lower(), said
    assert said.startswith("report: ") and (run / "report.html").exists()


def test_a_warning_during_a_run_goes_to_run_log(tmp_path):
    handler = runner._attach_log(tmp_path)
    try:
        entry._warning_to_log(RuntimeWarning("overflow encountered in scalar add"), RuntimeWarning,
                              "matplotlib/patches.py", 905)
    finally:
        runner._detach_log(handler)
    assert "orchestrator.warnings RuntimeWarning: overflow encountered in scalar add (matplotlib/patches.py:905)" \
        in (tmp_path / "run.log").read_text()
