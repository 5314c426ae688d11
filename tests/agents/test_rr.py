"""Request/response: one transaction in flight per connection, latency from the client.

Window rule, as agents/README.md defines it: the client counts a transaction in the window
when its response completes inside the client's window, and records its latency exactly
then, so the histogram count equals the client's window transactions. The server counts by
its own clock, so its window count may differ by the few transactions at the edges; the
totals are exact on both sides and the agents check them against each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import assert_ok, run_pair

pytestmark = pytest.mark.integration

SHORT = ["--duration", "0.3", "--warmup", "0.1", "--interval", "0.1"]


@pytest.mark.parametrize("mode", ["two_copy", "one_copy", "zero_copy", "sendfile"])
def test_rr_counts_agree(built_agent: Path, mode: str) -> None:
    size = 2048
    args = ["--workload", "rr", "--mode", mode, "--size", str(size), "--threads", "2",
            "--verify", *SHORT]  # fmt: skip
    pair = run_pair(built_agent, args)
    assert_ok(pair)
    client, server = pair.client.doc, pair.server.doc
    assert client["direction"] == server["direction"] == "rr"
    crr, srr = client["rr"], server["rr"]
    lat = crr["latency_us"]
    assert lat["count"] == crr["transactions"] > 0
    assert crr["transactions_total"] == srr["transactions_total"]
    assert 0 < srr["transactions"] <= srr["transactions_total"]
    assert srr["latency_us"] is None
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["mean"] <= lat["max"]
    assert crr["transactions_per_s"] == pytest.approx(
        crr["transactions"] / client["window"]["seconds"], rel=1e-3
    )
    for c, s in zip(client["threads_detail"], server["threads_detail"]):
        assert c["rr"]["latency_us"]["count"] == c["rr"]["transactions"]
        assert c["rr"]["transactions_total"] == s["rr"]["transactions_total"]
        n = c["rr"]["transactions_total"]
        assert c["total"]["bytes_sent"] == s["total"]["bytes_received"] == n * size
        assert s["total"]["bytes_sent"] == c["total"]["bytes_received"] == n * size
        assert sum(i["bytes"] for i in c["intervals"]) == c["window"]["bytes_received"]
        assert sum(i["bytes"] for i in s["intervals"]) == s["window"]["bytes_received"]
    assert sum(t["rr"]["transactions"] for t in client["threads_detail"]) == crr["transactions"]
