"""`report` and `compare` on run folders they cannot read (exit 2, nothing written) and into
folders they cannot write (exit 5), as a user runs them: the real command in its own process."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import pytest

from orchestrator.errors import ExitStatus

from .test_cli import RUNS, orchestrate

REAL = "20261206T023809Z-labfull-87e3"  # a real run, with cells/ and intervals.csv


def _copy(tmp_path: Path, name: str = REAL) -> Path:
    return Path(shutil.copytree(RUNS / name, tmp_path / name))


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes: what "nothing is written" compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def _edit(run: Path, line: int, column: str, value: str | None) -> None:
    """Set `column` on the file's `line` (2: the first row) to `value`; None deletes the column."""
    path = run / "results.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    at = rows[0].index(column)
    if value is None:
        for row in rows:
            del row[at]
    else:
        rows[line - 1][at] = value
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


def _duplicate(run: Path, line: int, throughput: str | None = None) -> None:
    path = run / "results.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    copy = list(rows[line - 1])
    if throughput is not None:
        copy[rows[0].index("throughput_gbps")] = throughput
    rows.append(copy)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


# (id, the edit, the line and column the error must name)
HAND_EDITS = [
    ("duplicate", lambda run: _duplicate(run, 2), "line 42, column 'cell_id'"),
    ("duplicate_at_999", lambda run: _duplicate(run, 4, "999"), "line 42, column 'cell_id'"),
    ("negative", lambda run: _edit(run, 6, "throughput_gbps", "-5"), "line 6, column 'throughput_gbps'"),
    ("inf", lambda run: _edit(run, 8, "throughput_gbps", "inf"), "line 8, column 'throughput_gbps'"),
    ("nan", lambda run: _edit(run, 8, "throughput_gbps", "NaN"), "line 8, column 'throughput_gbps'"),
    ("three_copy", lambda run: _edit(run, 3, "mode", "three_copy"), "line 3, column 'mode'"),
    ("great", lambda run: _edit(run, 10, "status", "great"), "line 10, column 'status'"),
    ("no_throughput_column", lambda run: _edit(run, 1, "throughput_gbps", None), "line 1: missing column(s) throughput_gbps"),
    ("not_a_number", lambda run: _edit(run, 5, "duration_s", "ten"), "line 5, column 'duration_s'"),
]


@pytest.mark.parametrize("edit, where", [(e, w) for _, e, w in HAND_EDITS], ids=[i for i, _, _ in HAND_EDITS])
def test_report_refuses_a_hand_edit_naming_file_line_and_column_and_writes_nothing(tmp_path, edit, where):
    run = _copy(tmp_path)
    edit(run)
    before = _tree(run)
    done = orchestrate("report", str(run))
    assert done.returncode == ExitStatus.BAD_ARGUMENT == 2, done.stderr
    assert f"{run / 'results.csv'}, {where}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    assert _tree(run) == before  # no report.md, report.html, summary.csv, plots/ or torn copy


@pytest.mark.parametrize("edit, where", [(e, w) for _, e, w in HAND_EDITS[:3]], ids=[i for i, _, _ in HAND_EDITS[:3]])
def test_compare_refuses_a_hand_edit_and_writes_nothing(tmp_path, edit, where):
    a, b = _copy(tmp_path), _copy(tmp_path / "b")
    edit(b)
    out = tmp_path / "cmp"
    done = orchestrate("compare", str(a), str(b), "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert f"{b / 'results.csv'}, {where}" in done.stderr, done.stderr
    assert not out.exists()


@pytest.mark.parametrize("state, said", [
    ("missing", "no results.csv"),
    ("empty", "empty (no header line, no rows)"),
    ("header_only", "holds no rows, only its header: nothing to report"),
])
def test_report_and_compare_of_a_run_without_rows_exit_2(tmp_path, state, said):
    run = _copy(tmp_path)
    rows = run / "results.csv"
    if state == "missing":
        rows.unlink()
    elif state == "empty":
        rows.write_bytes(b"")
    else:
        rows.write_bytes(rows.read_bytes().split(b"\r\n")[0] + b"\r\n")
    before = _tree(run)
    done = orchestrate("report", str(run))
    assert done.returncode == 2 and said in done.stderr and str(rows) in done.stderr, done.stderr
    done = orchestrate("compare", str(RUNS / REAL), str(run), "--out", str(tmp_path / "cmp"))
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert _tree(run) == before and not (tmp_path / "cmp").exists()


@pytest.mark.parametrize("breakage", ["a_folder", "malformed", "not_utf8"])
def test_an_unreadable_config_yml_is_bad_input(tmp_path, breakage):
    run = _copy(tmp_path)
    config = run / "config.yml"
    config.unlink()
    if breakage == "a_folder":
        config.mkdir()
    elif breakage == "malformed":
        config.write_text("duration: [1s\n")
    else:
        config.write_bytes(b"name: \xff\n")
    before = _tree(run)
    for argv in (["report", str(run)], ["compare", str(RUNS / REAL), str(run), "--out", str(tmp_path / "cmp")]):
        done = orchestrate(*argv)
        assert done.returncode == 2, done.stderr
        assert str(config) in done.stderr and "Traceback" not in done.stderr
    assert _tree(run) == before and not (tmp_path / "cmp").exists()


def test_compare_into_a_folder_that_cannot_be_made_exits_5(tmp_path):
    # A path under a regular file: mkdir fails with ENOTDIR, for root as for anyone.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    for out in (blocker / "cmp", blocker):
        done = orchestrate("compare", str(RUNS / REAL), str(RUNS / REAL), "--out", str(out))
        assert done.returncode == ExitStatus.DISK_FULL == 5, done.stderr
        assert f"{out}: cannot write" in done.stderr
        assert "unexpected error" not in done.stderr and "Traceback" not in done.stderr
    assert blocker.read_text() == "not a folder\n"


def test_report_that_cannot_make_its_plots_folder_exits_5(tmp_path):
    run = _copy(tmp_path, "20261125T231027Z-variants-85df")
    (run / "plots").write_text("in the way\n")
    done = orchestrate("report", str(run))
    assert done.returncode == 5, done.stderr
    assert f"{run / 'plots'}/" in done.stderr and "cannot write: Not a directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (run / "report.md").exists() and not (run / "report.html").exists()
