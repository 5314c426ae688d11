"""Bad arguments stop before any traffic (exit 2); runtime failures give an error JSON."""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.rows.agentjson import parse_agent_json
from orchestrator.run.cell import _exit_meaning

from .conftest import LOOPBACK, finish, kill_quietly, run_pair, start_server

pytestmark = pytest.mark.integration

BAD_ARGS = [
    ["server", "--bind", LOOPBACK, "--port", "0", "--size", "0"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--size", "-5"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--size", "4194305"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--size", "12k"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--threads", "0"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--threads", "65"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--fields", "65"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--mode", "three_copy"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--workload", "bulk"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--receive", "mmap"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--workload", "rr", "--receive", "zerocopy"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--duration", "abc"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--duration", "0"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--warmup", "-1"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--nodelay", "2"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--cpus", "9999"],
    ["server", "--bind", LOOPBACK, "--port", "70000"],
    ["server", "--bind", LOOPBACK, "--port", "0", "--bogus", "1"],
    ["server", "--port", "0"],
    ["client", "--connect", LOOPBACK, "--port", "0"],
    ["sideways", "--bind", LOOPBACK, "--port", "0"],
    # 198.18.0.0/15 is reserved for benchmarking; not configured here, so bind fails locally.
    ["server", "--bind", "198.18.99.99", "--port", "0"],
]


@pytest.mark.parametrize("argv", BAD_ARGS, ids=lambda a: " ".join(a[3:]) or a[0])
def test_bad_arguments_exit_2(built_agent: Path, argv: list[str]) -> None:
    r = subprocess.run([str(built_agent), *argv], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert r.stdout == ""  # no READY line, no JSON: nothing started
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agent: ")


def test_port_in_use_exit_2(built_agent: Path) -> None:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([str(built_agent), "server", "--bind", LOOPBACK, "--port", str(port)],
                           capture_output=True, text=True, timeout=10)  # fmt: skip
    assert r.returncode == 2
    assert "in use" in r.stderr


def test_system_failure_exit_3(built_agent: Path) -> None:
    """In 4 MiB of address space the agent loads but gets no memory for a thread's stack: a
    system failure (exit 3), not bad arguments (exit 2), and the orchestrator says which."""

    def short_of_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 20, 4 << 20))

    r = subprocess.run([str(built_agent), "server", "--bind", LOOPBACK, "--port", "0"],
                       capture_output=True, text=True, timeout=10, preexec_fn=short_of_memory)  # fmt: skip
    assert r.returncode == 3, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agent: ")
    assert _exit_meaning(r.returncode) == "exited with status 3 (a system failure: out of memory, or a socket or thread refused)"
    assert _exit_meaning(2) == "exited with status 2 (bad arguments)"


def test_hello_mismatch_refused(built_agent: Path) -> None:
    pair = run_pair(built_agent, ["--size", "1000", "--duration", "1"],
                    client_args=["--size", "2000", "--duration", "1"])  # fmt: skip
    for side in (pair.server, pair.client):
        assert side.rc == 1
        assert side.doc["status"] == "error"
        assert "--size" in side.doc["error"] and "1000" in side.doc["error"]
        parse_agent_json(json.dumps(side.doc))


def kill_client_mid_run(built_agent: Path, port: int, args: list[str]) -> subprocess.Popen:
    """A client that runs for half a second and is then SIGKILLed, as a crashed peer would be."""
    client = subprocess.Popen(
        [str(built_agent), "client", "--connect", LOOPBACK, "--port", str(port), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    client.send_signal(signal.SIGKILL)
    client.wait()
    return client


def test_killed_client_gives_prompt_error(built_agent: Path) -> None:
    args = ["--duration", "20", "--threads", "2"]
    server, port = start_server(built_agent, args)
    client = kill_client_mid_run(built_agent, port, args)
    try:
        killed = time.monotonic()
        side = finish(server, timeout=5)
        assert time.monotonic() - killed < 3
    finally:
        kill_quietly(client)
        kill_quietly(server)
    assert side.rc == 1
    assert side.doc["status"] == "error"
    assert "went away" in side.doc["error"]


def test_killed_sending_client_detected_by_receiving_server(built_agent: Path) -> None:
    args = ["--duration", "20", "--sender", "client", "--size", "1024"]
    server, port = start_server(built_agent, args)
    client = kill_client_mid_run(built_agent, port, args)
    try:
        side = finish(server, timeout=5)
    finally:
        kill_quietly(client)
        kill_quietly(server)
    assert side.rc == 1 and side.doc["status"] == "error"


def test_sigterm_writes_json(built_agent: Path) -> None:
    server, _ = start_server(built_agent, ["--duration", "5"])
    try:
        server.send_signal(signal.SIGTERM)
        side = finish(server, timeout=5)
    finally:
        kill_quietly(server)
    assert side.rc == 1
    assert side.doc["error"] == "terminated by SIGTERM"
    parse_agent_json(json.dumps(side.doc))


def test_lifetime_ends_orphaned_server(built_agent: Path) -> None:
    start = time.monotonic()
    server, _ = start_server(built_agent, ["--duration", "5", "--lifetime", "0.5"])
    try:
        side = finish(server, timeout=5)
    finally:
        kill_quietly(server)
    assert time.monotonic() - start < 3
    assert side.rc == 1 and "lifetime" in side.doc["error"]


def test_connection_refused_is_runtime_error(built_agent: Path) -> None:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]  # bound, not listening: connecting is refused
        r = subprocess.run([str(built_agent), "client", "--connect", LOOPBACK, "--port",
                            str(port), "--duration", "1"],
                           capture_output=True, text=True, timeout=10)  # fmt: skip
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["status"] == "error" and "refused" in doc["error"]


def test_output_file_written_and_not_created_on_bad_bind(built_agent: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    r = subprocess.run([str(built_agent), "server", "--bind", "198.18.99.99", "--port", "0",
                        "--output", str(bad)], capture_output=True, text=True, timeout=10)  # fmt: skip
    assert r.returncode == 2 and not bad.exists()
    good = tmp_path / "server.json"
    server, _ = start_server(built_agent, ["--duration", "5", "--output", str(good)])
    try:
        server.send_signal(signal.SIGINT)
        side = finish(server, timeout=5)
    finally:
        kill_quietly(server)
    assert side.rc == 1 and side.doc is None  # stdout had only the READY line
    doc = json.loads(good.read_text())
    assert doc["error"] == "terminated by SIGINT"
