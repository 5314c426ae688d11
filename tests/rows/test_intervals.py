"""intervals.csv and the stall list, on a real recorded run: the 1 KiB zero_copy loopback stall.

tests/fixtures/runs/20261127T014622Z-stall-232a is `orchestrate run` on this VM over loopback
(one_copy and zero_copy, 1 KiB, 1 and 2 connections, 2 repetitions, 2 s in 0.1 s intervals);
three zero_copy repetitions stalled in their first interval and are `degraded`.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.rows import intervals, layout, stall
from orchestrator.report import write as report
from orchestrator.rows.results import read_results
from orchestrator.rows.agentjson import load_agent_json

FIXTURE = Path(__file__).parents[1] / "fixtures" / "runs" / "20261127T014622Z-stall-232a"
STALLED = {"stream-zero_copy-1024B-1t-r1", "stream-zero_copy-1024B-1t-r2", "stream-zero_copy-1024B-2t-r2"}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / FIXTURE.name))


def test_rebuilt_intervals_load_with_one_read_csv_and_hold_the_window_bytes(run_dir: Path):
    results = read_results(run_dir / "results.csv")
    intervals.rebuild(run_dir, results)
    frame = pd.read_csv(run_dir / "intervals.csv")
    assert list(frame.columns) == list(intervals.COLUMNS)
    # One row per cell, repetition, connection and interval: 20 intervals per connection.
    assert len(frame) == int((results["threads"] * 20).sum())
    assert set(frame["cell_id"]) == set(results["cell_id"])
    # The receiver's bytes: per cell they sum to results.csv's window bytes, to the byte.
    per_cell = frame.groupby("cell_id")["bytes"].sum()
    for _, row in results.iterrows():
        assert per_cell[row["cell_id"]] == row["window_bytes"], row["cell_id"]
    assert (frame["role"] == "client").all()  # the server sent in every cell
    # Interval lengths are measured, not nominal, and tile the window.
    assert frame["length_s"].between(0.05, 0.2).all()
    # Each connection's last interval ends with its own window; the cell's window is the longest.
    ends = frame.groupby("cell_id")["t_end_s"].max()
    durations = results.set_index("cell_id")["duration_s"]
    for cell_id, end in ends.items():
        assert end == pytest.approx(durations[cell_id], abs=1e-5)
    stalled = frame[frame["cell_id"].isin(STALLED) & (frame["interval"] == 0)]
    assert stalled.groupby("cell_id")["bytes"].sum().eq(0).all()


def test_stall_list_is_exactly_the_rows_the_checks_made_degraded(run_dir: Path):
    results = read_results(run_dir / "results.csv")
    degraded = set(results.loc[results["status"] == "degraded", "cell_id"])
    assert degraded == STALLED
    frame = intervals.read_intervals(intervals.rebuild(run_dir, results))
    found = intervals.stalls(frame, 0.1)
    assert {s.cell_id for s in found} == STALLED
    for s in found:
        assert [r.index for r in s.low] == [0]
        assert s.lowest.rate == 0 and s.median > 0 and s.judged == 20


def test_stall_rule_from_the_file_equals_the_rule_from_the_agent_json():
    # One rule: the rates from intervals.csv rows and from the agent document are the same.
    for cell_dir in sorted((FIXTURE / "cells").iterdir()):
        doc = load_agent_json(cell_dir / "client.json")
        rows = pd.DataFrame(intervals.agent_rows({"cell_id": cell_dir.name}, "client", doc))
        assert [(r.index, r.start, r.end) for r in intervals.frame_rates(rows)] == \
            [(r.index, r.start, r.end) for r in stall.agent_rates(doc)]
        by_file = [r.rate for r in intervals.frame_rates(rows)]
        by_doc = [r.rate for r in stall.agent_rates(doc)]
        assert by_file == pytest.approx(by_doc, rel=1e-9)
        assert len(by_doc) == 20


def test_a_threshold_below_every_interval_finds_no_stall_and_a_lower_one_still_finds_a_zero(run_dir: Path):
    frame = intervals.read_intervals(intervals.rebuild(run_dir, read_results(run_dir / "results.csv")))
    assert intervals.stalls(frame, 0.0) == []
    assert {s.cell_id for s in intervals.stalls(frame, 0.01)} == STALLED


def test_low_intervals_rule():
    rates = [stall.Rate(i, i, i + 1, r) for i, r in enumerate([10.0, 10.0, 0.9, 10.0, 1.0])]
    low, median = stall.low_intervals(rates, 0.1)
    assert median == 10.0 and [r.index for r in low] == [2]
    assert stall.low_intervals(rates[:1], 0.1)[0] == []  # one interval judges nothing
    # A short last interval is not judged; a zero-length one neither.
    judged = stall.summed_rates([1.0, 2.0, 2.2], [10, 10, 0], nominal=1.0)
    assert [r.index for r in judged] == [0, 1]


def test_report_on_an_older_run_folder_builds_intervals_lists_the_stalls_and_draws_them(run_dir: Path):
    assert not (run_dir / "intervals.csv").exists()
    report.write_report(run_dir)
    assert (run_dir / "intervals.csv").is_file()
    text = (run_dir / "report.md").read_text()
    section = text[text.index("## Throughput over time"):]
    section = section[: section.index("\n## ", 5)]
    for cell_id in STALLED:
        assert f"`{cell_id}`: 1 of 20 intervals; lowest 0% of the median" in section
    assert "stream-one_copy" not in section
    assert "(plots/throughput_over_time.png)" in section
    png = run_dir / "plots" / "throughput_over_time.png"
    assert png.stat().st_size > 10_000
    # A second report reads the file it wrote instead of rebuilding it.
    before = (run_dir / "intervals.csv").stat().st_mtime_ns
    report.write_report(run_dir)
    assert (run_dir / "intervals.csv").stat().st_mtime_ns == before



def test_appended_cells_are_whole_lines_and_keep_only_drops_the_rest(tmp_path: Path):
    doc = load_agent_json(FIXTURE / "cells" / "stream-zero_copy-1024B-2t-r2" / "client.json")
    series = intervals.IntervalsFile(tmp_path)
    rows_a = intervals.agent_rows({"cell_id": "a", "pair": "default", "workload": "stream"}, "client", doc)
    rows_b = intervals.agent_rows({"cell_id": "b", "pair": "default", "workload": "stream"}, "client", doc)
    rows_b_p2 = intervals.agent_rows({"cell_id": "b", "pair": "p2", "workload": "stream"}, "client", doc)
    series.append(rows_a)
    series.append(rows_b)
    series.append(rows_b_p2)
    series.append([])  # a cell with no usable document adds nothing
    frame = pd.read_csv(tmp_path / "intervals.csv")
    assert len(frame) == len(rows_a) + len(rows_b) + len(rows_b_p2) == 120
    assert (tmp_path / "intervals.csv").read_bytes().count(b"run_id") == 1
    series.keep_only({("default", "b")})  # the same cell on another pair is another cell
    frame = pd.read_csv(tmp_path / "intervals.csv")
    assert set(frame["cell_id"]) == {"b"} and set(frame["pair"]) == {"default"} and len(frame) == 40


def test_a_torn_last_line_is_set_aside_when_the_file_is_opened(tmp_path: Path):
    doc = load_agent_json(FIXTURE / "cells" / "stream-one_copy-1024B-1t-r1" / "client.json")
    intervals.IntervalsFile(tmp_path).append(intervals.agent_rows({"cell_id": "a"}, "client", doc))
    path = tmp_path / "intervals.csv"
    whole = path.read_bytes()
    with path.open("ab") as fh:
        fh.write(b"run,a,stream,one_copy,10")
    intervals.IntervalsFile(tmp_path)
    assert path.read_bytes() == whole
    assert (tmp_path / "intervals.csv.torn-1").read_bytes() == b"run,a,stream,one_copy,10"


def test_an_error_document_gives_no_rows():
    doc = load_agent_json(Path(__file__).parents[1] / "fixtures" / "agent" / "error_client_receive.json")
    assert intervals.agent_rows({"cell_id": "x"}, "client", doc) == []
    assert intervals.cell_rows({"cell_id": "x", "workload": "stream", "sender": "server"},
                               Path(os.devnull).parent / "no-such-cell") == []


def test_an_intervals_file_of_another_layout_is_built_again(run_dir: Path):
    (run_dir / "intervals.csv").write_text("cell_id,t,bytes\nx,1,2\n")
    frame = intervals.ensure(run_dir, read_results(run_dir / "results.csv"))
    assert list(frame.columns) == list(intervals.COLUMNS) and len(frame) == 240


def _swap(cell_id: str) -> str:
    return cell_id[:-1] + ("2" if cell_id.endswith("r1") else "1")


def _two_pair_run(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """The recorded cells run on two named pairs: p1's folders as recorded, p2's each holding the
    other repetition's raw files (r1 and r2 swapped), so a row read from the wrong pair's folder shows."""
    run_dir = tmp_path / "two-pairs"
    for cell in (FIXTURE / "cells").iterdir():
        shutil.copytree(cell, layout.cell_dir(run_dir, cell.name, "p1"))
        shutil.copytree(cell, layout.cell_dir(run_dir, _swap(cell.name), "p2"))
    results = read_results(FIXTURE / "results.csv")
    both = pd.concat([results.assign(pair=p) for p in ("p1", "p2")], ignore_index=True)
    both.to_csv(run_dir / "results.csv", index=False)
    return run_dir, read_results(run_dir / "results.csv")


def _check_two_pairs(frame: pd.DataFrame, results: pd.DataFrame) -> None:
    window = results[results["pair"] == "p1"].set_index("cell_id")["window_bytes"]
    assert len(frame) == 2 * int((results[results["pair"] == "p1"]["threads"] * 20).sum()) == 480
    per_cell = frame.groupby(["pair", "cell_id"])["bytes"].sum()
    for cell_id in window.index:
        assert window[cell_id] != window[_swap(cell_id)]  # the two pairs' files do differ
        assert per_cell["p1", cell_id] == window[cell_id], cell_id
        assert per_cell["p2", cell_id] == window[_swap(cell_id)], cell_id


def test_rebuild_and_ensure_read_each_pairs_cells_from_its_own_folder(tmp_path: Path):
    run_dir, results = _two_pair_run(tmp_path)
    assert set(results["pair"]) == {"p1", "p2"} and not (run_dir / "cells").exists()
    frame = intervals.ensure(run_dir, results)  # no intervals.csv yet: built from pairs/*/cells
    _check_two_pairs(frame, results)
    _check_two_pairs(intervals.read_intervals(intervals.rebuild(run_dir, results)), results)
    # A file that holds only p1's cells lacks p2's (the same cell ids): ensure builds it again.
    only_p1 = frame[frame["pair"] == "p1"]
    only_p1.to_csv(run_dir / "intervals.csv", index=False)
    _check_two_pairs(intervals.ensure(run_dir, results), results)


def test_keep_only_rewrites_a_file_from_before_the_pair_column_before_append(tmp_path: Path):
    doc = load_agent_json(FIXTURE / "cells" / "stream-zero_copy-1024B-2t-r2" / "client.json")
    old_columns = [c for c in intervals.COLUMNS if c != "pair"]
    old_rows = [intervals.agent_rows({"cell_id": c, "workload": "stream"}, "client", doc) for c in ("a", "b")]
    path = tmp_path / "intervals.csv"
    pd.DataFrame([*old_rows[0], *old_rows[1]])[old_columns].to_csv(path, index=False)
    series = intervals.IntervalsFile(tmp_path)
    series.keep_only({("default", "a"), ("default", "b")})  # nothing to drop, but the header is old
    series.keep_only({("default", "a")})
    series.append(intervals.agent_rows({"cell_id": "c", "pair": "p2", "workload": "stream"}, "client", doc))
    lines = list(csv.reader(path.open(newline="")))
    assert lines[0] == list(intervals.COLUMNS)
    assert len(lines) == 1 + 40 + 40 and {len(line) for line in lines} == {len(intervals.COLUMNS)}
    frame = intervals.read_intervals(path)
    assert set(zip(frame["pair"], frame["cell_id"])) == {("default", "a"), ("p2", "c")}
    kept = frame[frame["cell_id"] == "a"].reset_index(drop=True)
    assert kept["bytes"].tolist() == [r["bytes"] for r in old_rows[0]]
    assert kept["t_end_s"].tolist() == pytest.approx([r["t_end_s"] for r in old_rows[0]])
