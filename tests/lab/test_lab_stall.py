"""A short outage, wherever it falls in the window, makes its row `degraded` with the gap's length:
the data link down for 1 s and the sending agent stopped (SIGSTOP) for 1 s, each at offsets
spread across an interval boundary, and a 0.5 s stop in a quick.yml-shaped cell (a 1 s window
of one 1 s interval). One lab, two short runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from orchestrator import lab
from orchestrator.rows.results import read_results

from ..cli.test_cli import orchestrate
from ..labs import namespace_processes, running_lab

pytestmark = [pytest.mark.integration, pytest.mark.lab]

PREFIX = os.environ.get("ORCH_TEST_LAB_PREFIX", "orcht") + "st"
SERVER_NS, CLIENT_NS = f"{PREFIX}-server", f"{PREFIX}-client"
GAP = re.compile(r"stalled (\d+\.\d) s \((?:no bytes|\d+% of the usual rate) from (\d+\.\d+) s to (\d+\.\d+) s\)")
WARMUP = 0.5


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory) -> Path:
    with running_lab(tmp_path_factory.mktemp("lab-stall"), PREFIX) as (inventory, _):
        yield inventory


def experiment(tmp_path: Path, **overrides) -> Path:
    data = {"name": "lab-stall", "matrix": {"threads": [1]}, "mode": "one_copy", "message_size": "16KiB",
            "warmup": f"{WARMUP}s", "order": "listed", "perf": {"enabled": False}}
    data.update(overrides)
    path = tmp_path / "experiment.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def connected_agent(role: str, namespace: str, seen: set[int], deadline: float) -> int | None:
    """The pid of a cell's `role` agent not in `seen` once its data connection is established (its
    window starts a warm-up after that), or None at the deadline. The preflight's 1 KiB probe is
    left alone."""
    while time.monotonic() < deadline:
        for _, pid, argv in namespace_processes([namespace]):
            if (pid not in seen and argv[0].endswith("/bin/agent") and argv[1] == role
                    and argv[argv.index("--size") + 1] == "16384"):
                listing = subprocess.run(["ip", "netns", "exec", namespace, "ss", "-Htnp", "state", "established"],
                                         capture_output=True, text=True).stdout
                if f"pid={pid}," in listing:
                    return pid
        time.sleep(0.01)
    return None


def faults_in_turn(faults: list[Callable[[int], None] | None], errors: list[BaseException]) -> Callable[[], None]:
    """A thread body: for each cell in turn (its server agent, the sender, connected), fault i on
    that agent's pid (None: leave it alone), timed from the connection."""
    def body() -> None:
        seen: set[int] = set()
        try:
            for fault in faults:
                pid = connected_agent("server", SERVER_NS, seen, time.monotonic() + 90)
                if pid is None:
                    raise AssertionError("no cell's server agent connected")
                seen.add(pid)
                if fault is not None:
                    fault(pid)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
    return body


def link_down(at: float, seconds: float) -> Callable[[int], None]:
    def fault(_sender: int) -> None:
        time.sleep(WARMUP + at)
        subprocess.run(["ip", "-n", CLIENT_NS, "link", "set", lab.DATA_IF, "down"], check=True)
        try:
            time.sleep(seconds)
        finally:
            subprocess.run(["ip", "-n", CLIENT_NS, "link", "set", lab.DATA_IF, "up"], check=True)
    return fault


def sender_stopped(at: float, seconds: float) -> Callable[[int], None]:
    def fault(sender: int) -> None:
        time.sleep(WARMUP + at)
        os.kill(sender, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(sender, signal.SIGCONT)
    return fault


def run_with(faults: list[Callable[[int], None] | None], config: Path, inventory: Path, results: Path):
    errors: list[BaseException] = []
    thread = threading.Thread(target=faults_in_turn(faults, errors), daemon=True)
    thread.start()
    try:
        done = orchestrate("run", str(config), "--inventory", str(inventory), "--results", str(results),
                           "--no-report", timeout=240)
    finally:
        thread.join(timeout=120)
        subprocess.run(["ip", "-n", CLIENT_NS, "link", "set", lab.DATA_IF, "up"], check=False)
    assert not errors, errors
    (run_dir,) = results.iterdir()
    return done, run_dir, read_results(run_dir / "results.csv")


def gaps_of(error: str) -> list[tuple[float, float, float]]:
    return [(float(a), float(b), float(c)) for a, b, c in GAP.findall(error)]


def test_a_1s_outage_is_degraded_wherever_it_falls(lab_inventory, tmp_path):
    """3 s windows of 1 s intervals: the link down for 1 s from 0.3, 0.6 and 0.9 s into the window
    (the boundary at 1 s falls 70%, 40% and 10% into it), then the sender stopped for 1 s from
    0.45, 0.75 and 1.05 s. Every row is degraded, and names a gap of about a second."""
    at = [0.3, 0.6, 0.9]
    faults = [link_down(a, 1.0) for a in at] + [sender_stopped(a + 0.15, 1.0) for a in at]
    config = experiment(tmp_path, duration="3s", interval="1s", repetitions=len(faults))
    done, run_dir, frame = run_with(faults, config, lab_inventory, tmp_path / "results")
    assert len(frame) == len(faults), done.stderr
    for _, row in frame.iterrows():
        assert row["status"] == "degraded", (row["cell_id"], row["status"], row["error"], done.stderr)
        found = gaps_of(str(row["error"]))
        # At least the stop itself less a sample at either edge; TCP's retransmission backoff can
        # keep the link dark a while after it is up again.
        assert found and max(g[0] for g in found) >= 0.8, (row["cell_id"], row["error"])
        assert all(0 <= g[1] < g[2] <= 3.5 for g in found), row["error"]
    report = orchestrate("report", str(run_dir), timeout=120)
    assert report.returncode == 0, report.stderr
    assert "stalled" in (run_dir / "report.md").read_text()


def test_a_half_second_stop_in_a_one_interval_window_is_degraded(lab_inventory, tmp_path):
    """quick.yml's shape (a 1 s window of one 1 s interval, which the interval rule cannot judge):
    the sender stopped for 0.5 s from 0.25 s is degraded; the same cell undisturbed is ok."""
    config = experiment(tmp_path, duration="1s", interval="1s", repetitions=2)
    done, run_dir, frame = run_with([None, sender_stopped(0.25, 0.5)], config, lab_inventory, tmp_path / "results")
    assert len(frame) == 2, done.stderr
    calm, stopped = frame.iloc[0], frame.iloc[1]
    assert calm["status"] == "ok", (calm["error"], done.stderr)
    assert stopped["status"] == "degraded", (stopped["error"], done.stderr)
    found = gaps_of(str(stopped["error"]))
    assert found and max(g[0] for g in found) >= 0.3, stopped["error"]
