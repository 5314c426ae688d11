"""Real agent processes on loopback: a server on port 0, its READY line, then the client."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.rows.agentjson import parse_agent_json
from tests.conftest import ROOT, require

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 10.0


@dataclass
class Side:
    rc: int
    doc: dict[str, Any] | None
    stderr: str


@dataclass
class Pair:
    server: Side
    client: Side

    def by_direction(self, direction: str) -> dict[str, Any]:
        for side in (self.server, self.client):
            if side.doc and side.doc["direction"] == direction:
                return side.doc
        raise AssertionError(f"no side with direction {direction!r}")


def read_ready(server: subprocess.Popen[str], timeout: float = READY_TIMEOUT_S) -> tuple[str, int]:
    """The READY line's address and port; fails the test if it does not come in time."""
    assert server.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(server.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            server.kill()
            pytest.fail(f"no READY line within {timeout} s")
        line = server.stdout.readline()
    finally:
        sel.close()
    parts = line.split()
    assert len(parts) == 3 and parts[0] == "READY", f"bad ready line {line!r}"
    return parts[1], int(parts[2])


def start_server(agent: Path, args: list[str]) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen(
        [str(agent), "server", "--bind", LOOPBACK, "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _, port = read_ready(server)
    return server, port


def finish(proc: subprocess.Popen[str], timeout: float) -> Side:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"agent pid {proc.pid} did not end within {timeout} s")
    doc = json.loads(out) if out.strip() else None
    return Side(proc.returncode, doc, err)


def run_pair(
    agent: Path, args: list[str], client_args: list[str] | None = None, timeout: float = 30
) -> Pair:
    """Runs one server/client pair with the same options (or `client_args` for the client)."""
    server, port = start_server(agent, args)
    client = subprocess.Popen(
        [str(agent), "client", "--connect", LOOPBACK, "--port", str(port),
         *(args if client_args is None else client_args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client_side = finish(client, timeout)
    server_side = finish(server, timeout)
    return Pair(server_side, client_side)


def assert_ok(pair: Pair) -> None:
    for name, side in (("server", pair.server), ("client", pair.client)):
        assert side.rc == 0, f"{name} exited {side.rc}: {side.stderr} {side.doc and side.doc['error']}"
        assert side.doc is not None and side.doc["status"] == "ok", side.doc
        # The orchestrator's own parser: the contract's keys, types and per-thread sums.
        parse_agent_json(json.dumps(side.doc), source=name)


def kill_quietly(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def run_c_checks(compiler: str, tmp_path: Path, name: str, unit: str, *flags: str) -> None:
    """Builds tests/agents/NAME.c against agents/UNIT with `compiler` at -Wall -Wextra -Werror
    (no warning at all), runs it, and asserts it passed every check it makes, silently."""
    require(shutil.which(compiler) is not None, f"{compiler} is not installed")
    agents, program = ROOT / "agents", tmp_path / name
    build = subprocess.run(
        [compiler, "-std=gnu11", *flags, "-O2", "-Wall", "-Wextra", "-Werror", f"-I{agents}", "-o", str(program),
         str(Path(__file__).parent / f"{name}.c"), str(agents / unit)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (build.returncode, build.stderr) == (0, ""), build.stderr
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout, run.stderr) == (0, f"{name}: all checks passed\n", "")
