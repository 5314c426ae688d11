"""Host counter parsers and deltas, on a recorded VM pair and a hand-written hardware pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.rows import hostcounters as hc
from orchestrator.rows.results import read_results

FIXTURES = Path(__file__).parents[1] / "fixtures" / "hostcounters"


def snapshot(name: str) -> hc.Snapshot:
    folder = FIXTURES / name
    parts = {}
    for part in ("stat", "softirqs", "interrupts", "snmp", "netstat", "ethtool"):
        path = folder / part
        parts[part] = path.read_text() if path.exists() else None
    return hc.Snapshot(**parts)


def test_hardware_host_deltas():
    out = hc.deltas(snapshot("hw-start"), snapshot("hw-end"), nic="eth0", hz=100)
    # CPU seconds over all CPUs, by kind (ticks / USER_HZ).
    assert out["cpu_user_s"] == pytest.approx(6.0)  # 50 + 300 + 200 + 50 ticks
    assert out["cpu_system_s"] == pytest.approx(11.0)
    assert out["cpu_softirq_s"] == pytest.approx(6.0)
    assert out["cpu_irq_s"] == pytest.approx(0.3)
    assert out["cpu_idle_s"] == pytest.approx(20.0)
    assert out["softirq_net_rx"] == 500000 and out["softirq_net_tx"] == 100
    # eth0's queue IRQs only: not eth10's, not the timer's.
    assert out["nic_interrupts"] == 30000 + 20000
    assert out["tcp_retranssegs"] == 242 and out["tcp_inerrs"] == 0
    assert out["tcpext_tcpbacklogdrop"] == 7 and out["tcpext_tcprcvqdrop"] == 0
    assert out["nic_rx_packets"] == 5_000_000 and out["nic_rx_dropped"] == 4
    assert out["nic_rx_missed_errors"] == 0  # counted, and unchanged: a real 0
    assert "nic_tx_queue_0_restart" not in out  # not traffic, a drop or an error: outside the bounded set


def test_mlx5_host_deltas_by_bus_address():
    """mlx5 names its IRQs after the PCI address, not the interface: the agent's nic_bus finds them."""
    start, end = snapshot("mlx5-start"), snapshot("mlx5-end")
    out = hc.deltas(start, end, nic="ens2f0np0", bus="0000:b4:00.0")
    # comp0..3 and async of port 0: 12000 + 21000 + 0 + 7000; not port 1's (0000:b4:00.1), not nvme's.
    assert out["nic_interrupts"] == 40000
    assert "nic_interrupts" not in hc.deltas(start, end, nic="ens2f0np0")  # by name alone: none, blank
    assert out["tcp_retranssegs"] == 242 and out["tcp_inerrs"] == 3
    assert out["tcpext_tcpbacklogdrop"] == 7 and out["tcpext_tcprcvqdrop"] == 11
    assert not any(k.startswith("tcpext_tcpzerocopy") for k in out)  # this kernel's netstat has none
    # mlx5's device-wide counters, deltas over the span.
    assert out["nic_rx_packets"] == 5_000_000 and out["nic_tx_packets"] == 2_500_000
    assert out["nic_rx_bytes"] == 7_500_000_000 and out["nic_rx_bytes_phy"] == 7_520_000_000
    assert out["nic_rx_discards_phy"] == 12 and out["nic_rx_out_of_buffer"] == 37
    assert out["nic_tx_queue_dropped"] == 0 and out["nic_rx_crc_errors_phy"] == 0
    # Per-channel, per-priority and per-size counters are left out: the set stays bounded.
    assert not any(k.startswith(("nic_rx0_", "nic_tx1_", "nic_rx_prio0", "nic_rx_64_", "nic_ch_")) for k in out)
    assert "nic_rx_csum_complete" not in out


def test_nic_counters_sum_queues():
    veth = hc.parse_ethtool(
        "NIC statistics:\n     peer_ifindex: 7\n     rx_queue_0_xdp_packets: 5\n     rx_queue_1_xdp_packets: 6\n"
        "     rx_queue_0_drops: 2\n     rx_queue_0_xdp_redirect: 9\n     tx_queue_0_xdp_xmit_errors: 1\n")
    assert hc.nic_counters(veth) == {"rx_queues_xdp_packets": 11, "rx_queues_drops": 2,
                                     "tx_queues_xdp_xmit_errors": 1}


def test_recorded_vm_deltas_leave_what_the_host_lacks_blank():
    out = hc.deltas(snapshot("vm-start"), snapshot("vm-end"), nic="lo", hz=100)
    assert out["cpu_user_s"] + out["cpu_system_s"] + out["cpu_softirq_s"] > 0.5  # a 1 s agent pair ran
    assert out["softirq_net_rx"] > 0  # loopback delivers through NET_RX too
    assert "nic_interrupts" not in out  # loopback has no IRQ: blank, never 0
    assert not any(k.startswith("nic_") for k in out)  # no ethtool statistics on this host
    assert out["tcp_retranssegs"] >= 0 and "tcpext_tcpbacklogdrop" in out


def test_a_missing_file_leaves_its_columns_out():
    start, end = snapshot("hw-start"), snapshot("hw-end")
    end.softirqs = None
    start.snmp = None
    out = hc.deltas(start, end, nic="eth0")
    assert "softirq_net_rx" not in out and "tcp_retranssegs" not in out
    assert out["tcpext_tcpbacklogdrop"] == 7


