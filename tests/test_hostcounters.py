"""Host counter parsers and deltas, on a recorded VM pair and a hand-written hardware pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import hostcounters as hc

FIXTURES = Path(__file__).parent / "fixtures" / "hostcounters"


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
    assert out["nic_tx_queue_0_restart"] == 0  # counted, and unchanged: a real 0


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
