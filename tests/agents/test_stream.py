"""Stream runs in every mode, size and thread count: exact byte accounting end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Pair, assert_ok, run_pair

pytestmark = pytest.mark.integration

MODES = ["two_copy", "one_copy", "zero_copy", "sendfile"]
SHORT = ["--duration", "0.3", "--warmup", "0.1", "--interval", "0.1"]


def check_stream(pair: Pair, size: int, threads: int) -> None:
    assert_ok(pair)
    sender, receiver = pair.by_direction("send"), pair.by_direction("receive")
    assert len(sender["threads_detail"]) == len(receiver["threads_detail"]) == threads
    for s, r in zip(sender["threads_detail"], receiver["threads_detail"]):
        assert s["index"] == r["index"]
        # Exactly what was sent arrived, per connection, and only whole messages.
        assert s["total"]["bytes_sent"] == r["total"]["bytes_received"] > 0
        assert r["total"]["bytes_received"] == r["total"]["messages_received"] * size
        assert s["total"]["bytes_sent"] == s["total"]["messages_sent"] * size
        assert sum(i["bytes"] for i in s["intervals"]) == s["window"]["bytes_sent"]
        assert sum(i["bytes"] for i in r["intervals"]) == r["window"]["bytes_received"]
        # Not asserted per connection: small MSG_ZEROCOPY sends over loopback can overrun the
        # receiver's memory with per-skb overhead; the drop then costs a 200 ms retransmission
        # timeout, which can cover a whole 0.3 s window of one connection.
        assert s["window"]["bytes_sent"] <= s["total"]["bytes_sent"]
        times = [i["t"] for i in s["intervals"]]
        assert times == sorted(times) and times[-1] == pytest.approx(s["window"]["seconds"])
    for doc in (sender, receiver):
        for section in ("window", "total"):
            for key in ("bytes_sent", "bytes_received", "messages_sent", "messages_received",
                        "send_calls", "recv_calls"):  # fmt: skip
                assert doc[section][key] == sum(t[section][key] for t in doc["threads_detail"])
        assert doc["window"]["seconds"] == pytest.approx(0.3, abs=0.25)
    assert sender["total"]["bytes_sent"] == receiver["total"]["bytes_received"]
    # Small MSG_ZEROCOPY sends over loopback stall at the start of a connection: the receiver
    # copies each 1 KiB fragment into a page of its own, its young receive buffer overflows,
    # and the drops cost a 200-400 ms retransmission timeout, longer than this 0.3 s window.
    # Measured in agents/README.md; the exact byte accounting above holds regardless.
    if not (sender["mode"] == "zero_copy" and 8 <= size < 4096):
        assert sender["window"]["bytes_sent"] > 0 and receiver["window"]["bytes_received"] > 0


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("size", [1, 1024, 65536, 1048576])
@pytest.mark.parametrize("mode", MODES)
def test_stream_bytes_match(built_agent: Path, mode: str, size: int, threads: int) -> None:
    args = ["--mode", mode, "--size", str(size), "--threads", str(threads), *SHORT]
    pair = run_pair(built_agent, args)
    check_stream(pair, size, threads)
    assert pair.server.doc["direction"] == "send"  # the default sender is the server
    assert pair.server.doc["fields"] == min(8, size)


@pytest.mark.parametrize("mode", MODES)
def test_stream_verify_client_sends(built_agent: Path, mode: str) -> None:
    args = ["--mode", mode, "--size", "3000", "--fields", "5", "--threads", "2",
            "--sender", "client", "--verify", *SHORT]  # fmt: skip
    pair = run_pair(built_agent, args)
    check_stream(pair, 3000, 2)
    assert pair.client.doc["direction"] == "send"
    assert pair.server.doc["options"]["verify"] is True


def test_stream_verify_tiny_fields(built_agent: Path) -> None:
    """Fields shorter than the 8-byte stamp: the stamp spans fields and still verifies."""
    args = ["--mode", "two_copy", "--size", "12", "--fields", "12", "--verify", *SHORT]
    check_stream(run_pair(built_agent, args), 12, 1)


def test_options_recorded(built_agent: Path) -> None:
    args = ["--threads", "2", "--nodelay", "0", "--sndbuf", "262144", "--rcvbuf", "262144",
            "--cpus", "0", "--size", "4096", *SHORT]  # fmt: skip
    pair = run_pair(built_agent, args)
    assert_ok(pair)
    for doc in (pair.server.doc, pair.client.doc):
        opts = doc["options"]
        assert opts["nodelay"] is False and opts["sndbuf"] == 262144 and opts["cpus"] == [0]
        # Linux doubles the requested size for its bookkeeping.
        assert opts["sndbuf_effective"] == opts["rcvbuf_effective"] == 2 * 262144
        assert [t["cpu"] for t in doc["threads_detail"]] == [0, 0]
        assert opts["lifetime_s"] == pytest.approx(0.3 + 0.1 + 30)