def test_an_older_kernel_without_steal_and_guest_columns():
    start = "cpu  1 2 3 4\ncpu0 1 2 3 4\n"
    end = "cpu  2 2 5 4\ncpu0 2 2 5 4\n"
    out = hc.deltas(hc.Snapshot(stat=start), hc.Snapshot(stat=end), nic=None)
    assert out["cpu_user_s"] == pytest.approx(0.01) and out["cpu_system_s"] == pytest.approx(0.02)
    assert "cpu_softirq_s" not in out and "cpu_irq_s" not in out  # not printed: blank


@pytest.mark.parametrize("text", ["", "hello\n", "cpu0 1 x 3\n"])
def test_not_a_stat_file(text: str):
    with pytest.raises(hc.CounterError):
        hc.parse_stat(text)


def test_snmp_tables_must_pair():
    with pytest.raises(hc.CounterError):
        hc.parse_snmp("Tcp: A B\nUdp: 1 2\n")


def test_with_role():
    assert hc.with_role("server", {"cpu_user_s": 1.0}) == {"server_host_cpu_user_s": 1.0}


AGENT = Path(__file__).parents[1] / "fixtures" / "agent"


def _doc(name: str):
    from orchestrator.rows.agentjson import load_agent_json

    return load_agent_json(AGENT / name)


def test_columns_from_the_agents_snapshots_on_one_kernel():
    server = _doc("stream_one_copy_hostcounters_server_send.json")
    client = _doc("stream_one_copy_hostcounters_client_receive.json")
    cols = hc.columns("server", server)
    assert cols["server_host_span_s"] == pytest.approx(1.0, abs=0.05)
    # 2 CPUs over about 1 s: the kinds add up to about 2 CPU-seconds (USER_HZ ticks, so ±0.05).
    total = sum(cols[f"server_host_cpu_{k}_s"] for k in ("user", "system", "softirq", "irq", "idle"))
    assert total == pytest.approx(2.0, abs=0.1)
    assert cols["server_host_softirq_net_rx"] > 0
    assert "server_host_tcp_retranssegs" in cols
    assert hc.same_kernel(server, client)


def test_without_the_tick_length_cpu_columns_are_blank(tmp_path: Path):
    import json

    from orchestrator.rows.agentjson import parse_agent_json

    doc = json.loads((AGENT / "stream_one_copy_hostcounters_server_send.json").read_text())
    doc["host_counters"]["clk_tck"] = None
    cols = hc.columns("server", parse_agent_json(json.dumps(doc)))
    assert not any("_cpu_" in k for k in cols) and cols["server_host_softirq_net_rx"] > 0
    doc["host_counters"]["end"] = None
    assert hc.columns("server", parse_agent_json(json.dumps(doc))) == {}


def test_nic_columns_from_an_agent_document():
    """The agent's NIC name, bus and ethtool snapshots reach results.csv's columns."""
    import json

    from orchestrator.rows.agentjson import parse_agent_json

    doc = json.loads((AGENT / "stream_one_copy_hostcounters_server_send.json").read_text())
    hw = {name: snapshot(name) for name in ("mlx5-start", "mlx5-end")}
    for key, name in (("start", "mlx5-start"), ("end", "mlx5-end")):
        doc["host_counters"][key]["interrupts"] = hw[name].interrupts
        doc["host_counters"][key]["ethtool"] = hw[name].ethtool
    doc["host_counters"].update(nic="ens2f0np0", nic_bus="0000:b4:00.0")
    cols = hc.columns("client", parse_agent_json(json.dumps(doc)))
    assert cols["client_host_nic"] == "ens2f0np0"
    assert cols["client_host_nic_interrupts"] == 40000 and cols["client_host_nic_rx_out_of_buffer"] == 37
    # Loopback: the agent names lo, which has no IRQs and no statistics: blank, never 0.
    lo = json.loads((AGENT / "stream_one_copy_hostcounters_server_send.json").read_text())
    lo["host_counters"].update(nic="lo", nic_bus=None)
    cols = hc.columns("server", parse_agent_json(json.dumps(lo)))
    assert cols["server_host_nic"] == "lo" and cols["server_host_softirq_net_rx"] > 0
    assert not any(k.startswith("server_host_nic_") for k in cols)


def test_an_agent_without_snapshots_gives_no_columns():
    old = _doc("stream_one_copy_server_send.json")
    assert old.host_counters is None and hc.columns("server", old) == {}


def test_one_kernel_leaves_out_rows_that_cannot_say():
    """A real lab run: every agent row read one kernel; its iperf3 rows (no agents) say nothing."""
    results = read_results(Path(__file__).parents[1] / "fixtures" / "runs" / "20261206T023809Z-labfull-87e3" / "results.csv")
    assert results["host_shared_kernel"].isna().sum() == (results["mode"] == "iperf3").sum() > 0
    assert hc.one_kernel(results)
    assert not hc.one_kernel(results[results["mode"] == "iperf3"])  # no row says: not one kernel
    two_hosts = results.copy()
    two_hosts.loc[two_hosts.index[0], "host_shared_kernel"] = False
    assert not hc.one_kernel(two_hosts)
    assert not hc.one_kernel(results.drop(columns="host_shared_kernel"))
