"""results.csv is checked against its schema on every read: each hand edit a user could make is
refused, naming the file, the line (as an editor numbers it) and the column. Every file here is a
copy of a real run's results.csv (tests/fixtures/runs/20261206T023809Z-labfull-87e3), edited."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.errors import ExitStatus
from orchestrator.rows.results import ANALYSIS_COLUMNS, ResultsError, ResultsTable, check_format, read_results

from ..conftest import ROOT

RUNS = ROOT / "tests" / "fixtures" / "runs"
REAL = RUNS / "20261206T023809Z-labfull-87e3" / "results.csv"
Rows = list[list[str]]


def _real_rows() -> Rows:
    with REAL.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _edited(tmp_path: Path, edit: Callable[[Rows], object]) -> Path:
    """A copy of the real results.csv with `edit` applied to its records (header first), written
    back as the run writes it (csv's own quoting and \\r\\n)."""
    rows = _real_rows()
    edit(rows)
    path = tmp_path / "results.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _at(rows: Rows, name: str) -> int:
    return rows[0].index(name)


def _set(row: int, name: str, value: str) -> Callable[[Rows], None]:
    def edit(rows: Rows) -> None:
        rows[row][_at(rows, name)] = value
    return edit


def _refused(path: Path, line: int, column: str | None, why: str) -> str:
    """read_results, check_format and ResultsTable all refuse `path` naming it, the line and the column."""
    with pytest.raises(ResultsError) as refused:
        read_results(path)
    message = str(refused.value)
    assert refused.value.exit_code == ExitStatus.BAD_ARGUMENT == 2
    where = f"{path}, line {line}" + (f", column {column!r}" if column else "")
    assert where in message and why in message, message
    for other in (check_format, ResultsTable):
        with pytest.raises(ResultsError, match=re.escape(why)):
            other(path)
    return message


def test_every_recorded_run_reads_as_it_is():
    for path in sorted(RUNS.glob("*/results.csv")):
        assert len(read_results(path)) > 0, path


def test_a_copied_row_would_be_a_third_repetition_and_is_refused(tmp_path):
    path = _edited(tmp_path, lambda rows: rows.append(list(rows[1])))  # the copy is line 42
    message = _refused(path, 42, "cell_id", "a second row of cell rr-one_copy-4096B-2t-r1 (pair default)")
    assert "the first is on line 2" in message


def test_a_copy_at_999_gbits_is_refused_before_it_makes_a_mean(tmp_path):
    def copy_at_999(rows: Rows) -> None:
        copy = list(rows[3])
        copy[_at(rows, "throughput_gbps")] = "999"
        rows.append(copy)
    _refused(_edited(tmp_path, copy_at_999), 42, "cell_id", "a second row of cell stream-iperf3-65536B-1t-r2")


def test_a_negative_throughput(tmp_path):
    _refused(_edited(tmp_path, _set(5, "throughput_gbps", "-5")), 6, "throughput_gbps", "'-5' is negative")


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "NaN", "nan"])
def test_infinity_and_nan_alike(tmp_path, value):
    _refused(_edited(tmp_path, _set(7, "throughput_gbps", value)), 8, "throughput_gbps",
             f"{value!r} is not a finite number")


def test_an_unknown_mode(tmp_path):
    _refused(_edited(tmp_path, _set(2, "mode", "three_copy")), 3, "mode",
             "'three_copy' is not one of two_copy, one_copy, zero_copy, sendfile, io_uring, io_uring_zc, iperf3")


def test_an_unknown_status(tmp_path):
    _refused(_edited(tmp_path, _set(9, "status", "great")), 10, "status", "'great' is not one of ok, failed, degraded")


def test_a_deleted_throughput_column(tmp_path):
    def delete(rows: Rows) -> None:
        at = _at(rows, "throughput_gbps")
        for row in rows:
            del row[at]
    path = _edited(tmp_path, delete)
    # The run's own bookkeeping (which cells are done) needs no figures; analysis does.
    assert len(read_results(path)) == 40
    with pytest.raises(ResultsError) as refused:
        read_results(path, ANALYSIS_COLUMNS)
    assert f"{path}, line 1: missing column(s) throughput_gbps" in str(refused.value)


def test_text_in_a_number_column(tmp_path):
    _refused(_edited(tmp_path, _set(4, "duration_s", "ten")), 5, "duration_s", "'ten' is not a number")


def test_a_fraction_in_a_count(tmp_path):
    _refused(_edited(tmp_path, _set(4, "bytes_received", "12.5")), 5, "bytes_received", "'12.5' is not a whole number")


def test_inf_in_a_perf_column(tmp_path):
    rows = _real_rows()
    perf = next(name for name in rows[0] if name.startswith("server_") and name.endswith("_run_pct"))
    _refused(_edited(tmp_path, _set(1, perf, "inf")), 2, perf, "'inf' is not a finite number")


def test_an_unknown_bool(tmp_path):
    _refused(_edited(tmp_path, _set(1, "nodelay", "yes")), 2, "nodelay", "'yes' is not true or false")


def test_a_blank_cell_name(tmp_path):
    _refused(_edited(tmp_path, _set(11, "repetition", "")), 12, "repetition", "empty; every row names its cell")


