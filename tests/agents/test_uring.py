"""The io_uring send modes: each system call of agents/uring.c made to fail for real
(uring_calls.c, built warning-free with gcc and clang), and real agents on loopback, where the
kernel copies every io_uring_zc send and says so in each notification."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.rows import zerocopy

from .conftest import Pair, assert_ok, finish, kill_quietly, run_c_checks, run_pair, start_server

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_every_call_failure_is_returned_and_named(compiler: str, tmp_path: Path) -> None:
    run_c_checks(compiler, tmp_path, "uring_calls", "uring.c", "-D_GNU_SOURCE")


@pytest.mark.parametrize("mode", ["io_uring", "io_uring_zc"])
def test_stream_verified_and_counted(built_agent: Path, mode: str) -> None:
    args = ["--mode", mode, "--size", "1048576", "--threads", "2", "--duration", "0.4", "--verify"]
    pair = run_pair(built_agent, args)
    assert_ok(pair)
    sender, receiver = pair.server.doc, pair.client.doc
    assert sender["total"]["bytes_sent"] == receiver["total"]["bytes_received"] > 0
    assert sender["fields"] == 8  # recorded as given; an io_uring send takes the message whole
    if mode == "io_uring":
        assert sender["zerocopy"] is None
        return
    zc = sender["zerocopy"]
    # Every request that moved bytes owes one notification, and exactly one came for each.
    assert zc["sends"] == sender["total"]["send_calls"] > 0
    assert zc["notifications"] == zc["completed_sends"] == zc["sends"]
    assert zc["outstanding_at_end"] == 0
    # Loopback copies: every notification carries IORING_NOTIF_USAGE_ZC_COPIED.
    assert zc["copied_notifications"] == zc["copied_sends"] == zc["sends"]
    assert sum(t["zerocopy"]["notifications"] for t in sender["threads_detail"]) == zc["notifications"]
    assert receiver["zerocopy"] is None
    fraction = zc["copied_sends"] / zc["completed_sends"]
    assert zerocopy.label(mode, fraction) == "io_uring_zc: copied (not zero-copy)"


def test_registered_buffers_send_zero_copy_and_are_refused_elsewhere(built_agent: Path) -> None:
    args = ["--mode", "io_uring_zc", "--uring-buffers", "registered", "--size", "65536", "--threads", "2",
            "--duration", "0.3", "--verify"]
    pair = run_pair(built_agent, args)
    assert_ok(pair)
    sender = pair.server.doc
    assert sender["options"]["uring_buffers"] == "registered"
    zc = sender["zerocopy"]
    assert zc["notifications"] == zc["sends"] == sender["total"]["send_calls"] > 0
    refused = subprocess.run([str(built_agent), "server", "--bind", "127.0.0.1", "--port", "0", "--mode", "io_uring",
                              "--uring-buffers", "registered"], capture_output=True, text=True, timeout=10)  # fmt: skip
    assert refused.returncode == 2 and "--uring-buffers registered needs --mode io_uring_zc" in refused.stderr


@pytest.mark.parametrize("mode", ["io_uring", "io_uring_zc"])
def test_rr_both_sides_send_with_io_uring(built_agent: Path, mode: str) -> None:
    args = ["--mode", mode, "--workload", "rr", "--size", "1024", "--duration", "0.3", "--verify"]
    pair = run_pair(built_agent, args)
    assert_ok(pair)
    client, server = pair.client.doc, pair.server.doc
    assert client["rr"]["transactions_total"] == server["rr"]["transactions_total"] > 0
    if mode == "io_uring_zc":
        for side in (client, server):
            assert side["zerocopy"]["notifications"] == side["zerocopy"]["sends"] == side["rr"]["transactions_total"]


def test_killed_receiver_fails_the_send_request(built_agent: Path) -> None:
    """A send request answered with -EPIPE or -ECONNRESET names the vanished peer."""
    args = ["--mode", "io_uring_zc", "--duration", "20", "--size", "65536"]
    server, port = start_server(built_agent, args)
    client = subprocess.Popen([str(built_agent), "client", "--connect", "127.0.0.1", "--port", str(port), *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.3)
        client.kill()
        client.wait()
        side = finish(server, timeout=5)
    finally:
        kill_quietly(client)  # type: ignore[arg-type]
        kill_quietly(server)
    assert side.rc == 1 and side.doc is not None
    assert "went away during io_uring send_zc" in side.doc["error"]


@pytest.mark.parametrize("mode", ["io_uring", "io_uring_zc"])
def test_short_sends_are_resubmitted(built_agent: Path, mode: str) -> None:
    """On a non-blocking socket without MSG_WAITALL (a switch for the tests only) the kernel
    answers a send it cannot finish with the bytes it took: the rest goes again, and every byte
    arrives, verified, in order."""
    args = ["--mode", mode, "--size", "1048576", "--duration", "0.4", "--verify", "--sender", "client"]
    server, port = start_server(built_agent, args)
    client = subprocess.Popen([str(built_agent), "client", "--connect", "127.0.0.1", "--port", str(port), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "ORCH_AGENT_URING_NONBLOCK": "1"})  # fmt: skip
    sender, receiver = finish(client, 30), finish(server, 30)
    assert_ok(Pair(receiver, sender))
    total = sender.doc["total"]
    assert total["bytes_sent"] == receiver.doc["total"]["bytes_received"] > 0
    assert total["send_calls"] > total["messages_sent"]  # short sends happened, and were completed
    if mode == "io_uring_zc":
        zc = sender.doc["zerocopy"]
        # Every request, short or not, owes exactly one notification.
        assert zc["notifications"] == zc["sends"] >= total["send_calls"]
        assert zc["outstanding_at_end"] == 0
