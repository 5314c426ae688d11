"""Ending what a run left running: only the process groups it recorded, and only while they are
still its own (a recorded group id may have been reused by an unrelated process)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from orchestrator.remote.hosts import LocalHost
from orchestrator.experiment.inventory import HostSpec
from orchestrator.run.leftovers import (GroupRecord, Member, Started, classify, end_leftovers, inside, own_roots,
                                        parse_scan, parse_started, run_folders)


def started(pgid: int, cwd: str, role: str = "server") -> Started:
    return Started(role, "local", pgid, cwd, "stream-one_copy-1024B-1t-r1")


ROOTS = [PurePosixPath("/w/runs/R")]


def test_classify_kills_only_groups_still_working_in_their_folder():
    entries = [started(10, "/w/runs/R/a"), started(20, "/w/runs/R/b"), started(30, "/w/runs/R/c")]
    members = [Member(10, 10, "/w/runs/R/a"), Member(11, 10, ""),  # ours: the agent, and perf we may not read
               Member(20, 20, "/home/someone"),                     # group id reused by another process
               Member(99, 40, "/w/runs/R/a")]                       # not recorded: never touched
    resolved = {"/w/runs/R/a": "/w/runs/R/a", "/w/runs/R/b": "/w/runs/R/b"}
    ours, left = classify(entries, resolved, members, ROOTS)
    assert list(ours) == [10] and list(left) == [20]
    assert "none of its processes (pid 20) works in /w/runs/R/b" in left[20]


def test_classify_compares_physical_folders():
    ours, _ = classify([started(10, "~/w/runs/R/a")], {"~/w/runs/R/a": "/home/u/w/runs/R/a"},
                       [Member(10, 10, "/home/u/w/runs/R/a")], [PurePosixPath("/home/u/w/runs/R")])
    assert list(ours) == [10]


@pytest.mark.parametrize("folder, is_inside", [
    ("/w/runs/R/cell", True),
    ("/w/runs/R/cell/deeper", True),
    ("/w/runs/R", False),            # the run's folder itself: no command works there
    ("/w/runs/R-evil/cell", False),  # a prefix of the name is not the folder
    ("/w/runs/Rx", False),
    ("/w/runs/R/../S/cell", False),  # `..` is never compared, even where it would land inside
    ("/w/runs/R/./cell", False),
    ("/w/runs//R/cell", False),
    ("/w/runs/S/cell", False),
    ("/tmp", False),
    ("w/runs/R/cell", False),        # relative
    ("", False),
])
def test_a_group_is_ours_only_inside_the_runs_own_folder(folder, is_inside):
    assert inside(folder, ROOTS) is is_inside
    ours, left = classify([started(10, folder or "/x")], {folder or "/x": folder}, [Member(10, 10, folder)], ROOTS)
    assert (list(ours), list(left)) == (([10], []) if is_inside else ([], [10]))


def test_a_foreign_group_working_where_it_was_recorded_is_left_alone_and_said_why():
    """A line appended for an unrelated `sleep` in /tmp: its member works in the recorded folder,
    but that folder is not this run's."""
    ours, left = classify([started(500, "/tmp")], {"/tmp": "/tmp"}, [Member(500, 500, "/tmp")], ROOTS)
    assert ours == {} and "its recorded folder /tmp is not inside this run's own folder" in left[500]
    # A recorded folder inside the run's that resolves elsewhere on the host (a symlink) is not ours either.
    ours, left = classify([started(500, "/w/runs/R/link")], {"/w/runs/R/link": "/tmp"}, [Member(500, 500, "/tmp")], ROOTS)
    assert ours == {} and "(that is /tmp)" in left[500]


def test_the_runs_own_folder_must_be_the_workdirs_own_not_a_link_elsewhere():
    resolved = {"/w": "/real/w", "/w/runs/R": "/real/w/runs/R", "/w/runs/R.preflight": "/real/w/runs/R.preflight"}
    assert run_folders("/w/", ["R"]) == {"R": "/w/runs/R"}
    assert own_roots("/w", ["R", "R.preflight"], resolved) == [PurePosixPath("/real/w/runs/R"),
                                                               PurePosixPath("/real/w/runs/R.preflight")]
    assert own_roots("/w", ["R"], {**resolved, "/w/runs/R": "/"}) == []          # runs/R -> /
    assert own_roots("/w", ["R"], {**resolved, "/w/runs/R": "/real/other"}) == []
    assert own_roots("/w", ["R"], {"/w/runs/R": "/real/w/runs/R"}) == []         # the workdir did not resolve
    assert own_roots("/w", ["..", "."], {"/w": "/real/w", "/w/runs/..": "/real/w"}) == []


def test_parse_scan_and_a_torn_record_line(tmp_path):
    resolved, members = parse_scan("D\t/a\t/real/a\nD\t/gone\t\nP\t5\t5\t/real/a\nP\tx\t5\t/\n")
    assert resolved == {"/a": "/real/a"} and members == [Member(5, 5, "/real/a")]
    record = GroupRecord(tmp_path)
    record.add(started(7, "/a"))
    with open(record.path, "a") as file:
        file.write('{"role": "server", "pg')  # a crash while writing
    assert record.read() == [started(7, "/a")]
    entries, skipped = record.load()
    assert entries == [started(7, "/a")] and len(skipped) == 1 and "line 2: a line cut off" in skipped[0]


