"""What each host is: gathered once per run and saved with it, so a result can be traced to
the kernel, CPU, NIC and settings that produced it."""

from __future__ import annotations

import json
import re
from typing import Any

from ..version import __version__
from .hosts import Host
from ..processes import shell_quote

SYSCTLS = (
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "net.core.optmem_max",
    "net.ipv4.tcp_congestion_control",
    "kernel.perf_event_paranoid",
)

_MARK = "@@@ "
UNKNOWN = "unknown"  # the section, and the facts key, that says which facts could not be read and why

# fact SECTION COMMAND...: the command's stdout in its section. If it cannot run or fails, a line of
# the `unknown` section says why: its first line on stderr (then SECTION is opened again, so that
# its lines keep coming). Stderr is read apart, so a warning never lands inside the facts.
_FACT = (f"fact() {{ section=$1; shift; "
         f"if ! command -v \"$1\" >/dev/null 2>&1; then printf '{_MARK}{UNKNOWN}\\n%s: %s not found\\n{_MARK}%s\\n' \"$section\" \"$1\" \"$section\"; return; fi; "
         f"{{ err=$(\"$@\" 2>&1 >&3 3>&-); rc=$?; }} 3>&1; "
         f"if [ $rc -ne 0 ]; then printf '{_MARK}{UNKNOWN}\\n%s: %s\\n{_MARK}%s\\n' \"$section\" "
         f"\"$(printf '%s' \"${{err:-exit status $rc}}\" | head -n 1)\" \"$section\"; fi; }}")
# The facts each section gives: one of them unknown is all of them unknown, each with the reason.
_COVERS = {
    "lscpu": ("cpu_model", "architecture", "cores", "threads_per_core", "numa_nodes", "numa", "caches"),
    "link": ("nic.addresses", "nic.mtu", "nic.kind"),
    "ethtool_i": ("nic.driver", "nic.driver_version", "nic.firmware", "nic.bus"),
    "ethtool": ("nic.speed", "nic.speed_mbit", "nic.duplex"),
    "ethtool_k": ("nic.offloads",),
    "qdisc": ("nic.qdisc", "nic.qdisc_rate_mbit"),
    "cpufreq": ("cpu_freq_driver", "cpu_governor"),
}
_CPUFREQ = "/sys/devices/system/cpu/cpu0/cpufreq"
# What a data interface's name may hold (Linux allows at most 15 bytes, no slash or space); any other
# name the host gives is not passed to a command, and its NIC facts are unknown.
_IFACE = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")
_IFACE_SHELL = "''|????????????????*|*[!A-Za-z0-9_.:@-]*"
# Root qdiscs that limit the rate, and where their JSON (`tc -j qdisc show`) keeps it, in bytes/s.
_RATE_QDISCS = ("tbf", "netem", "cake")


