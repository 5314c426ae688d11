"""Ending what a run left running: only the process groups it recorded, and only while they are
still its own (a recorded group id may have been reused by an unrelated process)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from orchestrator.remote.hosts import LocalHost
from orchestrator.experiment.inventory import HostSpec
from orchestrator.run.leftovers import GroupRecord, Member, Started, classify, end_leftovers, parse_scan


def started(pgid: int, cwd: str, role: str = "server") -> Started:
    return Started(role, "local", pgid, cwd, "stream-one_copy-1024B-1t-r1")


def test_classify_kills_only_groups_still_working_in_their_folder():
    entries = [started(10, "/w/runs/R/a"), started(20, "/w/runs/R/b"), started(30, "/w/runs/R/c")]
    members = [Member(10, 10, "/w/runs/R/a"), Member(11, 10, ""),  # ours: the agent, and perf we may not read
               Member(20, 20, "/home/someone"),                     # group id reused by another process
               Member(99, 40, "/w/runs/R/a")]                       # not recorded: never touched
    ours, foreign = classify(entries, {"/w/runs/R/a": "/w/runs/R/a"}, members)
    assert list(ours) == [10] and list(foreign) == [20]


def test_classify_compares_physical_folders():
    ours, _ = classify([started(10, "~/w/runs/R/a")], {"~/w/runs/R/a": "/home/u/~/w/runs/R/a"},
                       [Member(10, 10, "/home/u/~/w/runs/R/a")])
    assert list(ours) == [10]


def test_parse_scan_and_a_torn_record_line(tmp_path):
    resolved, members = parse_scan("D\t/a\t/real/a\nD\t/gone\t\nP\t5\t5\t/real/a\nP\tx\t5\t/\n")
    assert resolved == {"/a": "/real/a", "/gone": "/gone"} and members == [Member(5, 5, "/real/a")]
    record = GroupRecord(tmp_path)
    record.add(started(7, "/a"))
    with open(record.path, "a") as file:
        file.write('{"role": "server", "pg')  # a crash while writing
    assert record.read() == [started(7, "/a")]


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


def test_end_leftovers_on_this_machine_ends_ours_and_leaves_a_reused_group_alone(tmp_path):
    ours = _sleeper(tmp_path / "runs" / "R" / "cell")
    other = _sleeper(tmp_path / "elsewhere")
    try:
        record = GroupRecord(tmp_path)
        record.add(started(ours.pid, str(tmp_path / "runs" / "R" / "cell")))
        # As if `other` had been given a group id this run once recorded for a command in its folder.
        record.add(started(other.pid, str(tmp_path / "runs" / "R" / "old-cell"), role="client"))
        (tmp_path / "runs" / "R" / "old-cell").mkdir()
        host = LocalHost("server", HostSpec(host="local"))
        client = LocalHost("client", HostSpec(host="local"))
        notes = end_leftovers({"server": host, "client": client}, record, 30)
        assert ours.wait(5) is not None
        assert other.poll() is None  # not ours: alive
        # Every member of our group is gone, the background sleep included.
        time.sleep(0.2)
        members = live_groups()
        assert ours.pid not in members and other.pid in members
        assert any(f"ended process group {ours.pid}" in n for n in notes)
        assert any(f"process group {other.pid}" in n and "left alone" in n for n in notes)
    finally:
        for process in (ours, other):
            try:
                os.killpg(process.pid, 9)
            except ProcessLookupError:
                pass
            process.wait()