GOOD = {"role": "server", "host": "local", "pgid": 4242, "cwd": "/w/runs/R/c", "cell": "c"}
MALFORMED = [
    b"not json",
    b"[1, 2]",
    b'"a string"',
    b"null",
    json.dumps({**GOOD, "pgid": 1}).encode(),        # kill -- -1: every process of the user
    json.dumps({**GOOD, "pgid": 0}).encode(),        # kill -- -0: the killer's own group
    json.dumps({**GOOD, "pgid": -5}).encode(),
    json.dumps({**GOOD, "pgid": True}).encode(),     # a bool is an int to Python
    json.dumps({**GOOD, "pgid": "4242"}).encode(),
    json.dumps({**GOOD, "pgid": "1; reboot"}).encode(),
    json.dumps({**GOOD, "pgid": 4242.0}).encode(),
    json.dumps({**GOOD, "pgid": 1 << 40}).encode(),
    json.dumps({**GOOD, "cwd": "relative/c"}).encode(),
    json.dumps({**GOOD, "cwd": "/w/runs/R/../../etc"}).encode(),
    json.dumps({**GOOD, "cwd": "/w/runs/R/c\n/tmp"}).encode(),  # a second folder line for the scan
    json.dumps({**GOOD, "cwd": "/w/runs/R/c\t/tmp"}).encode(),
    json.dumps({**GOOD, "cwd": 5}).encode(),
    json.dumps({**GOOD, "role": "both"}).encode(),
    json.dumps({**GOOD, "cell": ""}).encode(),
    json.dumps({**GOOD, "extra": 1}).encode(),
    json.dumps({k: v for k, v in GOOD.items() if k != "cwd"}).encode(),
    b'{"role": "server", "host": "\xff\xfe", "pgid": 4242}',  # not UTF-8
]


def test_malformed_record_lines_are_skipped_and_named_and_the_good_ones_kept(tmp_path):
    record = GroupRecord(tmp_path)
    record.path.write_bytes(b"\n".join([json.dumps(GOOD).encode(), *MALFORMED, b"", json.dumps(GOOD).encode()]) + b"\n")
    entries, skipped = record.load()
    assert entries == [Started(**GOOD)] * 2
    assert len(skipped) == len(MALFORMED), skipped
    assert all("skipped, nothing is ended on its word" in s for s in skipped)
    assert "line 2:" in skipped[0] and f"line {len(MALFORMED) + 1}:" in skipped[-1]
    for line in MALFORMED:
        with pytest.raises((ValueError, TypeError)):
            parse_started(line.decode("utf-8"))


def live_groups() -> set[int]:
    """The process group of every live (not zombie) process, from /proc."""
    groups = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            groups.add(int(fields[2]))
    return groups


def _sleeper(cwd: Path) -> subprocess.Popen:
    """A command in a process group of its own, working in `cwd`, as a cell's command does."""
    cwd.mkdir(parents=True)
    return subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60; wait"], cwd=cwd, start_new_session=True)


def test_end_leftovers_on_this_machine_ends_ours_and_leaves_every_other_group_running(tmp_path):
    work = tmp_path / "work"
    ours = _sleeper(work / "runs" / "R" / "cell")
    reused = _sleeper(tmp_path / "elsewhere")
    evil = _sleeper(work / "runs" / "R-evil" / "cell")
    # An unrelated command in /tmp, named by a line appended to a copied or shared record.
    foreign = subprocess.Popen(["sleep", "60"], cwd="/tmp", start_new_session=True)
    try:
        record = GroupRecord(tmp_path)
        record.add(started(ours.pid, str(work / "runs" / "R" / "cell")))
        # As if `reused` had been given a group id this run once recorded for a command in its folder.
        record.add(started(reused.pid, str(work / "runs" / "R" / "old-cell"), role="client"))
        (work / "runs" / "R" / "old-cell").mkdir()
        record.add(started(evil.pid, str(work / "runs" / "R-evil" / "cell")), started(foreign.pid, "/tmp"))
        spec = HostSpec(host="local", workdir=str(work))
        hosts = {"server": LocalHost("server", spec), "client": LocalHost("client", spec)}
        notes = end_leftovers(hosts, record, 30, ("R", "R.preflight"))
        assert ours.wait(5) is not None
        # end_leftovers returns once no member of our group is left: the background sleep included.
        members = live_groups()
        assert ours.pid not in members
        assert all(p.poll() is None and p.pid in members for p in (reused, evil, foreign))  # not ours: alive
        assert any(f"ended process group {ours.pid}" in n for n in notes)
        for process in (reused, evil, foreign):
            assert sum(f"process group {process.pid} named in {record.path} left running" in n for n in notes) == 1, notes
        assert any(f"process group {foreign.pid}" in n and "its recorded folder /tmp is not inside" in n for n in notes)
    finally:
        for process in (ours, reused, evil, foreign):
            try:
                os.killpg(process.pid, 9)
            except ProcessLookupError:
                pass
            process.wait()
