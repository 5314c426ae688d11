"""Everything that can be checked before a cell runs, on both hosts at once, reported together."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from typing import Callable, Iterable

from . import deploy, perfstat, workdir
from .config import Experiment
from .deploy import Builder, Toolchain
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
    toolchain: Toolchain | None = None
    cached_agent: bool = False  # an agent manifest for these sources is in the workdir

    def add(self, check: str, ok: bool, detail: str) -> None:
        self.findings.append(Finding(self.host, check, ok, detail))


@dataclass
class Preflight:
    reports: list[HostReport]
    # role -> where its agent can be built, in order (deploy.plan_builds)
    builds: dict[str, list[Builder]] = field(default_factory=dict)

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.reports for f in r.findings]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def perf_events(self, role: str) -> dict[str, bool]:
        return next((r.perf_events for r in self.reports if r.role == role), {})


def _check_host(host: Host, experiment: Experiment, inventory: Inventory, run_dirs: list[str]) -> HostReport:
    report = HostReport(host.role, host.name)
    try:
        _run_checks(host, experiment, inventory, report, run_dirs)
    except HostError as exc:  # a host that stops answering is one finding, not the end of preflight
        report.add("reachable", False, str(exc))
    return report


def _run_checks(host: Host, experiment: Experiment, inventory: Inventory, report: HostReport,
                run_dirs: list[str]) -> HostReport:
    timeout = experiment.timeouts.command
    basics = (
        'echo "@kernel $(uname -r)"; ' + deploy.TOOLCHAIN_PROBE + "; "
        'if command -v perf >/dev/null 2>&1; then echo "@perf $(perf --version 2>&1 | head -n 1)"; else echo "@noperf"; fi; '
        'command -v tar >/dev/null 2>&1 || echo "@notar"'
    )
    # One round trip: the read-only probes, then the workdir made and checked (workdir.py).
    found, stdout = workdir.check(
        host, timeout, dirs=["agents", "runs", *run_dirs], before=basics,
        then=f"[ -f agents/{deploy.source_hash()}/bin/manifest ] && echo @cached; true",
    )
    lines = stdout.splitlines()
    report.kernel = next((line[len("@kernel "):] for line in lines if line.startswith("@kernel ")), "")
    report.add("reachable", True, f"kernel {report.kernel}")
    if found.ok:
        workdir.adopt(host, found)
        report.add("workdir", True, found.workdir)
    else:
        report.add("workdir", False, found.describe())
    report.toolchain = deploy.parse_toolchain(stdout)
    report.cached_agent = "@cached" in found.output.splitlines()
    if "@notar" in lines:
        report.add("tar", False, "no `tar`, needed to push the agent")
    perf_present = "@noperf" not in lines
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


def _check_compilers(reports: list[HostReport], controller: Callable[[str], Toolchain | None]) -> dict[str, list[Builder]]:
    """Where each host's agent will come from: its own cc, else a static build elsewhere for its
    architecture; a host with neither (and no cached agent) stops the run here."""
    toolchains = {r.role: r.toolchain for r in reports if r.toolchain is not None}
    plans = deploy.plan_builds(toolchains, controller)
    for report in reports:
        tc = report.toolchain
        if tc is None:
            continue
        plan = plans.get(report.role, [])
        if plan and plan[0].where == report.role:
            report.add("compiler", True, tc.version or tc.cc or "cc")
        elif plan:
            first = plan[0]
            report.add("compiler", True, f"no `cc` here: the agent is built as a static {tc.arch} binary on the "
                                         f"{first.where} ({first.version or first.compiler}), pushed and checked")
        elif report.cached_agent:
            report.add("compiler", True, f"no compiler for {tc.arch or 'this host'} anywhere, but an agent for these "
                                         "sources is cached here (checked before use)")
        else:
            report.add("compiler", False, deploy.no_builder_advice(tc.arch))
    return plans


def run_preflight(hosts: dict[str, Host], experiment: Experiment, inventory: Inventory, run_ids: Iterable[str] = (),
                  controller: Callable[[str], Toolchain | None] | None = None) -> Preflight:
    """Every check on every host; `run_ids` name the folders under runs/ this run will use
    (created and checked with the workdir). Hosts leave with their workdir resolved."""
    run_dirs = [f"runs/{run_id}" for run_id in run_ids]
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = [pool.submit(_check_host, host, experiment, inventory, run_dirs) for host in hosts.values()]
        reports = [f.result() for f in futures]
    return Preflight(reports, _check_compilers(reports, controller or deploy.controller_toolchain))
