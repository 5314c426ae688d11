"""`orchestrate runs`: the run folders of a results folder, on real recorded runs; what is not a run
is skipped and counted, a file that does not read names itself in its run's entry and hides no
other run, and the filters find "the run on the old hardware"."""

from __future__ import annotations

import datetime as dt
import io
import os
import json
import shutil
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.report import runindex
from orchestrator.rows import layout, origin

from ..conftest import ROOT

RUNS = ROOT / "tests" / "fixtures" / "runs"
LAB = "20261206T023809Z-labfull-87e3"  # namespace lab, veth, kernel 6.18.44-fc-v1252
VM = "20261125T222925Z-vmcheck-598f"  # loopback, kernel 6.18.44-fc-v669
STALL = "20261127T014622Z-stall-232a"  # loopback, kernel 6.18.44-fc-v595, 3 degraded rows
PAIRS = "pairs3"  # three pairs with MTUs 1500, 9000, 65536
PAIRS_TIME = dt.datetime(2026, 12, 6, 5, 0, tzinfo=dt.timezone.utc)


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def results(tmp_path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    for name in (LAB, VM, STALL, PAIRS):
        shutil.copytree(RUNS / name, folder / name)
    # pairs3's folder name has no time: its date is its plan.json's, set here (a checkout's is any).
    os.utime(folder / PAIRS / "plan.json", (PAIRS_TIME.timestamp(), PAIRS_TIME.timestamp()))
    (folder / "compare").mkdir()  # what `orchestrate compare` leaves beside the runs
    (folder / "notes.md").write_text("a file, not a folder\n")
    return folder


def test_each_run_is_an_entry_with_its_hosts_kernel_nic_and_cells(results):
    found = runindex.index(results)
    assert [r.run_id for r in found.runs] == [VM, STALL, LAB, PAIRS]  # oldest first
    assert found.skipped == ["compare"]
    lab = found.runs[2]
    assert lab.name == "labfull" and lab.pairs == ["default"] and lab.date.isoformat() == "2026-12-06T02:38:09+00:00"
    assert lab.hosts == {"default": {"server": "root@198.19.3.2, data 198.18.0.1", "client": "root@198.19.4.2, data 198.18.0.2"}}
    assert lab.kernels == ["6.18.44-fc-v1252"] and lab.nics == ["data0 veth 10G"] and lab.mtus == [1500]
    assert lab.cells == {"ok": 40, "failed": 0, "degraded": 0} and lab.reproduces is None and not lab.problems
    assert found.runs[1].cells == {"ok": 5, "failed": 0, "degraded": 3}
    pairs = found.runs[3]
    assert pairs.pairs == ["gen1", "gen2", "gen3"] and sorted(pairs.mtus) == [1500, 9000, 65536]


def test_a_file_that_does_not_read_is_named_and_hides_no_other_run(results):
    (results / LAB / "config.yml").write_text("name: [unclosed\n")
    (results / VM / "hosts" / "server.json").write_text("{not json")
    (results / STALL / "reproduces.json").write_text('{"format": 1}')
    found = runindex.index(results)
    assert len(found.runs) == 4
    by_id = {r.run_id: r for r in found.runs}
    assert by_id[LAB].name is None and str(results / LAB / "config.yml") in by_id[LAB].problems[0]
    assert by_id[LAB].cells["ok"] == 40  # the rest of the entry is still read
    assert str(results / VM / "hosts" / "server.json") in by_id[VM].problems[0]
    assert by_id[VM].kernels == ["6.18.44-fc-v669"]  # from the client's facts
    assert "reproduces.json" in by_id[STALL].problems[0]
    code, out, err = cli("runs", str(results))
    assert code == 0, err
    assert "Traceback" not in out + err
    assert f"[!] {LAB}: {results / LAB / 'config.yml'}" in out
    assert "4 runs; 1 folders that are not runs skipped (compare)" in err


def test_filters_find_the_run_on_the_old_hardware(results):
    origin.write(results / LAB, origin.Origin(VM, str(results / VM), {"default": "default"}))

    def ids(*argv: str) -> list[str]:
        code, out, err = cli("runs", str(results), "--json", *argv)
        assert code == 0, err
        return [r["run_id"] for r in json.loads(out)["runs"]]

    assert ids("--host", "198.19.3.2") == [LAB]
    assert ids("--host", "vm-gen2") == [PAIRS]  # a host's own name, from its facts
    assert ids("--kernel", "6.18.44-fc-v669") == [VM, PAIRS]
    assert ids("--kernel", "6.18.44-fc-v12") == []  # a number is matched whole: v12 is not v1252
    assert ids("--name", "STALL") == [STALL]
    assert ids("--since", "2026-11-26", "--until", "2026-12-06T03:00") == [STALL, LAB]
    assert ids("--until", "2026-11-25") == [VM]  # a date runs to its end
    assert ids("--reproduces") == [LAB]
    assert ids("--reproduces", "vmcheck") == [LAB]
    assert ids("--reproduces", LAB) == []
    code, out, _ = cli("runs", str(results), "--json", "--host", "198.19.3.2")
    doc = json.loads(out)
    assert doc["filtered_out"] == 3 and doc["skipped"] == ["compare"]
    assert doc["runs"][0]["reproduces"] == VM and doc["runs"][0]["cells"] == {"ok": 40, "failed": 0, "degraded": 0}


def test_bad_arguments_exit_2(tmp_path):
    code, _, err = cli("runs", str(tmp_path / "missing"))
    assert code == 2 and "no such folder of runs" in err
    code, _, err = cli("runs", str(tmp_path), "--since", "yesterday")
    assert code == 2 and "--since/--until" in err and "'yesterday'" in err


def test_a_shaped_link_shows_its_qdisc_and_rate_beside_the_nic(tmp_path):
    """The recorded run over a lab shaped by tbf to 1000 Mbit/s: its NIC column says so."""
    shutil.copytree(RUNS / "20261206T052758Z-quick-7003", tmp_path / "20261206T052758Z-quick-7003")
    (shaped,) = runindex.index(tmp_path).runs
    assert shaped.nics == ["data0 veth 10G tbf 1G"] and shaped.mtus == [9000]


def test_a_run_said_running_is_running_only_while_its_lock_is_held(results):
    """status.json says running: `runs` shows it running while an orchestrate holds the folder's
    lock, and once none does (killed, or copied mid-run), as ended mid-run with how to finish it."""
    from orchestrator.rows import runstatus
    from orchestrator.run.runner import RunLock

    runstatus.write(results / LAB, runstatus.RunStatus("running", runstatus.Counts(planned=40, ok=12)))
    code, out, err = cli("runs", str(results), "--json")
    assert code == 0, err
    (lab,) = [r for r in json.loads(out)["runs"] if r["run_id"] == LAB]
    assert lab["state"] == "ended mid-run" and lab["cells"]["ok"] == 12
    assert "no orchestrate holds its lock" in lab["problems"][0]
    assert f"orchestrate run --resume {results / LAB}" in lab["problems"][0]
    code, out, _ = cli("runs", str(results))
    assert "(ended mid-run)" in out and "12/0/0" in out
    lock = RunLock(results / LAB).take()
    try:
        code, out, _ = cli("runs", str(results), "--json")
        (lab,) = [r for r in json.loads(out)["runs"] if r["run_id"] == LAB]
        assert lab["state"] == "running" and not lab["problems"]
    finally:
        lock.release()
    # Last taken on another machine: its lock may be held there, unseen here; said, not decided.
    (results / LAB / layout.RUN_LOCK).write_text("pid=4242 controller=lab-laptop since=2026-12-06T05:00:00Z\n")
    code, out, _ = cli("runs", str(results), "--json")
    (lab,) = [r for r in json.loads(out)["runs"] if r["run_id"] == LAB]
    assert lab["state"] == "running" and "last taken on lab-laptop" in lab["problems"][0]
    # A lock that cannot be looked at is that run's problem, not the listing's.
    (results / LAB / layout.RUN_LOCK).unlink()
    (results / LAB / layout.RUN_LOCK).mkdir()
    code, out, err = cli("runs", str(results), "--json")
    assert code == 0, err
    (lab,) = [r for r in json.loads(out)["runs"] if r["run_id"] == LAB]
    assert lab["state"] == "running" and "cannot tell whether it still runs" in lab["problems"][0]
