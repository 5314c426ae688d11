"""The receive side's rule and column, on real recorded cells (tests/fixtures/receive/): what
results.csv records of a receive: zerocopy cell, and how the rule labels it and says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.rows import zerocopy
from orchestrator.rows.agentjson import load_agent_json
from orchestrator.rows.results import cell_row

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "receive"


def _row(name: str) -> dict:
    folder = FIXTURES / name
    cell = json.loads((folder / "cell.json").read_text())["cell"]
    return cell_row(cell, load_agent_json(folder / "server.json"), load_agent_json(folder / "client.json"),
                    None, None, None)


def test_an_aligned_sender_at_mtu_61492_is_mapped_whole():
    row = _row("mtu61492-zero_copy")
    assert row["status"] == "ok"
    assert row["receive_mapped_fraction"] >= 0.99
    assert row["receive_bytes_mapped"] <= row["bytes_received"]
    assert zerocopy.mapping("zerocopy", row["receive_mapped_fraction"]) is zerocopy.Mapping.MAPPED
    assert zerocopy.receive_label("zerocopy", row["receive_mapped_fraction"]) == "zerocopy"


def test_a_plain_sender_is_never_shown_as_zero_copy_receive_and_the_reason_is_alignment():
    row = _row("mtu61492-one_copy")
    assert row["receive_mapped_fraction"] < zerocopy.MAPPED_NONE
    verdict = zerocopy.mapping("zerocopy", row["receive_mapped_fraction"])
    assert verdict is zerocopy.Mapping.NOT_MAPPED and not verdict.zero_copy
    assert zerocopy.receive_label("zerocopy", row["receive_mapped_fraction"]) == "zerocopy: not mapped (read)"
    assert row["tcp_pmtu"] == 61492 and zerocopy.whole_pages(row["tcp_pmtu"])
    assert "not page-aligned" in zerocopy.why_not_mapped(row["tcp_pmtu"], "one_copy")


def test_at_mtu_1500_part_of_each_burst_is_read_and_the_reason_is_the_mtu():
    row = _row("mtu1500-zero_copy")
    fraction = row["receive_mapped_fraction"]
    assert 0.5 < fraction < zerocopy.MAPPED_THRESHOLD
    assert zerocopy.receive_label("zerocopy", fraction).startswith("zerocopy (9")
    assert "the rest read" in zerocopy.receive_label("zerocopy", fraction)
    assert row["tcp_pmtu"] == 1500 and zerocopy.whole_pages(1500) is False
    assert "path MTU is 1500" in zerocopy.why_not_mapped(row["tcp_pmtu"], "zero_copy")


def test_a_copy_cell_has_no_mapped_columns_and_the_rule_does_not_apply():
    cell = json.loads((FIXTURES / "mtu61492-zero_copy" / "cell.json").read_text())["cell"]
    folder = FIXTURES / "mtu61492-zero_copy"
    row = cell_row({**cell, "receive": "copy"}, load_agent_json(folder / "server.json"),
                   load_agent_json(folder / "client.json"), None, None, None)
    assert row.get("receive_mapped_fraction") is None and row.get("receive_bytes_mapped") is None
    assert zerocopy.mapping("copy", float("nan")) is zerocopy.Mapping.OTHER_RECEIVE


@pytest.mark.parametrize("value", [None, float("nan"), "x"])
def test_nothing_counted_is_unverified(value):
    assert zerocopy.mapping("zerocopy", value) is zerocopy.Mapping.UNVERIFIED