def _script(data_iface_command: str) -> str:
    sysctls = " ".join(shell_quote(s) for s in SYSCTLS)
    # Sysctls straight from /proc/sys: no `sysctl` binary, which a non-root PATH may not reach.
    read_sysctls = (f"for k in {sysctls}; do f=/proc/sys/$(printf '%s' \"$k\" | tr . /); "
                    f"if v=$(cat \"$f\" 2>/dev/null); then printf '%s=%s\\n' \"$k\" \"$v\"; "
                    f"else printf '{_MARK}{UNKNOWN}\\nsysctls.%s: %s is not readable\\n{_MARK}sysctl\\n' \"$k\" \"$f\"; fi; done")
    return "; ".join(
        [
            _FACT,
            f"echo '{_MARK}hostname'; hostname",
            f"echo '{_MARK}kernel'; uname -srvm",
            f"echo '{_MARK}lscpu'; fact lscpu lscpu -J",
            f"echo '{_MARK}meminfo'; grep -E '^MemTotal' /proc/meminfo",
            f"echo '{_MARK}sysctl'; {read_sysctls}",
            # The frequency driver and governor (intel_pstate, acpi-cpufreq; performance, powersave):
            # a VM or a fixed clock has none, which is said, not left blank.
            f"echo '{_MARK}cpufreq'; if [ -r {_CPUFREQ}/scaling_driver ]; then "
            f"printf 'driver=%s\\ngovernor=%s\\n' \"$(cat {_CPUFREQ}/scaling_driver)\" "
            f"\"$(cat {_CPUFREQ}/scaling_governor 2>/dev/null)\"; "
            f"else printf '{_MARK}{UNKNOWN}\\ncpufreq: no {_CPUFREQ} (no frequency driver: a VM or a fixed clock)\\n'; fi",
            f"iface=$({data_iface_command})",
            f"echo '{_MARK}iface'; echo \"$iface\"",
            # The name is checked before any command sees it; a bad one leaves every NIC fact unknown.
            f"case \"$iface\" in {_IFACE_SHELL}) printf '{_MARK}{UNKNOWN}\\n%s: no valid data interface name\\n' "
            f"link ethtool_i ethtool ethtool_k qdisc;; *) "
            f"echo '{_MARK}link'; fact link ip -d -j addr show dev \"$iface\"; "
            f"echo '{_MARK}ethtool_i'; fact ethtool_i ethtool -i \"$iface\"; "
            f"echo '{_MARK}ethtool'; fact ethtool ethtool \"$iface\"; "
            f"echo '{_MARK}ethtool_k'; fact ethtool_k ethtool -k \"$iface\"; "
            f"echo '{_MARK}qdisc'; fact qdisc tc -j qdisc show dev \"$iface\";; esac",
            f"echo '{_MARK}perf'; perf --version 2>/dev/null",
            f"echo '{_MARK}cc'; cc --version 2>/dev/null | head -n 1",
        ]
    )


def data_interface_command(role: str, server_data_address: str) -> str:
    """The shell that names the interface carrying the data: where the server's address lives,
    or the client's route to it."""
    if role == "server":
        return f"ip -o addr show to {shell_quote(server_data_address)} | awk '{{print $2; exit}}'"
    return f"ip -o route get {shell_quote(server_data_address)} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'"


def _sections(text: str) -> dict[str, str]:
    """Each section's lines; a section opened again (as `unknown` is) goes on where it was."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith(_MARK):
            current = line[len(_MARK):].strip()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v).strip() for k, v in sections.items()}


def _colon_pairs(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            pairs[key.strip()] = value.strip()
    return pairs


def _lscpu(text: str) -> dict[str, str]:
    try:
        rows = json.loads(text)["lscpu"]
    except (ValueError, KeyError, TypeError):
        return {}
    return {row["field"].rstrip(":"): row["data"] for row in rows if isinstance(row, dict) and "field" in row}


def _link_kind(link: dict) -> str | None:
    kind = (link.get("linkinfo") or {}).get("info_kind")
    if isinstance(kind, str) and kind:
        return kind
    return {"loopback": "loopback", "ether": "device"}.get(str(link.get("link_type")))


def _speed_mbit(text: str | None) -> float | None:
    """ethtool's `Speed: 25000Mb/s` in Mbit/s; None where the NIC does not say (`Unknown!`)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*Mb/s", (text or "").strip())
    return float(match.group(1)) if match else None


def _root_qdisc(text: str) -> tuple[str | None, float | None, str | None]:
    """The root qdisc's kind and, for one that limits the rate (tbf, netem with rate, cake with
    bandwidth), that rate in Mbit/s, from `tc -j qdisc show dev IFACE`; the third value says why
    the kind is unknown, if it is."""
    try:
        qdiscs = json.loads(text)
    except ValueError:
        return None, None, "tc printed no JSON (too old for -j?)"
    root = next((q for q in qdiscs if isinstance(q, dict) and q.get("root")), None) if isinstance(qdiscs, list) else None
    if root is None or not isinstance(root.get("kind"), str):
        return None, None, "tc showed no root qdisc"
    options = root.get("options") if isinstance(root.get("options"), dict) else {}
    rate = options.get("bandwidth") if root["kind"] == "cake" else options.get("rate")
    if isinstance(rate, dict):  # netem keeps its rate in an object of its own
        rate = rate.get("rate")
    if root["kind"] not in _RATE_QDISCS or not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0:
        return root["kind"], None, None
    return root["kind"], rate * 8 / 1e6, None


