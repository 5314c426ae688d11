"""Host counter snapshots: each agent reads its host's /proc files at the window's start and end."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import assert_ok, run_pair

pytestmark = pytest.mark.integration

ARGS = ["--duration", "0.5", "--warmup", "0.1", "--interval", "0.25", "--size", "65536"]


@pytest.mark.parametrize("sender", ["server", "client"])
def test_both_sides_bracket_their_window(built_agent: Path, sender: str) -> None:
    pair = run_pair(built_agent, [*ARGS, "--sender", sender])
    assert_ok(pair)
    for doc in (pair.server.doc, pair.client.doc):
        assert doc is not None
        counters = doc["host_counters"]
        assert counters["clk_tck"] > 0
        start, end = counters["start"], counters["end"]
        # Near the window's edges, within a tenth of the 0.5 s window: the agent reads five /proc
        # files there, and a busy 2-core machine delayed the first read by 27 ms in one CI run.
        # The exact times are recorded (`t`), and the host counters' rates divide by them.
        assert 0 <= start["t"] <= 0.05, start["t"]
        assert end["t"] == pytest.approx(doc["window"]["seconds"], abs=0.05)
        for key in ("stat", "softirqs", "interrupts", "snmp", "netstat"):
            assert start[key] and end[key], key
        assert start["stat"].startswith("cpu ") and "NET_RX" in end["softirqs"] and "RetransSegs" in end["snmp"]
        # The data NIC is the one holding the connection's address: lo, which has no driver
        # statistics and no bus (a veth's are checked over the lab, tests/test_lab_e2e.py).
        assert counters["nic"] == "lo" and counters["nic_bus"] is None
        assert start["ethtool"] is None and end["ethtool"] is None


def test_sampling_off_leaves_them_out(built_agent: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_AGENT_NO_TCPINFO", "1")
    pair = run_pair(built_agent, ARGS)
    assert_ok(pair)
    assert pair.server.doc["host_counters"] is None and pair.client.doc["host_counters"] is None
