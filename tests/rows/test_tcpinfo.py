"""results.csv's tcp_* columns and the report's retransmit and limit lines, on recorded agent JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from orchestrator.rows import tcpinfo
from orchestrator.rows.results import ResultsTable, cell_row, read_results
from orchestrator.rows.agentjson import load_agent_json, parse_agent_json

AGENT = Path(__file__).parents[1] / "fixtures" / "agent"
SENDER = AGENT / "stream_one_copy_tcpinfo_server_send.json"
RECEIVER = AGENT / "stream_one_copy_tcpinfo_client_receive.json"
CELL = {"run_id": "r", "cell_id": "stream-one_copy-65536B-2t-r1", "workload": "stream", "mode": "one_copy",
        "message_size": 65536, "threads": 2, "repetition": 1, "fields": 8, "sender": "server"}


def test_columns_from_the_senders_samples():
    row = tcpinfo.columns(load_agent_json(SENDER))
    # By hand from the fixture: first and last sample of each of the two connections.
    assert row["tcp_retrans"] == (10 - 2) + (9 - 3)
    assert row["tcp_busy_s"] == pytest.approx((896000 - 160000 + 932000 - 184000) / 1e6)
    assert row["tcp_rwnd_limited_s"] == pytest.approx((456000 - 116000 + 524000 - 148000) / 1e6)
    assert row["tcp_sndbuf_limited_s"] == 0
    assert row["tcp_rwnd_limited_fraction"] == pytest.approx(716000 / 1484000)
    assert row["tcp_sndbuf_limited_fraction"] == 0
    assert row["tcp_snd_cwnd"] == 22  # the lower median of 22 and 26
    assert row["tcp_rtt_us"] == pytest.approx((372 + 897) / 2)
    assert row["tcp_rttvar_us"] > 0
    assert row["tcp_pmtu"] == 65535
    assert row["tcp_delivery_rate_gbps"] == pytest.approx((9354714285 + 4022846416) * 8 / 1e9)
    assert set(row) == set(tcpinfo.COLUMNS)


def test_cell_row_takes_them_from_the_sender_and_writes_them():
    row = cell_row(CELL, load_agent_json(SENDER), load_agent_json(RECEIVER), None, None, None)
    assert row["status"] == "ok" and row["tcp_retrans"] == 14


def test_an_agent_without_samples_leaves_the_columns_empty_never_0(tmp_path: Path):
    old = load_agent_json(AGENT / "stream_one_copy_server_send.json")
    assert all(t.tcp_info is None for t in old.threads_detail or [])
    assert tcpinfo.columns(old) == {}
    row = cell_row(CELL, old, load_agent_json(AGENT / "stream_one_copy_client_receive.json"), None, None, None)
    results = ResultsTable(tmp_path / "results.csv")
    results.append(row)
    frame = read_results(tmp_path / "results.csv")
    for name in tcpinfo.COLUMNS:
        assert name in frame.columns and frame[name].isna().all(), name


def test_a_field_the_kernel_did_not_return_is_empty_and_the_rest_stay():
    doc = json.loads(SENDER.read_text())
    for thread in doc["threads_detail"]:
        for sample in thread["tcp_info"]:
            sample["busy_us"] = None  # an older kernel: its tcp_info ends before tcpi_busy_time
    row = tcpinfo.columns(parse_agent_json(json.dumps(doc)))
    assert row["tcp_busy_s"] is None
    assert row["tcp_rwnd_limited_fraction"] is None  # a fraction of an unknown busy time
    assert row["tcp_rwnd_limited_s"] == pytest.approx(0.716)
    assert row["tcp_retrans"] == 14


def test_a_missing_end_sample_gives_no_columns():
    doc = json.loads(SENDER.read_text())
    doc["threads_detail"][1]["tcp_info"][-1] = None
    assert tcpinfo.columns(parse_agent_json(json.dumps(doc))) == {}


def test_a_sample_count_the_contract_refuses():
    doc = json.loads(SENDER.read_text())
    doc["threads_detail"][0]["tcp_info"][0]["total_retrans"] = 1.5
    with pytest.raises(Exception, match="total_retrans"):
        parse_agent_json(json.dumps(doc))


@pytest.mark.parametrize(("rwnd", "sndbuf", "expected"), [
    (0.9, 0.0, "receive window"), (0.1, 0.6, "send buffer"), (0.3, 0.2, "neither"),
    (math.nan, math.nan, "not measured"), (math.nan, 0.7, "send buffer"), (0.5, 0.0, "receive window"),
])  # fmt: skip
def test_bound(rwnd: float, sndbuf: float, expected: str):
    assert tcpinfo.bound(rwnd, sndbuf) == expected