def parse_facts(text: str) -> dict[str, Any]:
    s = _sections(text)
    cpu = _lscpu(s.get("lscpu", ""))
    mem = re.search(r"(\d+)\s*kB", s.get("meminfo", ""))
    sysctls = dict(line.split("=", 1) for line in s.get("sysctl", "").splitlines() if "=" in line)
    cpufreq = dict(line.split("=", 1) for line in s.get("cpufreq", "").splitlines() if "=" in line)
    link: dict[str, Any] = {}
    try:
        parsed = json.loads(s.get("link") or "[]")
        link = parsed[0] if parsed else {}
    except ValueError:
        pass
    driver = _colon_pairs(s.get("ethtool_i", ""))
    settings = _colon_pairs(s.get("ethtool", ""))
    offloads = {k: v.split()[0] for k, v in _colon_pairs(s.get("ethtool_k", "")).items() if not k.startswith("Features")}
    iface = s.get("iface") or None
    if iface is not None and not _IFACE.fullmatch(iface):
        iface = None
    unknown = {}
    qdisc, qdisc_rate, qdisc_unknown = _root_qdisc(s["qdisc"]) if s.get("qdisc") else (None, None, None)
    if qdisc_unknown:
        unknown.update({key: qdisc_unknown for key in _COVERS["qdisc"]})
    for line in s.get(UNKNOWN, "").splitlines():
        name, sep, why = line.partition(": ")
        if sep:
            for key in _COVERS.get(name.strip(), (name.strip(),)):
                unknown[key] = why.strip() or "no output"
    return {
        "hostname": s.get("hostname", ""),
        "kernel": s.get("kernel", ""),
        "cpu_model": cpu.get("Model name"),
        "architecture": cpu.get("Architecture"),
        "cores": int(cpu["CPU(s)"]) if cpu.get("CPU(s)", "").isdigit() else None,
        "threads_per_core": cpu.get("Thread(s) per core"),
        "cpu_freq_driver": cpufreq.get("driver") or None,
        "cpu_governor": cpufreq.get("governor") or None,
        "numa_nodes": cpu.get("NUMA node(s)"),
        "numa": {k: v for k, v in cpu.items() if k.startswith("NUMA node") and "CPU" in k},
        "caches": {k: v for k, v in cpu.items() if k.endswith("cache")},
        "memory_bytes": int(mem.group(1)) * 1024 if mem else None,
        "sysctls": sysctls,
        "nic": {
            "interface": iface,
            "addresses": [a.get("local") for a in link.get("addr_info", []) if a.get("local")],
            "mtu": link.get("mtu"),
            # What the data crossed: a software link's kind (veth, bond, vlan...), loopback, or a
            # device (a NIC, real or a VM's), so that any change of it is a change of link.
            "kind": _link_kind(link),
            "driver": driver.get("driver"),
            "driver_version": driver.get("version"),
            "firmware": driver.get("firmware-version"),
            "bus": driver.get("bus-info"),
            "speed": settings.get("Speed"),
            "speed_mbit": _speed_mbit(settings.get("Speed")),
            "duplex": settings.get("Duplex"),
            "offloads": offloads,
            # The root qdisc (`noqueue`, `fq_codel`, `tbf`...) and the rate it holds the link to, if any.
            "qdisc": qdisc,
            "qdisc_rate_mbit": qdisc_rate,
        },
        "perf_version": s.get("perf") or None,
        "compiler": s.get("cc") or None,
        "orchestrate_version": __version__,
        # Facts that could not be read, and why ("nic.driver": "ethtool not found"): they are
        # unknown, never blank, and compare never counts them as a change.
        UNKNOWN: unknown,
    }


def gather(host: Host, server_data_address: str, timeout: float) -> dict[str, Any]:
    result = host.run(_script(data_interface_command(host.role, server_data_address)), timeout)
    facts = parse_facts(result.stdout)
    facts["role"] = host.role
    facts["ssh_target"] = host.spec.label
    facts["data_address"] = host.spec.data_address
    return facts
