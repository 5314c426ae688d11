"""A run folder belongs to the one orchestrate working in it, end to end on loopback with real
agents: a concurrent `--resume --retry-failed` of a live run is refused and changes nothing in
its folder, the live run ends with every row; and `--resume` never ends a process group that
processes.jsonl names but that is not this run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.rows import layout
from orchestrator.rows.results import read_results

from ..cli.test_cli import ENV, ORCHESTRATE, orchestrate
from ..conftest import require_tool
from .test_robust_e2e import _kill_server_agent_of, cell_ids, free_port, only_run

pytestmark = pytest.mark.integration

# Long enough to wait for an event, never a measure of speed.
PATIENCE = 120.0


def loopback_files(tmp_path: Path, threads, duration: str) -> tuple[Path, Path]:
    require_tool("cc")
    config = tmp_path / "experiment.yml"
    config.write_text(yaml.safe_dump({
        "name": "live", "matrix": {"threads": list(threads)}, "mode": "one_copy", "message_size": "16KiB",
        "duration": duration, "warmup": "0.2s", "interval": "0.25s", "order": "listed", "port": free_port(),
        "perf": {"enabled": False},
    }))
    inventory = tmp_path / "inventory.yml"
    work = str(tmp_path / "work")
    inventory.write_text(yaml.safe_dump({"server": {"host": "local", "workdir": work},
                                         "client": {"host": "local", "workdir": work}}))
    return config, inventory


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under `folder`: a file's bytes, size and mtime, a link's target, a folder's mtime."""
    found = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(folder))] = ("link", os.readlink(path))
        elif path.is_dir():
            found[str(path.relative_to(folder))] = ("dir", st.st_mtime_ns)
        else:
            found[str(path.relative_to(folder))] = ("file", path.read_bytes(), st.st_size, st.st_mtime_ns)
    return found


def _wait_for(what: str, check, process: subprocess.Popen):
    """Until check() returns something true, or the process ends first."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        assert process.poll() is None, f"the live run ended before {what}: {process.communicate()}"
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {PATIENCE:g}s")


def _rows(results: Path) -> list[str]:
    runs = [p for p in results.iterdir() if p.is_dir()] if results.is_dir() else []
    path = runs[0] / layout.RESULTS if runs else None
    return path.read_text().splitlines()[1:] if path is not None and path.exists() else []


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_a_resume_of_a_live_run_is_refused_and_changes_nothing_and_the_live_run_keeps_every_row(tmp_path):
    threads = (1, 2, 3, 4)
    config, inventory = loopback_files(tmp_path, threads, duration="1s")
    results = tmp_path / "results"
    killer = _kill_server_agent_of(tmp_path / "work", threads=1)  # the first cell fails: a row to retry
    live = subprocess.Popen([*ORCHESTRATE, "run", str(config), "--inventory", str(inventory), "--results", str(results),
                             "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        _wait_for("failed row", lambda: any(",failed," in row for row in _rows(results)), live)
        killer.join()
        run_dir = only_run(results)
        # Paused, the live run writes nothing: what changes in the folder from here is the refused run's doing.
        os.kill(live.pid, signal.SIGSTOP)
        try:
            _wait_for("stopped live run", lambda: _stopped(live.pid), live)
            before = snapshot(run_dir)
            assert len(_rows(results)) < len(threads)  # still going: cells left to run
            started = time.monotonic()
            refused = orchestrate("run", "--resume", str(run_dir), "--retry-failed", "--no-report", timeout=PATIENCE)
            took = time.monotonic() - started
            after = snapshot(run_dir)
        finally:
            os.kill(live.pid, signal.SIGCONT)
        print(f"refused in {took:.2f}s")  # a figure for the record, never a pass/fail target
        said = " ".join(refused.stderr.split())
        assert refused.returncode == 2, refused.stderr
        assert f"{run_dir} is in use by another orchestrate (pid {live.pid} on" in said, said
        assert "Nothing in the folder was changed and no host was contacted" in said and "Traceback" not in said
        assert after == before  # not run.log, not status.json, not results.csv, no cell set aside
        out, err = live.communicate(timeout=PATIENCE)
    finally:
        if live.poll() is None:
            live.kill()
            live.communicate()
    # The live run ends by its own outcome (the failed cell: 1), with every row it measured.
    assert live.returncode == 1, err
    frame = read_results(run_dir / layout.RESULTS)
    assert sorted(frame["cell_id"]) == cell_ids(threads)
    assert dict(zip(frame["cell_id"], frame["status"]))["stream-one_copy-16384B-1t-r1"] == "failed"
    assert not list((run_dir / "cells").glob("*.failed-*"))
    assert json.loads((run_dir / layout.STATUS).read_text())["state"] == "finished"

    # Once it has ended, the folder is free: --retry-failed measures the failed cell again.
    retried = orchestrate("run", "--resume", str(run_dir), "--retry-failed", "--no-report", timeout=PATIENCE)
    assert retried.returncode == 0, retried.stderr
    assert (run_dir / "cells" / "stream-one_copy-16384B-1t-r1.failed-1").is_dir()
    assert sorted(read_results(run_dir / layout.RESULTS)["cell_id"]) == cell_ids(threads)


def test_resume_leaves_a_foreign_process_group_named_in_processes_jsonl_running_and_says_so(tmp_path):
    config, inventory = loopback_files(tmp_path, (1,), duration="0.6s")
    results = tmp_path / "results"
    done = orchestrate("run", str(config), "--inventory", str(inventory), "--results", str(results), "--no-report",
                       timeout=PATIENCE)
    assert done.returncode == 0, done.stderr
    run_dir = only_run(results)
    record = run_dir / layout.PROCESSES
    assert record.exists()
    foreign = subprocess.Popen(["sleep", "300"], cwd="/tmp", start_new_session=True)
    try:
        cell = "stream-one_copy-16384B-1t-r1"
        with open(record, "a") as file:
            file.write(json.dumps({"role": "server", "host": "local", "pgid": foreign.pid, "cwd": "/tmp", "cell": cell}) + "\n")
            file.write(json.dumps({"role": "client", "host": "local", "pgid": 1, "cwd": "/tmp", "cell": cell}) + "\n")
            file.write(json.dumps({"role": "[/x]", "host": "local", "pgid": 7, "cwd": "/tmp", "cell": cell}) + "\n")
        resumed = orchestrate("run", "--resume", str(run_dir), "--no-report", timeout=PATIENCE)
        assert resumed.returncode == 0, resumed.stderr
        assert foreign.poll() is None  # still running
        said = " ".join(resumed.stderr.split())
        assert (f"process group {foreign.pid} named in {record} left running: its recorded folder /tmp is not "
                f"inside this run's own folder there (pid {foreign.pid})") in said, said
        assert "pgid 1 is not a process group id" in said and "skipped, nothing is ended on its word" in said
        assert "role '[/x]' is neither server nor client" in said  # quoted as it is, never read as markup
    finally:
        foreign.kill()
        foreign.wait()
