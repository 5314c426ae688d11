"""Everything that can be checked before a cell runs, on both hosts at once, reported together."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import perfstat
from .config import Experiment
from .errors import HostError
from .hosts import Host, q
from .inventory import Inventory


@dataclass(frozen=True)
class Finding:
    host: str
    check: str
    ok: bool
    detail: str


@dataclass
class HostReport:
    role: str
    host: str
    findings: list[Finding] = field(default_factory=list)
    kernel: str = ""
    perf_events: dict[str, bool] = field(default_factory=dict)

    def add(self, check: str, ok: bool, detail: str) -> None:
        self.findings.append(Finding(self.host, check, ok, detail))


@dataclass
class Preflight:
    reports: list[HostReport]

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.reports for f in r.findings]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def perf_events(self, role: str) -> dict[str, bool]:
        return next((r.perf_events for r in self.reports if r.role == role), {})


def _check_host(host: Host, experiment: Experiment, inventory: Inventory) -> HostReport:
    report = HostReport(host.role, host.name)
    try:
        _run_checks(host, experiment, inventory, report)
    except HostError as exc:  # a host that stops answering is one finding, not the end of preflight
        report.add("reachable", False, str(exc))
    return report


def _run_checks(host: Host, experiment: Experiment, inventory: Inventory, report: HostReport) -> HostReport:
    timeout = experiment.timeouts.command
    workdir = host.spec.workdir
    basics = host.run(
        f"uname -r; mkdir -p {q(workdir)} && test -w {q(workdir)} && echo workdir-ok; "
        "command -v cc || echo no-cc; command -v perf >/dev/null && perf --version 2>&1 | head -n1 || echo no-perf; "
        "command -v tar >/dev/null || echo no-tar",
        timeout,
    )
    lines = basics.stdout.splitlines()
    report.kernel = lines[0] if lines else ""
    report.add("reachable", True, f"kernel {report.kernel}")
    report.add("workdir", "workdir-ok" in lines, workdir if "workdir-ok" in lines else f"cannot create or write {workdir}")
    report.add("compiler", "no-cc" not in lines, "cc found" if "no-cc" not in lines else "no `cc`: install gcc or clang")
    if "no-tar" in lines:
        report.add("tar", False, "no `tar`, needed to push the agent sources")
    perf_present = "no-perf" not in lines
    if experiment.perf.enabled:
        if not perf_present:
            report.add("perf", False, "no `perf`: install linux-perf, or set perf.enabled: false")
        else:
            report.perf_events, complaint = _probe_perf(host, experiment, timeout)
            if complaint:
                report.add("perf", False, f"perf stat refused the events: {complaint}")
                return _network_checks(host, experiment, inventory, report)
            counted = [e for e, ok in report.perf_events.items() if ok]
            missing = [e for e, ok in report.perf_events.items() if not ok]
            detail = f"counts {', '.join(counted) or 'nothing'}"
            if missing:
                detail += f"; not supported here (recorded as missing): {', '.join(missing)}"
            report.add("perf", bool(counted), detail)
    return _network_checks(host, experiment, inventory, report)


def _network_checks(host: Host, experiment: Experiment, inventory: Inventory, report: HostReport) -> HostReport:
    if host.role == "server":
        _check_server_network(host, experiment, inventory, report)
    else:
        _check_client_network(host, experiment, inventory, report)
    return report


def _probe_perf(host: Host, experiment: Experiment, timeout: float) -> tuple[dict[str, bool], str]:
    """Which requested events perf counts on this host, or perf's own complaint."""
    events = ",".join(experiment.perf.events)
    system = "-a " if experiment.perf.scope == "system" else ""
    # Counters through -o, so a warning perf prints on stderr can't be mistaken for a record.
    result = host.run(
        f"f=$(mktemp) && perf stat {system}-x, -o \"$f\" -e {q(events)} -- sleep 0.01 >/dev/null;"
        " rc=$?; cat \"$f\"; rm -f \"$f\"; exit $rc",
        timeout,
    )
    if not result.ok:
        return {}, " ".join((result.stdout + result.stderr).split())[:300] or f"exit status {result.exit_code}"
    try:
        counters = perfstat.parse_perf_csv(result.stdout)
    except perfstat.ParseError as exc:
        return {}, str(exc)

    def counted(event: str) -> bool:
        counter = counters.get(perfstat.canonical_event(event))
        return counter is not None and counter.value is not None

    return {event: counted(event) for event in experiment.perf.events}, ""


def _check_server_network(host: Host, experiment: Experiment, inventory: Inventory, report: HostReport) -> None:
    address, port = inventory.server.data_address, experiment.port
    result = host.run(
        f"ip -o addr show to {q(address)} | head -n1; echo @@; ss -Htln 'sport = :{port}' 2>/dev/null",
        experiment.timeouts.command,
    )
    local, _, listeners = result.stdout.partition("@@")
    report.add("data address", bool(local.strip()), address if local.strip() else f"{address} is not an address of this host")
    report.add("port", not listeners.strip(), f"{port} free" if not listeners.strip() else f"port {port} is already in use: {listeners.strip()}")


def _check_client_network(host: Host, experiment: Experiment, inventory: Inventory, report: HostReport) -> None:
    address = inventory.server.data_address
    result = host.run(f"ip -o route get {q(address)}", experiment.timeouts.command)
    route = " ".join(result.stdout.split())
    report.add("route to server", result.ok, route or result.stderr.strip() or f"no route to {address}")
    source = re.search(r"\bsrc (\S+)", route)
    if result.ok and source and source.group(1) != inventory.client.data_address:
        report.add("data address", False, f"traffic to {address} would leave from {source.group(1)}, "
                                          f"not the inventory's client data_address {inventory.client.data_address}")


def run_preflight(hosts: dict[str, Host], experiment: Experiment, inventory: Inventory) -> Preflight:
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = [pool.submit(_check_host, host, experiment, inventory) for host in hosts.values()]
        return Preflight([f.result() for f in futures])
