"""Host counters for "where the CPU went": parsers for /proc/stat, /proc/softirqs, /proc/interrupts,
/proc/net/snmp, /proc/net/netstat and `ethtool -S`, and the deltas between two snapshots.

Each agent reads its host's /proc files at the window's start and at its deadline (or, on a
stream receiver whose data ends first, at its EOF), from its timekeeper thread (agents/hostsnap.c),
so the span is the agent's own window. The same reads take the data NIC's statistics (the
SIOCETHTOOL ioctl that `ethtool -S` makes, in its layout), and the agent names that NIC and its
bus address, which pick the NIC's IRQs out of /proc/interrupts. A counter a snapshot lacks
(an older kernel, a driver without the statistic, a host without the file) gives a blank column,
never 0: `deltas` leaves it out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd


# /proc/stat's per-CPU columns, in the kernel's order (Documentation/filesystems/proc.rst).
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
# What the CPU figure splits into; nice counts as user time, as top does.
CPU_SPLIT = ("user", "system", "softirq", "irq", "idle")
SOFTIRQS = ("NET_RX", "NET_TX")
SNMP_COUNTERS = (("Tcp", "RetransSegs"), ("Tcp", "InErrs"))
NETSTAT_COUNTERS = (("TcpExt", "TCPBacklogDrop"), ("TcpExt", "TCPRcvQDrop"))
ZEROCOPY_PREFIX = "TCPZeroCopy"  # TcpExt counters of that name, on the kernels that have them

_CPU_LINE = re.compile(r"^cpu(\d+)\s")


class CounterError(ValueError):
    """A snapshot text that is not the file it claims to be."""


def parse_stat(text: str) -> dict[int, dict[str, int]]:
    """Per-CPU ticks by field; only the fields this kernel prints (older ones print fewer)."""
    cpus: dict[int, dict[str, int]] = {}
    for line in text.splitlines():
        match = _CPU_LINE.match(line)
        if not match:
            continue
        values = line.split()[1:]
        try:
            cpus[int(match.group(1))] = {name: int(v) for name, v in zip(STAT_FIELDS, values)}
        except ValueError:
            raise CounterError(f"/proc/stat: not a number in {line[:80]!r}") from None
    if not cpus:
        raise CounterError("/proc/stat: no per-CPU line")
    return cpus


def parse_softirqs(text: str) -> dict[str, list[int]]:
    """Per-CPU counts of each softirq, by name (`NET_RX`, ...)."""
    lines = text.splitlines()
    if not lines or not lines[0].split() or not lines[0].split()[0].startswith("CPU"):
        raise CounterError("/proc/softirqs: no CPU header")
    ncpus = len(lines[0].split())
    found: dict[str, list[int]] = {}
    for line in lines[1:]:
        name, _, rest = line.partition(":")
        if not rest:
            continue
        try:
            found[name.strip()] = [int(v) for v in rest.split()[:ncpus]]
        except ValueError:
            raise CounterError(f"/proc/softirqs: not a number in {line[:80]!r}") from None
    return found


def parse_interrupts(text: str, nic: str, bus: str | None = None) -> dict[str, int]:
    """Interrupts per IRQ of the NIC, summed over CPUs: a line whose description names the
    interface (`eth0-TxRx-3`, ixgbe, i40e) or its PCI bus address (`mlx5_comp0@pci:0000:3b:00.0`,
    and virtio's `PCI-MSIX-0000:00:03.0` chip column on recent kernels)."""
    lines = text.splitlines()
    if not lines or not lines[0].split() or not lines[0].split()[0].startswith("CPU"):
        raise CounterError("/proc/interrupts: no CPU header")
    ncpus = len(lines[0].split())
    irqs: dict[str, int] = {}
    names = [re.escape(nic)] + ([re.escape(bus)] if bus else [])
    pattern = re.compile(rf"(^|[\s@:-])({'|'.join(names)})($|[\s@:-])")
    for line in lines[1:]:
        irq, _, rest = line.partition(":")
        parts = rest.split()
        counts = parts[:ncpus]
        if not irq.strip().isdigit() or len(counts) < ncpus or not all(c.isdigit() for c in counts):
            continue  # NMI, LOC, ERR... are not a device's IRQs
        if pattern.search(" ".join(parts[ncpus:])):  # the chip, hardware IRQ and name columns
            irqs[irq.strip()] = sum(int(c) for c in counts)
    return irqs


def parse_snmp(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/snmp or /proc/net/netstat: header and value lines in pairs, by protocol."""
    tables: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2]):
        names, numbers = header.split(), values.split()
        if not names or names[0] != numbers[0] or len(names) != len(numbers):
            raise CounterError(f"not an snmp table: {header[:60]!r}")
        try:
            tables[names[0].rstrip(":")] = {n: int(v) for n, v in zip(names[1:], numbers[1:])}
        except ValueError:
            raise CounterError(f"not a number in {values[:80]!r}") from None
    return tables


# The bounded set of `ethtool -S` statistics kept as columns: traffic, drops and errors. Drivers
# name hundreds (per queue, per priority, per frame size); kept are the device-wide ones without
# a digit (`rx_packets`, `rx_dropped`, mlx5's `rx_discards_phy` and `rx_out_of_buffer`), and per-queue ones
# (`rx_queue_3_packets`, veth's `rx_queue_0_xdp_packets`) summed over queues as `rx_queues_packets`.
_NIC_WORDS = re.compile(r"(^|_)(packets|bytes|drop|dropped|drops|discard|discards|err|errors|missed|out_of_buffer)(_phy)?$")
_NIC_QUEUE = re.compile(r"^(rx|tx)_queue_\d+_(.+)$")


def nic_counters(stats: Mapping[str, int]) -> dict[str, int]:
    """The bounded set of one `ethtool -S` snapshot, by column name (without the `nic_` prefix)."""
    out: dict[str, int] = {}
    for name, value in stats.items():
        key = _snake(name)
        queue = _NIC_QUEUE.match(key)
        if queue and _NIC_WORDS.search(queue.group(2)):
            column = f"{queue.group(1)}_queues_{queue.group(2)}"
            out[column] = out.get(column, 0) + value
        elif re.match(r"(rx|tx)_", key) and not re.search(r"\d", key) and _NIC_WORDS.search(key):
            out[key] = value
    return out


def parse_ethtool(text: str) -> dict[str, int]:
    """`ethtool -S DEV`: its `name: value` lines; an empty dict when the driver has none."""
    stats: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        name, _, value = line.strip().rpartition(":")
        value = value.strip()
        if name and re.fullmatch(r"-?\d+", value):
            stats[name.strip()] = int(value)
    return stats


@dataclass
class Snapshot:
    """One host's counters at one moment; a None part: the host has no such file or command."""

    stat: str | None = None
    softirqs: str | None = None
    interrupts: str | None = None
    snmp: str | None = None
    netstat: str | None = None
    ethtool: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _cpu_seconds(start: str, end: str, hz: int) -> dict[str, float]:
    a, b = parse_stat(start), parse_stat(end)
    out: dict[str, float] = {}
    for name in CPU_SPLIT:
        sources = ("user", "nice") if name == "user" else (name,)
        total, seen = 0, False
        for cpu in b.keys() & a.keys():
            for source in sources:
                if source in a[cpu] and source in b[cpu]:
                    total += b[cpu][source] - a[cpu][source]
                    seen = True
        if seen:
            out[f"cpu_{name}_s"] = total / hz
    return out


def deltas(start: Snapshot, end: Snapshot, nic: str | None, hz: int = 100,
           bus: str | None = None) -> dict[str, float | int]:
    """One host's columns over the span between two snapshots (no role prefix): CPU seconds
    summed over CPUs by kind, NET_RX/NET_TX softirqs, the NIC's interrupts, TCP counters and
    the bounded set of `ethtool -S` counters (`nic_<name>`, `nic_counters`). Anything either
    snapshot lacks is left out: blank."""
    out: dict[str, float | int] = {}
    if start.stat is not None and end.stat is not None:
        out.update(_cpu_seconds(start.stat, end.stat, hz))
    if start.softirqs is not None and end.softirqs is not None:
        a, b = parse_softirqs(start.softirqs), parse_softirqs(end.softirqs)
        for name in SOFTIRQS:
            if name in a and name in b:
                out[f"softirq_{name.lower()}"] = sum(b[name]) - sum(a[name])
    if nic and start.interrupts is not None and end.interrupts is not None:
        a_irq, b_irq = parse_interrupts(start.interrupts, nic, bus), parse_interrupts(end.interrupts, nic, bus)
        common = a_irq.keys() & b_irq.keys()
        if common:  # a virtual NIC without IRQs of its own (veth) has none: blank, not 0
            out["nic_interrupts"] = sum(b_irq[i] - a_irq[i] for i in common)
    for attr, wanted in (("snmp", SNMP_COUNTERS), ("netstat", NETSTAT_COUNTERS)):
        first, last = getattr(start, attr), getattr(end, attr)
        if first is None or last is None:
            continue
        a_tab, b_tab = parse_snmp(first), parse_snmp(last)
        names = list(wanted)
        if attr == "netstat":
            names += [("TcpExt", k) for k in b_tab.get("TcpExt", {}) if k.startswith(ZEROCOPY_PREFIX)]
        for proto, key in names:
            if key in a_tab.get(proto, {}) and key in b_tab.get(proto, {}):
                # The kernel's own names, lower-cased: tcp_retranssegs, tcpext_tcpbacklogdrop.
                out[f"{proto.lower()}_{key.lower()}"] = b_tab[proto][key] - a_tab[proto][key]
    if start.ethtool is not None and end.ethtool is not None:
        a_eth, b_eth = nic_counters(parse_ethtool(start.ethtool)), nic_counters(parse_ethtool(end.ethtool))
        for key in sorted(a_eth.keys() & b_eth.keys()):
            out[f"nic_{key}"] = b_eth[key] - a_eth[key]
    return out


def _snake(name: str) -> str:
    """An ethtool statistic's name as a column: `rx_queue_0_packets` stays, `rx-csum.err` -> `rx_csum_err`."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def with_role(role: str, columns: Mapping[str, float | int | str]) -> dict[str, float | int | str]:
    """`server_host_cpu_softirq_s`, ...: host columns of one role in results.csv's style."""
    return {f"{role}_host_{k}": v for k, v in columns.items()}


def columns(role: str, agent: object) -> dict[str, float | int | str]:
    """results.csv's `<role>_host_*` columns from one agent document's host_counters; {} if none."""
    counters = getattr(agent, "host_counters", None)
    if counters is None or counters.start is None or counters.end is None:
        return {}
    start, end = counters.start, counters.end
    hz = counters.clk_tck
    found: dict[str, float | int | str]
    try:
        # Without the tick length, /proc/stat cannot be turned into seconds: CPU columns stay blank.
        found = dict(deltas(*(Snapshot(stat=snap.stat if hz else None, softirqs=snap.softirqs,
                                  interrupts=snap.interrupts, snmp=snap.snmp, netstat=snap.netstat,
                                  ethtool=getattr(snap, "ethtool", None)) for snap in (start, end)),
                       nic=getattr(counters, "nic", None), hz=hz or 100, bus=getattr(counters, "nic_bus", None)))
    except CounterError:
        return {}  # a file that does not parse is not measured
    found["span_s"] = round(end.t - start.t, 6)
    if getattr(counters, "nic", None):
        found["nic"] = counters.nic  # which interface the nic_* columns are
    return with_role(role, found)


def same_kernel(server: object, client: object) -> bool:
    """Whether both agents read one kernel's counters (loopback, the namespace lab): /proc/stat's
    boot time and CPU lines agree at the window's start to within the time between the reads."""
    stats = []
    for agent in (server, client):
        counters = getattr(agent, "host_counters", None)
        if counters is None or counters.start is None or counters.start.stat is None:
            return False
        stats.append(counters.start.stat)
    boot = [next((line for line in text.splitlines() if line.startswith("btime")), None) for text in stats]
    return boot[0] is not None and boot[0] == boot[1] and len(parse_stat(stats[0])) == len(parse_stat(stats[1]))


def one_kernel(results: pd.DataFrame) -> bool:
    """Whether the run's host counters read one kernel under both roles: every row that says
    (`host_shared_kernel` set, a row with both agents) says so. A row that cannot say, such as an
    iperf3 reference cell (iperf3 reads no /proc, so it has no host columns), has no vote; a run
    where no row says is not called one kernel."""
    if "host_shared_kernel" not in results:
        return False
    known = results["host_shared_kernel"].dropna()
    return not known.empty and bool(known.astype(bool).all())
