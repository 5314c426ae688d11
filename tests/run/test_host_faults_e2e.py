"""A host's faults named for what they are, end to end on this machine (real agents on loopback,
real perf, real sh): a workdir on a full filesystem (a small tmpfs mounted as root), in `check`
and in a cell that fills it; and a perf stat killed in the middle of a cell."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import yaml

from orchestrator.rows.results import read_results

from ..cli.test_cli import orchestrate
from ..conftest import require_root
from .test_robust_e2e import _fill, local_run_files, only_run

pytestmark = pytest.mark.integration


def _argv(pid: str) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return [""]  # gone, or a kernel thread


def _processes(match: Callable[[str, list[str]], bool]) -> list[int]:
    return [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and match(pid, _argv(pid))]


def _agent(workdir: Path, role: str) -> Callable[[str, list[str]], bool]:
    """The role's agent in the run's cell (16 KiB messages), not in its data-path probe (1 KiB)."""
    return lambda pid, argv: (argv[0].startswith(f"{workdir}/agents/") and argv[1:2] == [role]
                              and "--size" in argv and argv[argv.index("--size") + 1] == "16384")


def _when(match: Callable[[str, list[str]], bool], then: Callable[[], None], limit: float = 90) -> threading.Thread:
    """Run `then` as soon as a process that `match`es exists (polled in /proc; `limit` only
    bounds a test whose process never comes)."""
    def watch() -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if _processes(match):
                then()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def small_disk(tmp_path: Path):
    """A tmpfs of `size` mounted under tmp_path, unmounted after the test."""
    require_root()
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"small-{len(mounted)}"
        folder.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _with_workdir(inventory: Path, work: Path) -> None:
    data = yaml.safe_load(inventory.read_text())
    for role in ("server", "client"):
        data[role]["workdir"] = str(work)
    inventory.write_text(yaml.safe_dump(data))


def test_check_fails_on_a_full_workdir_naming_the_host_the_workdir_and_the_free_room(tmp_path, small_disk):
    config, inventory = local_run_files(tmp_path, threads=(1,))
    work = small_disk("256k") / "work"
    _with_workdir(inventory, work)
    done = orchestrate("check", str(config), "--inventory", str(inventory), timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    said = " ".join((done.stdout + done.stderr).split())
    for role in ("server", "client"):
        found = re.search(rf"no room left on {role} \(local\) in {re.escape(str(work))} \((\d+) KiB free\)", said)
        assert found, said
        assert int(found.group(1)) <= 256
    assert "at least" in said and "KiB are needed" in said


def test_a_roomy_workdir_passes_check_with_its_free_room_said(tmp_path, small_disk):
    config, inventory = local_run_files(tmp_path, threads=(1,))
    work = small_disk("16m") / "work"
    _with_workdir(inventory, work)
    done = orchestrate("check", str(config), "--inventory", str(inventory), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    said = " ".join((done.stdout + done.stderr).split())
    assert re.search(rf"{re.escape(str(work))} \(1[0-9]{{4}} KiB free\)", said), said
    assert "no room left" not in done.stdout + done.stderr


def test_a_cell_that_fills_the_workdir_names_it(tmp_path, small_disk):
    config, inventory = local_run_files(tmp_path, threads=(1,), duration="1s")
    disk = small_disk("16m")
    work = disk / "work"
    _with_workdir(inventory, work)
    results = tmp_path / "results"
    # Once the cell's server agent runs, every free byte of its disk goes.
    filler = _when(_agent(work, "server"), lambda: _fill(disk))
    done = orchestrate("run", str(config), "--inventory", str(inventory), "--results", str(results), "--no-report",
                       timeout=120)
    filler.join()
    assert done.returncode == 1, done.stderr
    (row,) = read_results(only_run(results) / "results.csv").to_dict("records")
    assert row["status"] == "failed"
    assert re.match(rf"no room left on server \(local\) in {re.escape(str(work))} \(0 KiB free\)", row["error"]), row["error"]
    # Then what the run saw (the agent could not write its JSON; its stderr, on the same disk, is empty).
    assert "agent exited with status 1" in row["error"]
    assert "no room left on server (local)" in " ".join(done.stderr.split())


def test_a_killed_perf_is_named_as_perf_not_as_the_agent(tmp_path):
    config, inventory = local_run_files(tmp_path, threads=(1,), duration="2s")
    work = tmp_path / "work"
    results = tmp_path / "results"
    killed: list[int] = []

    def server_perf(pid: str, argv: list[str]) -> bool:
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return False
        return (len(argv) > 1 and Path(argv[0]).name == "perf" and argv[1:2] == ["stat"] and "server.perf.csv" in argv
                and cwd.startswith(f"{work}/runs/"))

    def kill_server_perf() -> None:
        for pid in _processes(server_perf):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    # The client agent starts only once the server agent said READY: the window is under way.
    killer = _when(_agent(work, "client"), kill_server_perf)
    done = orchestrate("run", str(config), "--inventory", str(inventory), "--results", str(results), "--no-report",
                       timeout=120)
    killer.join()
    assert len(killed) == 1
    assert done.returncode == 1, done.stderr
    (row,) = read_results(only_run(results) / "results.csv").to_dict("records")
    assert row["status"] == "failed"
    assert row["error"].startswith("server perf was killed by signal 9; the server agent's figures were lost with it"), row["error"]
    assert "server agent was killed" not in row["error"]
