"""TCP_INFO samples per connection: window start, every interval boundary, window end."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import assert_ok, run_pair

pytestmark = pytest.mark.integration

FIELDS = ("total_retrans", "rtt_us", "rttvar_us", "snd_cwnd", "delivery_rate", "busy_us",
          "rwnd_limited_us", "sndbuf_limited_us", "pmtu")  # fmt: skip
# 0.6 s in 0.2 s intervals: 3 intervals, so 4 samples per connection.
ARGS = ["--duration", "0.6", "--warmup", "0.1", "--interval", "0.2", "--size", "65536", "--threads", "2"]


@pytest.mark.parametrize("sender", ["server", "client"])
def test_every_connection_has_a_sample_per_boundary_on_both_sides(built_agent: Path, sender: str) -> None:
    pair = run_pair(built_agent, [*ARGS, "--sender", sender])
    assert_ok(pair)
    for doc in (pair.server.doc, pair.client.doc):
        assert doc is not None
        for thread in doc["threads_detail"]:
            samples = thread["tcp_info"]
            assert len(samples) == len(thread["intervals"]) + 1 == 4
            assert all(s is not None for s in samples)
            times = [s["t"] for s in samples]
            assert times[0] == pytest.approx(0, abs=0.02)
            # Boundaries a few microseconds after each interval's end; the last with the window.
            for sample, interval in zip(samples[1:], thread["intervals"]):
                assert sample["t"] == pytest.approx(interval["t"], abs=0.02)
            assert times == sorted(times)
            for key in FIELDS:  # this kernel returns every field (Debian 12's 6.1 and newer)
                assert all(isinstance(s[key], int) for s in samples), key
            for key in ("total_retrans", "busy_us", "rwnd_limited_us", "sndbuf_limited_us"):
                values = [s[key] for s in samples]
                assert values == sorted(values), (key, values)  # counters never go back
            assert samples[-1]["pmtu"] > 0 and samples[-1]["snd_cwnd"] > 0 and samples[-1]["rtt_us"] > 0
    sending = pair.by_direction("send")
    # The sender was busy sending in its window; its connection's busy time grew.
    for thread in sending["threads_detail"]:
        assert thread["tcp_info"][-1]["busy_us"] > thread["tcp_info"][0]["busy_us"]


def test_the_benchmark_switch_turns_sampling_off(built_agent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_AGENT_NO_TCPINFO", "1")
    pair = run_pair(built_agent, ARGS)
    assert_ok(pair)
    for doc in (pair.server.doc, pair.client.doc):
        assert doc is not None and all(t["tcp_info"] is None for t in doc["threads_detail"])


def test_many_intervals_keep_the_window_start_and_end_only(built_agent: Path) -> None:
    # 64 connections x 1025 samples is past the bound (65536): two samples per connection.
    args = ["--duration", "1.024", "--warmup", "0", "--interval", "0.001", "--size", "1024", "--threads", "64"]
    pair = run_pair(built_agent, args, timeout=60)
    assert_ok(pair)
    for doc in (pair.server.doc, pair.client.doc):
        assert doc is not None
        for thread in doc["threads_detail"]:
            assert len(thread["tcp_info"]) == 2 and None not in thread["tcp_info"]
            assert thread["tcp_info"][1]["t"] > 0.9
