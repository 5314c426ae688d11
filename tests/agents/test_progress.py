"""Progress samples (docs/agent-protocol.md `progress`): every 0.1 s of the window whatever the
interval, summing to the window's bytes, coarser only past the cap; and a stopped sender shows
in the receiver's samples as a gap the stall rule names."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.rows import stall
from orchestrator.rows.agentjson import parse_agent_json

from .conftest import LOOPBACK, assert_ok, finish, kill_quietly, run_pair, start_server, wait_for

pytestmark = pytest.mark.integration

MAX_SAMPLES = 4096  # agents/agent.h AGENT_MAX_SAMPLES


def connected(port: int) -> bool:
    listing = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True).stdout
    return bool(listing.strip())


@pytest.mark.parametrize("interval", ["1", "0.25"])
def test_samples_every_tenth_of_a_second_whatever_the_interval(built_agent: Path, interval: str) -> None:
    pair = run_pair(built_agent, ["--duration", "1", "--warmup", "0.1", "--interval", interval, "--threads", "2"])
    assert_ok(pair)
    for direction, key in (("send", "bytes_sent"), ("receive", "bytes_received")):
        doc = pair.by_direction(direction)
        progress = doc["progress"]
        assert progress["step_s"] == pytest.approx(0.1)
        times = [s["t"] for s in progress["samples"]]
        assert times == sorted(times) and 8 <= len(times) <= 10, times
        # Each sample at its step (a late wake-up on a busy machine is one long sample).
        assert all(t >= 0.1 * (k + 1) - 1e-3 for k, t in enumerate(times[:-1])), times
        assert times[-1] == pytest.approx(doc["window"]["seconds"])
        assert sum(s["bytes"] for s in progress["samples"]) == doc["window"][key] > 0


def test_a_long_window_samples_more_coarsely_within_the_cap(built_agent: Path) -> None:
    """A 1000 s window would take 10000 samples at 0.1 s: its step is 1000/4096 s instead."""
    server, port = start_server(built_agent, ["--duration", "1000", "--warmup", "0"])
    client = subprocess.Popen([str(built_agent), "client", "--connect", LOOPBACK, "--port", str(port),
                               "--duration", "1000", "--warmup", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: connected(port), 10)
        client.send_signal(signal.SIGTERM)
        side = finish(client, timeout=10)
    finally:
        kill_quietly(client)
        kill_quietly(server)
    assert side.doc is not None and side.doc["error"] == "terminated by SIGTERM", side.stderr
    assert side.doc["progress"]["step_s"] == pytest.approx(1000 / MAX_SAMPLES, abs=1e-6)
    parse_agent_json(json.dumps(side.doc))


def test_a_stopped_sender_is_a_gap_in_the_receivers_samples(built_agent: Path) -> None:
    """The sending server stopped (SIGSTOP) for 0.5 s of a 1.5 s window of one interval."""
    args = ["--duration", "1.5", "--warmup", "0.2", "--interval", "1.5", "--threads", "2"]
    server, port = start_server(built_agent, args)
    client = subprocess.Popen([str(built_agent), "client", "--connect", LOOPBACK, "--port", str(port), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: connected(port), 10)
        time.sleep(0.2 + 0.4)  # the warm-up, then 0.4 s into the window
        server.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        server.send_signal(signal.SIGCONT)
        receiver = finish(client, timeout=20)
        finish(server, timeout=20)
    finally:
        kill_quietly(client)
        kill_quietly(server)
    assert receiver.rc == 0 and receiver.doc is not None, receiver.stderr
    doubts = stall.doubts(parse_agent_json(json.dumps(receiver.doc)), 0.1)
    assert len(doubts) == 1 and doubts[0].startswith("stalled 0."), doubts
    assert float(doubts[0].split()[1]) >= 0.3, doubts
