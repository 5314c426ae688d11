"""Robustness, on recorded inputs: torn rows, appends that fail part-way, degraded measurements,
the plan's size."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from orchestrator.rows.agentjson import parse_agent_json
from orchestrator.experiment.config import Experiment
from orchestrator.errors import DiskError
from orchestrator.experiment.estimate import CELL_OVERHEAD_S
from orchestrator.experiment.plan import MAX_PLAN_CELLS, plan_size
from orchestrator.report.stats import summarize
from orchestrator.rows.results import MeasurementChecks, ResultsTable, cell_row, read_results, repair_torn_tail

CELLS = Path(__file__).parents[1] / "fixtures" / "cells"
STREAM = "stream-one_copy-65536B-2t-r1"  # the client receives, 2 connections, 0.5 s intervals, 2 s window
RR = "rr-two_copy-1024B-1t-r1"
CHECKS = MeasurementChecks(duration=2.0, window_tolerance=0.05, min_interval_fraction=0.1)


def _doc(cell_id: str, role: str) -> dict:
    return json.loads((CELLS / cell_id / f"{role}.json").read_text())


def _row(cell_id: str, checks=CHECKS, **edited: dict) -> dict:
    identity = json.loads((CELLS / cell_id / "identity.json").read_text())
    reports = {role: parse_agent_json(json.dumps(edited.get(role) or _doc(cell_id, role))) for role in ("server", "client")}
    return cell_row(identity, reports["server"], reports["client"], None, None, None, checks)


def _stall(doc: dict, index: int) -> dict:
    """Interval `index` of every connection moved nothing; its bytes arrive in the next one
    (as after a link outage), so every sum in the document still holds."""
    for thread in doc["threads_detail"]:
        intervals = thread["intervals"]
        intervals[index + 1]["bytes"] += intervals[index]["bytes"]
        intervals[index]["bytes"] = 0
    return doc


def test_recorded_cells_pass_the_checks():
    for cell_id in (STREAM, RR):
        row = _row(cell_id)
        assert row["status"] == "ok", row["error"]
        assert row["error"] is None


def test_a_stalled_interval_makes_the_cell_degraded():
    row = _row(STREAM, client=_stall(_doc(STREAM, "client"), 1))
    assert row["status"] == "degraded"
    assert "1 of 4 intervals below 10% of the median rate" in row["error"]
    assert "0.50-1.00s" in row["error"]
    assert row["throughput_gbps"] > 0  # what was measured is kept, for whoever wants to look


def test_the_sender_stalling_is_not_what_is_judged():
    # The sender's intervals count what it sent: the receiver's window is the measurement.
    row = _row(STREAM, server=_stall(_doc(STREAM, "server"), 1))
    assert row["status"] == "ok", row["error"]


def test_a_stall_on_one_of_two_connections_is_sharing_not_an_outage():
    doc = _doc(STREAM, "client")
    intervals = doc["threads_detail"][0]["intervals"]
    intervals[2]["bytes"] += intervals[1]["bytes"]
    intervals[1]["bytes"] = 0
    assert _row(STREAM, client=doc)["status"] == "ok"


def test_a_window_longer_than_the_duration_makes_the_cell_degraded():
    doc = _doc(STREAM, "client")
    doc["window"]["seconds"] = 2.4
    row = _row(STREAM, client=doc)
    assert row["status"] == "degraded"
    assert "measured window 2.400s, expected 2s ± 0.1s" in row["error"]
    doc["window"]["seconds"] = 2.09  # within 5% of 2 s
    assert _row(STREAM, client=doc)["status"] == "ok"


def test_a_short_window_gets_the_absolute_slack():
    doc = _doc(STREAM, "client")
    doc["window"]["seconds"] = 2.09
    short = MeasurementChecks(duration=2.0, window_tolerance=0.01, window_slack=0.1)
    assert _row(STREAM, short, client=doc)["status"] == "ok"
    strict = MeasurementChecks(duration=2.0, window_tolerance=0.01, window_slack=0.0)
    assert "expected 2s ± 0.02s" in _row(STREAM, strict, client=doc)["error"]


def test_thresholds_are_the_configured_ones():
    doc = _doc(STREAM, "client")
    doc["window"]["seconds"] = 2.4
    assert _row(STREAM, MeasurementChecks(2.0, window_tolerance=0.25), client=doc)["status"] == "ok"
    stalled = _stall(_doc(STREAM, "client"), 1)
    assert _row(STREAM, MeasurementChecks(2.0, min_interval_fraction=0.0), client=stalled)["status"] == "ok"
    assert _row(STREAM, None, client=stalled)["status"] == "ok"  # no checks asked for


def test_rr_client_stall_is_degraded():
    row = _row(RR, client=_stall(_doc(RR, "client"), 2))
    assert row["status"] == "degraded" and "intervals below" in row["error"]


def test_checks_are_configurable_in_the_experiment_with_documented_defaults():
    experiment = Experiment.model_validate({"name": "x", "matrix": {"mode": ["one_copy"]},
                                            "checks": {"window_tolerance": 0.1, "min_interval_fraction": 0.2}})
    assert (experiment.checks.window_tolerance, experiment.checks.min_interval_fraction) == (0.1, 0.2)
    default = Experiment.model_validate({"name": "x", "matrix": {"mode": ["one_copy"]}})
    assert (default.checks.window_tolerance, default.checks.min_interval_fraction) == (0.05, 0.1)
    assert default.checks.window_slack == 0.1


def test_degraded_rows_are_left_out_of_the_means_and_counted(tmp_path):
    ok = _row(STREAM)
    second = dict(ok, cell_id=STREAM.replace("-r1", "-r2"), repetition=2)
    degraded = dict(_row(STREAM, client=_stall(_doc(STREAM, "client"), 1)), cell_id=STREAM.replace("-r1", "-r3"),
                    repetition=3, throughput_gbps=0.001)
    results = ResultsTable(tmp_path / "results.csv")
    for row in (ok, second, degraded):
        results.append(row)
    summary = summarize(read_results(tmp_path / "results.csv"))
    (cell,) = summary.to_dict("records")
    assert (cell["ok"], cell["degraded"], cell["failed"], cell["repetitions"]) == (2, 1, 0, 3)
    assert cell["throughput_gbps_mean"] == pytest.approx(ok["throughput_gbps"])


# ---------------------------------------------------------------------------- results.csv


def _three_rows(tmp_path: Path) -> Path:
    path = tmp_path / "results.csv"
    results = ResultsTable(path)
    for n in (1, 2, 3):
        results.append(dict(_row(STREAM), cell_id=f"cell-{n}", error=None))
    return path


def test_a_torn_last_row_is_kept_aside_and_dropped(tmp_path):
    path = _three_rows(tmp_path)
    whole = path.read_bytes()
    path.write_bytes(whole[:-40])  # the last row cut, as ENOSPC or a crash leaves it
    kept = repair_torn_tail(path)
    assert kept == tmp_path / "results.csv.torn-1"
    assert whole.startswith(path.read_bytes()) and kept.read_bytes() == whole[len(path.read_bytes()):-40]
    assert list(read_results(path)["cell_id"]) == ["cell-1", "cell-2"]
    assert repair_torn_tail(path) is None  # whole rows are left alone


def test_a_quoted_line_break_is_not_a_row_end(tmp_path):
    path = tmp_path / "results.csv"
    results = ResultsTable(path)
    results.append(dict(_row(STREAM), cell_id="a", status="failed", error="two\nlines"))
    whole = path.read_bytes()
    assert repair_torn_tail(path) is None
    path.write_bytes(whole[: whole.index(b"two\n") + 4])  # torn right after the quoted line break
    assert repair_torn_tail(path) is not None
    assert path.read_bytes().count(b"\n") == 1  # only the header is left


def test_opening_the_table_repairs_and_appends_cleanly(tmp_path):
    path = _three_rows(tmp_path)
    path.write_bytes(path.read_bytes()[:-7])
    results = ResultsTable(path)
    assert results.torn is not None
    results.append(dict(_row(STREAM), cell_id="cell-3"))
    assert list(read_results(path)["cell_id"]) == ["cell-1", "cell-2", "cell-3"]


def test_a_write_that_fails_part_way_leaves_no_half_row(tmp_path, monkeypatch):
    path = _three_rows(tmp_path)
    before = path.read_bytes()
    real_write = os.write

    def short_then_enospc(fd, data):
        if len(data) > 10:
            return real_write(fd, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_enospc)
    with pytest.raises(DiskError) as caught:
        ResultsTable(path, resume=tmp_path).append(dict(_row(STREAM), cell_id="cell-4"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    message = str(caught.value)
    assert str(path) in message and "No space left" in message and "MB free" in message
    assert f"orchestrate run --resume {tmp_path}" in message


def test_removing_rows_rewrites_the_file_whole(tmp_path):
    path = _three_rows(tmp_path)
    ResultsTable(path).remove(["cell-2"])
    assert list(read_results(path)["cell_id"]) == ["cell-1", "cell-3"]
    assert not list(tmp_path.glob(".results.csv.*"))


# ---------------------------------------------------------------------------- scale


def test_plan_size_is_computed_without_expanding():
    matrix = {"message_size": list(range(1, 65)), "threads": list(range(1, 65)), "fields": list(range(1, 65)),
              "mode": ["two_copy", "one_copy", "zero_copy", "sendfile"]}
    experiment = Experiment.model_validate({"name": "x", "matrix": matrix, "repetitions": 100, "duration": "60m"})
    size = plan_size(experiment)
    assert size.cells == 64 * 64 * 64 * 4 * 100 > MAX_PLAN_CELLS
    assert size.too_big and "years" in size.describe()
    quick = Experiment.model_validate({"name": "x", "matrix": {"mode": ["one_copy", "two_copy"]}, "duration": "1s",
                                       "warmup": "0.5s", "repetitions": 2})
    # The dry run's estimate: setup, then per cell warm-up + duration + the measured overhead, then the report.
    from orchestrator.experiment.estimate import BUILD_S, REPORT_S, SETUP_S

    assert plan_size(quick).cells == 4
    assert plan_size(quick).seconds == pytest.approx(SETUP_S + BUILD_S + 4 * (1.5 + CELL_OVERHEAD_S) + REPORT_S)
    assert plan_size(quick, report=False).seconds == pytest.approx(SETUP_S + BUILD_S + 4 * (1.5 + CELL_OVERHEAD_S))
    assert not plan_size(quick).too_big



def test_pairs_at_once_take_one_pairs_time_and_one_after_another_their_sum():
    from orchestrator.experiment import estimate

    quick = Experiment.model_validate({"name": "x", "matrix": {"mode": ["one_copy", "two_copy"]}, "duration": "1s",
                                       "warmup": "0.5s", "repetitions": 2})
    one, at_once, serial = plan_size(quick), plan_size(quick, 3), plan_size(quick, 3, serial=True)
    assert at_once.cells == serial.cells == one.cells == 4  # per pair
    # The plan's time is the dry run's estimate, one rule for both (estimate.py).
    for size, pairs, apart in ((one, 1, False), (at_once, 3, False), (serial, 3, True)):
        assert size.seconds == pytest.approx(estimate.estimate(quick, 4, pairs=pairs, serial=apart).total_s)
    assert one.seconds < at_once.seconds < serial.seconds
    assert "4 cells on each of 3 pairs (12 in all)" in at_once.describe() and "the pairs at once" in at_once.describe()
    assert "one pair after another" in serial.describe()
    # Over the limit only one after another: 15 h of cells per pair, twice.
    long = Experiment.model_validate({"name": "x", "matrix": {"threads": [1, 2, 3]}, "repetitions": 5,
                                      "duration": "60m", "warmup": "0s"})
    assert not plan_size(long, 2).too_big and plan_size(long, 2, serial=True).too_big
    base = estimate.estimate(quick, 4)
    together, apart = estimate.estimate(quick, 4, pairs=3), estimate.estimate(quick, 4, pairs=3, serial=True)
    # The report grows with the pairs, at once or not (measured: estimate.REPORT_PAIR_S).
    assert together.total_s == pytest.approx(base.total_s + 2 * estimate.REPORT_PAIR_S)
    assert apart.total_s == pytest.approx(3 * (base.setup_s + base.cells_s) + base.report_s + 2 * estimate.REPORT_PAIR_S)
    assert "3 pairs one after another" in apart.breakdown() and "on 3 pairs at once" in together.breakdown()

def test_a_plan_over_the_limit_needs_yes(tmp_path):
    import time

    from orchestrator.cli import commands as cli
    from orchestrator.errors import ConfigError

    from ..conftest import ROOT
    from ..cli.test_cli import orchestrate

    long = Experiment.model_validate({"name": "long", "matrix": {"threads": [1, 2, 3, 4, 5]}, "repetitions": 5,
                                      "duration": "60m"})
    with pytest.raises(ConfigError, match="25 cells, about 25 h.*--yes"):
        cli._checked_size(long, yes=False)
    assert cli._checked_size(long, yes=True).cells == 25

    config = tmp_path / "huge.yml"
    config.write_text("name: huge\nrepetitions: 100\nduration: 60m\nmatrix:\n"
                      + "".join(f"  {key}: [{', '.join(str(v) for v in range(1, 65))}]\n"
                                for key in ("message_size", "threads", "fields")))
    started = time.monotonic()
    done = orchestrate("run", str(config), "--inventory", str(ROOT / "inventory.yml"), "--results",
                       str(tmp_path / "results"), timeout=10)
    assert done.returncode == 2, done.stderr
    assert "26,214,400 cells" in done.stderr and "--yes" in done.stderr
    assert time.monotonic() - started < 5
    assert not (tmp_path / "results").exists()