def test_an_ok_row_without_its_throughput_is_refused_but_a_failed_one_is_read(tmp_path):
    _refused(_edited(tmp_path, _set(6, "throughput_gbps", "")), 7, "throughput_gbps", "empty on an ok row")

    def failed_without_figures(rows: Rows) -> None:
        for name, value in (("status", "failed"), ("error", "client agent: connection refused"),
                            ("throughput_gbps", ""), ("duration_s", ""), ("window_bytes", "")):
            rows[6][_at(rows, name)] = value
    frame = read_results(_edited(tmp_path, failed_without_figures))
    assert frame.loc[5, "status"] == "failed" and pd.isna(frame.loc[5, "throughput_gbps"])


def test_a_row_cut_short_or_too_long(tmp_path):
    _refused(_edited(tmp_path, lambda rows: rows[3].__delitem__(slice(10, None))), 4, "nodelay",
             "the row has 10 fields, the header")
    _refused(_edited(tmp_path, lambda rows: rows[3].append("1")), 4, None, "fields, the header")


def test_the_line_is_the_editors_when_an_error_spans_lines(tmp_path):
    def multiline_error_then_bad_mode(rows: Rows) -> None:
        rows[1][_at(rows, "status")] = "failed"
        rows[1][_at(rows, "error")] = "server agent: stderr said\nsomething\non three lines"
        rows[4][_at(rows, "mode")] = "three_copy"
    path = _edited(tmp_path, multiline_error_then_bad_mode)
    # Record 5 starts on line 7: record 2's error field holds two line breaks.
    _refused(path, 7, "mode", "'three_copy'")


def test_many_problems_name_ten_and_count_the_rest(tmp_path):
    def every_status(rows: Rows) -> None:
        for row in rows[1:]:
            row[_at(rows, "status")] = "great"
    message = _refused(_edited(tmp_path, every_status), 2, "status", "'great'")
    assert len(message.splitlines()) == 11 and message.endswith("... and 30 more")


def test_a_missing_or_empty_file(tmp_path):
    with pytest.raises(ResultsError, match="no results.csv"):
        read_results(tmp_path / "results.csv")
    empty = tmp_path / "results.csv"
    empty.write_bytes(b"")
    with pytest.raises(ResultsError, match="empty"):
        read_results(empty)
    empty.write_bytes(b"\r\n\r\n")
    with pytest.raises(ResultsError, match="empty"):
        read_results(empty)


def test_header_only_reads_as_no_rows(tmp_path):
    path = _edited(tmp_path, lambda rows: rows.__delitem__(slice(1, None)))
    frame = read_results(path)
    assert frame.empty and "throughput_gbps" in frame.columns


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "results.csv"
    data = REAL.read_bytes().split(b"\r\n")
    data[3] = data[3].replace(b"default", b"d\xe9fault", 1)
    path.write_bytes(b"\r\n".join(data))
    with pytest.raises(ResultsError, match=rf"{path}, line 4: not UTF-8"):
        read_results(path)


def test_perf_off_is_a_scope_the_run_writes(tmp_path):
    frame = read_results(_edited(tmp_path, _set(1, "perf_scope", "off")))
    assert frame.loc[0, "perf_scope"] == "off"
    _refused(_edited(tmp_path, _set(1, "perf_scope", "everything")), 2, "perf_scope", "'everything' is not one of")


def test_a_file_read_again_after_an_edit_is_checked_again(tmp_path):
    """The same bytes are checked once per process; an edit between two reads is still refused,
    and so is a later reader's column the first read did not require."""
    path = _edited(tmp_path, lambda rows: None)
    assert len(read_results(path)) == len(_real_rows()) - 1
    rows = _real_rows()
    rows[3][rows[0].index("throughput_gbps")] = "-1"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(ResultsError, match=r"line 4, column 'throughput_gbps': '-1' is negative"):
        read_results(path)
    no_throughput = _edited(tmp_path, lambda rows: [row.pop(rows[0].index("throughput_gbps")) for row in rows[::-1]])
    check_format(no_throughput)  # the run's own reads do not need it
    with pytest.raises(ResultsError, match="missing column"):
        read_results(no_throughput, ANALYSIS_COLUMNS)


def test_ten_thousand_rows_are_typed_as_the_recorded_ones(tmp_path):
    """A large file (the recorded rows repeated as more repetitions) reads with the same types and
    values as the recorded file, row for row: the column-at-once checks and typing change nothing."""
    rows = _real_rows()
    at_id, at_rep = rows[0].index("cell_id"), rows[0].index("repetition")
    big = [rows[0]]
    for k in range(250):
        for row in rows[1:]:
            rep = int(row[at_rep]) + 2 * k
            big.append([*row[:at_id], f"{row[at_id].rsplit('-r', 1)[0]}-r{rep}", *row[at_id + 1:]])
            big[-1][at_rep] = str(rep)
    path = tmp_path / "results.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(big)
    small, large = read_results(REAL), read_results(path)
    assert len(large) == 250 * len(small) and list(large.dtypes) == list(small.dtypes)
    same = large.iloc[:len(small)].drop(columns=["cell_id", "repetition"])
    pd.testing.assert_frame_equal(same, small.drop(columns=["cell_id", "repetition"]))
