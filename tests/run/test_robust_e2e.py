"""Robustness end to end on this machine (real agents on loopback, real perf): a torn row, a full
disk, a failed cell measured again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.rows.results import read_results

from ..conftest import require_root, require_tool
from ..cli.test_cli import orchestrate

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_run_files(tmp_path: Path, threads=(1, 2, 3), duration="0.5s") -> tuple[Path, Path]:
    require_tool("cc")
    require_tool("perf")
    config = tmp_path / "experiment.yml"
    config.write_text(yaml.safe_dump({
        "name": "robust", "matrix": {"threads": list(threads)}, "mode": "one_copy", "message_size": "16KiB",
        "duration": duration, "warmup": "0.2s", "interval": "0.25s", "order": "listed", "port": free_port(),
        "perf": {"events": ["task-clock", "context-switches"]},
    }))
    inventory = tmp_path / "inventory.yml"
    work = str(tmp_path / "work")
    inventory.write_text(yaml.safe_dump({"server": {"host": "local", "workdir": work},
                                         "client": {"host": "local", "workdir": work}}))
    return config, inventory


def only_run(results: Path) -> Path:
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    return run_dir


def cell_ids(threads) -> list[str]:
    return sorted(f"stream-one_copy-16384B-{t}t-r1" for t in threads)


def test_a_torn_last_row_is_measured_again_by_resume(tmp_path):
    config, inventory = local_run_files(tmp_path)
    results = tmp_path / "results"
    done = orchestrate("run", str(config), "--inventory", str(inventory), "--results", str(results), "--no-report",
                       timeout=120)
    assert done.returncode == 0, done.stderr
    # The start line states the dry run's estimate: setup 3.4 s + 3 × (0.2 + 0.5 + 0.1 s), no report.
    assert ": 3 cells, about 6 s, seed" in done.stderr
    run_dir = only_run(results)
    csv = run_dir / "results.csv"
    whole = csv.read_bytes()
    csv.write_bytes(whole[:-25])  # the last row cut as a full disk or a crash leaves it

    resumed = orchestrate("run", "--resume", str(run_dir), "--no-report", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "torn row" in resumed.stderr
    frame = read_results(csv)
    assert sorted(frame["cell_id"]) == cell_ids((1, 2, 3))  # each cell exactly once
    assert (frame["status"] == "ok").all(), frame[["cell_id", "error"]]
    assert (run_dir / "results.csv.torn-1").read_bytes() == whole[whole.rstrip(b"\r\n").rfind(b"\n") + 1:-25]
    assert (run_dir / "cells" / "stream-one_copy-16384B-3t-r1.interrupted-1").is_dir()
    assert "1 cells run, 2 already done" in " ".join(resumed.stderr.split())

    report = orchestrate("report", str(run_dir), timeout=120)
    assert report.returncode == 0, report.stderr


def test_report_sets_a_torn_row_aside_too(tmp_path):
    config, inventory = local_run_files(tmp_path, threads=(1, 2))
    results = tmp_path / "results"
    assert orchestrate("run", str(config), "--inventory", str(inventory), "--results", str(results), "--no-report",
                       timeout=120).returncode == 0
    run_dir = only_run(results)
    csv = run_dir / "results.csv"
    csv.write_bytes(csv.read_bytes()[:-10])
    done = orchestrate("report", str(run_dir), timeout=120)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "results.csv.torn-1").exists()
    assert len(read_results(csv)) == 1


def _fill(folder: Path) -> None:
    """Take every free byte of the file system under `folder`."""
    try:
        fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    except OSError:
        return  # already full
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError:
                    break
    finally:
        os.close(fd)


def test_a_full_disk_stops_the_run_cleanly_and_resume_elsewhere_finishes_it(tmp_path):
    require_root()
    config, inventory = local_run_files(tmp_path, threads=(1, 2, 3, 4), duration="1s")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        results = small / "results"

        def fill_after_first_row() -> None:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                if results.exists() and any((p / "results.csv").exists() for p in results.iterdir()):
                    _fill(small)
                    return
                time.sleep(0.02)

        filler = threading.Thread(target=fill_after_first_row, daemon=True)
        filler.start()
        done = orchestrate("run", str(config), "--inventory", str(inventory), "--results", str(results),
                           "--no-report", timeout=120)
        filler.join()
        assert done.returncode == 5, done.stderr
        message = " ".join(done.stderr.split())
        assert "No space left on device" in message and "MB free" in message
        assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
        run_dir = only_run(results)
        assert f"orchestrate run --resume {run_dir}" in message.replace(" ", " ")
        frame = read_results(run_dir / "results.csv")
        assert 1 <= len(frame) < 4
        # (an agent's stderr is empty when it had nothing to say)
        empty = [p for p in run_dir.rglob("*") if p.is_file() and p.stat().st_size == 0 and p.suffix != ".stderr"]
        assert not empty, empty
        assert not [p for p in run_dir.rglob(".*") if p.name.startswith((".incoming-", ".results", ".cell.json"))]
        roomy = tmp_path / "roomy" / run_dir.name
        shutil.copytree(run_dir, roomy)
    finally:
        subprocess.run(["umount", str(small)], check=False)
    resumed = orchestrate("run", "--resume", str(roomy), "--no-report", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    frame = read_results(roomy / "results.csv")
    assert sorted(frame["cell_id"]) == cell_ids((1, 2, 3, 4))
    assert (frame["status"] == "ok").all(), frame[["cell_id", "error"]]


def _kill_server_agent_of(workdir: Path, threads: int) -> threading.Thread:
    """SIGKILL the server agent of the cell with `threads` connections, mid-window."""
    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
                except OSError:
                    continue
                if (argv[0].startswith(str(workdir)) and argv[1:2] == ["server"] and "--threads" in argv
                        and argv[argv.index("--threads") + 1] == str(threads) and "16384" in argv):
                    time.sleep(0.5)
                    os.kill(int(pid), signal.SIGKILL)
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return thread


def test_failed_cells_are_not_final(tmp_path):
    config, inventory = local_run_files(tmp_path, threads=(1, 2), duration="1.5s")
    results = tmp_path / "results"
    killer = _kill_server_agent_of(tmp_path / "work", threads=1)
    done = orchestrate("run", str(config), "--inventory", str(inventory), "--results", str(results), "--no-report",
                       timeout=120)
    killer.join()
    assert done.returncode == 1, done.stderr
    run_dir = only_run(results)
    frame = read_results(run_dir / "results.csv")
    assert dict(zip(frame["cell_id"], frame["status"])) == {"stream-one_copy-16384B-1t-r1": "failed",
                                                             "stream-one_copy-16384B-2t-r1": "ok"}

    again = orchestrate("run", "--resume", str(run_dir), "--no-report", timeout=120)
    assert again.returncode == 1, again.stderr
    message = " ".join(again.stderr.split())
    assert "1 failed and 0 degraded of 2 cells" in message and "--retry-failed" in message

    retried = orchestrate("run", "--resume", str(run_dir), "--retry-failed", "--no-report", timeout=120)
    assert retried.returncode == 0, retried.stderr
    frame = read_results(run_dir / "results.csv")
    assert sorted(frame["cell_id"]) == cell_ids((1, 2)) and (frame["status"] == "ok").all()
    kept = run_dir / "cells" / "stream-one_copy-16384B-1t-r1.failed-1"
    assert "Killed" in json.loads((kept / "cell.json").read_text())["error"]  # the failed attempt, kept
    assert (run_dir / "cells" / "stream-one_copy-16384B-1t-r1" / "server.json").stat().st_size > 0


def test_retry_failed_needs_resume(tmp_path):
    done = orchestrate("run", "x.yml", "--retry-failed", cwd=tmp_path)
    assert done.returncode == 2 and "--retry-failed goes with --resume" in done.stderr


def test_check_states_the_plan_time(tmp_path):
    config, inventory = local_run_files(tmp_path, threads=(1, 2, 3), duration="2s")
    done = orchestrate("check", str(config), "--inventory", str(inventory), timeout=120)
    assert done.returncode == 0, done.stderr
    # As `run` would say it (orchestrator/experiment/estimate.py): setup 3.4 s, 3 cells of 0.2 s warm-up + 2 s +
    # 0.1 s overhead each, then the report's 5 s.
    assert "plan: 3 cells, about 15 s" in " ".join(done.stderr.split())
