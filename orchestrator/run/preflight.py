"""Everything that can be checked before a cell runs, on both hosts at once, reported together."""

from __future__ import annotations

import contextvars
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from typing import Callable, Iterable

from ..remote import deploy, workdir
from ..rows import perfstat
from . import iperf3
from ..experiment.config import Experiment
from ..remote.deploy import Builder, Toolchain
from ..errors import ConfigError, HostError, OrchestrateError, PreflightError
from ..remote.hosts import Host, connect
from ..roles import ROLES
from ..processes import shell_quote
from .arming import warmup_to_arm
from ..experiment.inventory import Inventory


@dataclass(frozen=True)
class Finding:
    host: str
    check: str
    ok: bool
    detail: str


@dataclass
class HostChecks:
    role: str
    host: str
    findings: list[Finding] = field(default_factory=list)
    kernel: str = ""
    perf_events: dict[str, bool] = field(default_factory=dict)
    perf: PerfCheck | None = None
    toolchain: Toolchain | None = None
    cached_agent: bool = False  # an agent manifest for these sources is in the workdir

    def add(self, check: str, ok: bool, detail: str) -> None:
        self.findings.append(Finding(self.host, check, ok, detail))


@dataclass
class Preflight:
    per_host: list[HostChecks]
    # role -> where its agent can be built, in order (deploy.plan_builds)
    builds: dict[str, list[Builder]] = field(default_factory=dict)

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.per_host for f in r.findings]

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    def perf_events(self, role: str) -> dict[str, bool]:
        return next((r.perf_events for r in self.per_host if r.role == role), {})

    def perf_check(self, role: str) -> PerfCheck | None:
        return next((r.perf for r in self.per_host if r.role == role), None)


def _first_words(data: bytes, limit: int = 60) -> str:
    """The first line with anything printable in it, as one short line of text."""
    for line in data.decode("utf-8", errors="replace").splitlines():
        text = "".join(c if c.isprintable() else " " for c in line).strip()
        if text:
            return text if len(text) <= limit else text[:limit - 1] + "…"
    return ""


SLOW_STARTUP = 0.2  # seconds for a command's session to start: from here on, preflight says so


def login_shell(printed: dict[str, bytes], startup: float, warmup: float) -> str:
    """One line for a login shell whose start-up files print (where, and the first words), or
    are slow (how slow, and what that costs the cells)."""
    parts = []
    streams = [stream for stream in ("stdout", "stderr") if printed.get(stream)]
    if streams:
        first = next(_first_words(printed[stream]) for stream in streams)
        parts.append(f"the account's start-up files print on {' and '.join(streams)} ({first!r}); "
                     "set aside, never read as output")
    if startup >= SLOW_STARTUP:
        needed = warmup_to_arm(startup)
        parts.append(f"a command's session takes {startup:.2f} s to start (the start-up files run for each); "
                     + ("each cell's commands start during the previous cell's warm-up" if warmup >= needed else
                        f"with warm-up {warmup:g} s each cell waits for its own (a warm-up of {needed:.1f} s would hide it)"))
    return "; ".join(parts)


def _check_host(host: Host, experiment: Experiment, inventory: Inventory, run_dirs: list[str]) -> HostChecks:
    checks = HostChecks(host.role, host.name)
    try:
        _run_checks(host, experiment, inventory, checks, run_dirs)
    except HostError as exc:  # a host that stops answering is one finding, not the end of preflight
        checks.add("reachable", False, str(exc))
    return checks


def _run_checks(host: Host, experiment: Experiment, inventory: Inventory, checks: HostChecks,
                run_dirs: list[str]) -> HostChecks:
    timeout = experiment.timeouts.command
    basics = (
        'echo "@kernel $(uname -r)"; ' + deploy.TOOLCHAIN_PROBE + "; "
        'if command -v perf >/dev/null 2>&1; then echo "@perf $(perf --version 2>&1 | head -n 1)"; else echo "@noperf"; fi; '
        'command -v tar >/dev/null 2>&1 || echo "@notar"'
    )
    if experiment.reference:  # iperf3 (and what runs it) on both hosts
        basics += "; " + iperf3.preflight_probe(experiment, host.role)
    uring_modes = planned_uring_modes(experiment, host.role)
    if uring_modes:
        basics += "; " + URING_PROBE
    # One round trip: the read-only probes, then the workdir made and checked (workdir.py).
    found, stdout = workdir.check(
        host, timeout, dirs=["agents", "runs", *run_dirs], before=basics,
        then=f'[ -f "agents/{deploy.source_hash()}-$(uname -m)/bin/manifest" ] && echo @cached; '
             + workdir.room_probe() + "; true",
    )
    lines = stdout.splitlines()
    checks.kernel = next((line[len("@kernel "):] for line in lines if line.startswith("@kernel ")), "")
    checks.add("reachable", True, f"kernel {checks.kernel}")
    if stream_receiver_role(experiment) in (None, host.role) and "zerocopy" in experiment.dimension("receive"):
        problem = zerocopy_receive_problem(checks.kernel)
        checks.add("zero-copy receive", problem is None, problem or f"TCP_ZEROCOPY_RECEIVE (kernel {checks.kernel})")
    for mode in uring_modes:
        registers = mode == "io_uring_zc" and "registered" in experiment.dimension("uring_buffers")
        pinned = max(pinned_bytes(s) * t for s in experiment.dimension("message_size")
                     for t in experiment.dimension("threads")) if registers else 0
        problem = uring_problem(mode, checks.kernel, next((line for line in lines if line.startswith("@uring ")), ""), pinned)
        checks.add(mode, problem is None, problem or f"{URING_NEEDS[mode][1]} (kernel {checks.kernel}), io_uring enabled")
    if host.shell_output or host.shell_startup >= SLOW_STARTUP:
        checks.add("login shell", True, login_shell(host.shell_output, host.shell_startup, experiment.warmup))
    if found.ok:
        workdir.adopt(host, found)
        free_kib = workdir.parse_room(found.output)
        checks.add("workdir", True, found.workdir + ("" if free_kib is None else f" ({free_kib} KiB free)"))
        _check_room(host, experiment, checks, free_kib)
    else:
        checks.add("workdir", False, found.describe())
    checks.toolchain = deploy.parse_toolchain(stdout)
    checks.cached_agent = "@cached" in found.output.splitlines()
    if "@notar" in lines:
        checks.add("tar", False, "no `tar`, needed to push the agent")
    for ok, detail in iperf3.preflight_findings(experiment, lines):
        checks.add("iperf3", ok, detail)
    perf_present = "@noperf" not in lines
    if experiment.perf.enabled:
        if not perf_present:
            checks.add("perf", False, "no `perf`: install linux-perf, or set perf.enabled: false")
        else:
            checks.perf = check = probe_perf(host, experiment, timeout)
            checks.perf_events = {event: reach != perfstat.NOTHING for event, reach in check.counts.items()}
            for ok, detail in check.findings(experiment.perf.scope):
                checks.add("perf", ok, detail)
    return _network_checks(host, experiment, inventory, checks)


# TCP_ZEROCOPY_RECEIVE came in Linux 4.18; the recv_skip_hint the agent reads came with it.
ZEROCOPY_RECEIVE_KERNEL = (4, 18)


def stream_receiver_role(experiment: Experiment) -> str | None:
    """The role that receives the stream cells, or None when the sender varies (both do)."""
    senders = set(experiment.dimension("sender"))
    return None if len(senders) > 1 else ("client" if senders == {"server"} else "server")


# What each io_uring send mode needs of the sending host's kernel: the agent waits with
# IORING_ENTER_EXT_ARG (5.11); io_uring_zc sends with IORING_OP_SEND_ZC (6.0) and asks for the
# copied flag with IORING_SEND_ZC_REPORT_USAGE (6.2), without which a copy would pass as zero-copy.
URING_NEEDS = {
    "io_uring": ((5, 11), "io_uring with IORING_FEAT_EXT_ARG (Linux 5.11)"),
    "io_uring_zc": ((6, 2), "IORING_OP_SEND_ZC (Linux 6.0) with IORING_SEND_ZC_REPORT_USAGE (Linux 6.2)"),
}
# kernel.io_uring_disabled (Linux 6.6; absent before: enabled), kernel.io_uring_group, the
# account's uid and groups: whether this account may create a ring.
URING_PROBE = ('echo "@uring $(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo -) '
               '$(cat /proc/sys/kernel/io_uring_group 2>/dev/null || echo -) $(ulimit -l) $(id -u) $(id -G)"')
# The agent's ring of message buffers (agents/worker.c): 4 MiB of them, 2 to 256. With
# uring_buffers: registered io_uring_zc registers all of it with the ring, which counts against
# RLIMIT_MEMLOCK for an account without CAP_IPC_LOCK and fails outright past it. (Plain io_uring_zc
# pins only what is in flight; past the limit its sends wait for notifications, counted as ENOBUFS.)
RING_BYTES = 4 << 20
PAGE = 4096


def pinned_bytes(size: int) -> int:
    """The memory one io_uring_zc connection may pin: its buffer ring, each buffer in whole pages."""
    slots = min(max(RING_BYTES // size, 2), 256)
    return slots * (-(-size // PAGE) + 1) * PAGE


def planned_uring_modes(experiment: Experiment, role: str) -> list[str]:
    """The io_uring modes whose cells make this role send: both roles in rr, the sender in stream."""
    modes = [m for m in experiment.dimension("mode") if m in URING_NEEDS]
    workloads = set(experiment.dimension("workload"))
    sends = "rr" in workloads or ("stream" in workloads and role in experiment.dimension("sender"))
    return modes if sends else []


def uring_problem(mode: str, kernel: str, probe: str, pinned: int = 0) -> str | None:
    """Why a host with this `uname -r` and URING_PROBE line cannot send in `mode`, or None;
    `pinned`: the bytes one run of it pins at most (all connections; pinned_bytes)."""
    (need, what) = URING_NEEDS[mode]
    match = re.match(r"(\d+)\.(\d+)", kernel)
    if not match:
        return f"cannot tell the kernel version from `uname -r` ({kernel!r}); {mode} needs {what}"
    if (int(match[1]), int(match[2])) < need:
        return f"kernel {kernel} is too old for {mode}: it needs {what}; leave {mode} out of the modes, or use another host"
    words = probe.split()[1:]
    if len(words) < 4:
        return f"could not read kernel.io_uring_disabled, the locked-memory limit and the account's ids ({probe!r})"
    disabled, group, memlock, uid, groups = words[0], words[1], words[2], words[3], set(words[4:])
    if pinned and uid != "0" and memlock.isdigit() and int(memlock) * 1024 < pinned:
        return (f"{mode} with uring_buffers: registered registers up to {pinned >> 20} MiB of message buffers here "
                f"(about 4 MiB per connection), but this "
                f"account (uid {uid}) may lock {memlock} KiB (ulimit -l): raise its memlock limit "
                "(limits.conf, or LimitMEMLOCK for a service), or run as root")
    if disabled in ("-", "0"):
        return None
    fix = "`sysctl -w kernel.io_uring_disabled=0`, or another host"
    if disabled == "1":
        if uid == "0" or (group not in ("-", "-1") and group in groups):
            return None
        allowed = f"members of group {group} and " if group not in ("-", "-1") else ""
        return (f"io_uring is limited to {allowed}privileged processes here (kernel.io_uring_disabled=1) and this "
                f"account (uid {uid}) is not one: {mode} cannot run; "
                + (f"add the account to group {group}, or " if allowed else "") + fix)
    return f"io_uring is disabled on this host (kernel.io_uring_disabled={disabled}): {mode} cannot run; {fix}"


def zerocopy_receive_problem(kernel: str) -> str | None:
    """Why a host with this `uname -r` cannot receive with TCP_ZEROCOPY_RECEIVE, or None."""
    match = re.match(r"(\d+)\.(\d+)", kernel)
    if not match:
        return f"cannot tell the kernel version from `uname -r` ({kernel!r}); TCP_ZEROCOPY_RECEIVE needs Linux 4.18"
    if (int(match[1]), int(match[2])) < ZEROCOPY_RECEIVE_KERNEL:
        return (f"kernel {kernel} has no TCP_ZEROCOPY_RECEIVE (Linux 4.18 and later): receive: zerocopy cannot run "
                "here; use receive: copy, or another host")
    return None


def _check_room(host: Host, experiment: Experiment, checks: HostChecks, free_kib: int | None) -> None:
    """The workdir's free room against what a few cells' raw files need (workdir.room_needed_kib)."""
    if free_kib is None:
        return  # df could not tell (no df, an odd filesystem): the cells will say if it fills
    cell, needed = workdir.cell_files_kib(experiment), workdir.room_needed_kib(experiment)
    if free_kib < needed:
        checks.add("room", False, f"{workdir.no_room(host.name, host.spec.workdir, free_kib)}: a cell's raw files "
                                  f"take about {cell} KiB and stay there for the run; at least {needed} KiB are needed. "
                                  "Free some room there, or choose another `workdir:` in the inventory")


def _network_checks(host: Host, experiment: Experiment, inventory: Inventory, checks: HostChecks) -> HostChecks:
    if host.role == "server":
        _check_server_network(host, experiment, inventory, checks)
    else:
        _check_client_network(host, experiment, inventory, checks)
    return checks


# The highest kernel.perf_event_paranoid at which an account without CAP_PERFMON may still
# count the kernel for its own processes (perf_allow_kernel refuses above 1), and count whole
# CPUs as `perf stat -a` does (perf_allow_cpu refuses above 0): Documentation/admin-guide/
# sysctl/kernel.rst and perf-security.rst. Some distribution kernels take 3 or 4: no unprivileged
# perf at all, not even user space.
PARANOID_FOR_KERNEL = 1
PARANOID_FOR_SYSTEM = 0
_MARK = "@@orchestrate-perf "

# The agent under `sudo perf` runs as the SSH user again: setpriv (util-linux) takes back its
# uid, gid and groups and a clean environment, then execs the agent. The remote shell fills in
# the ids, so nothing about the account has to be known in advance.
DROP_TO_USER = ["setpriv", '--reuid="$(id -u)"', '--regid="$(id -g)"', "--init-groups", "--reset-env", "--"]


def perf_prefix(access: str) -> list[str]:
    """How perf is started on a host: as the SSH user, or as root through a sudo that never
    asks for a password (-n: it fails at once instead, as Ansible's become does)."""
    return ["sudo", "-n", "perf"] if access == "sudo" else ["perf"]


@dataclass
class PerfCheck:
    """What perf counts on one host, per requested event, run the way the cells will run it."""

    access: str                 # the inventory's perf_access
    paranoid: int | None        # kernel.perf_event_paranoid; None if unreadable
    uid: int | None             # the SSH user's uid (root is not bound by the paranoid level)
    counts: dict[str, str] = field(default_factory=dict)     # event as requested -> perfstat.Reach
    narrowed: list[str] = field(default_factory=list)        # events perf could count in user space only
    complaint: str = ""         # why perf, setpriv or sudo counted nothing at all
    sudo_refused: bool = False
    user: str = "USER"          # for the sudoers line a fix names
    perf_path: str = "/usr/bin/perf"

    def to_json(self) -> dict[str, object]:
        return {"perf_access": self.access, "perf_event_paranoid": self.paranoid, "uid": self.uid,
                "counts": self.counts, "narrowed_to_user_space": self.narrowed, "problem": self.complaint or None}

    def setting(self) -> str:
        paranoid = "unreadable" if self.paranoid is None else str(self.paranoid)
        return f"kernel.perf_event_paranoid={paranoid}, uid {'?' if self.uid is None else self.uid}"

    def capability_fix(self) -> str:
        """The way without root from the kernel's perf-security.rst: a perf_users group whose
        members run a perf binary given CAP_PERFMON (Linux 5.8+) and friends; no sudo at all."""
        return (f"without root: a perf_users group with perf given capabilities "
                f"(`groupadd perf_users; chgrp perf_users {self.perf_path}; chmod o-rwx {self.perf_path}; "
                f"setcap cap_perfmon,cap_sys_ptrace,cap_syslog=ep {self.perf_path}; usermod -aG perf_users {self.user}`, "
                "setcap on the perf binary itself, not a wrapper script; see the kernel's "
                "Documentation/admin-guide/perf-security.rst), then `perf_access: direct` works for members")

    def sudo_fix(self) -> str:
        return ("`perf_access: sudo` with a NOPASSWD sudoers rule for perf; mind that this hands out root: "
                "`sudo perf stat -- /bin/sh` is a root shell")

    def fixes(self, scope: str, user_only_helps: bool = True) -> str:
        level = PARANOID_FOR_SYSTEM if scope == "system" else PARANOID_FOR_KERNEL
        fixes = [self.capability_fix(),
                 f"`sysctl -w kernel.perf_event_paranoid={level}` on this host"
                 + (" (perf.scope: system counts whole CPUs: 0 or -1)" if scope == "system" else " (or lower)"),
                 self.sudo_fix()]
        if scope != "system" and user_only_helps:
            fixes.append("`perf_access: user-only` to accept user-space counts, labelled so in the results")
        return "; or ".join(fixes)

    def _too_paranoid(self, scope: str) -> bool:
        if self.access == "sudo" or self.uid == 0 or self.paranoid is None:
            return False
        return self.paranoid > (PARANOID_FOR_SYSTEM if scope == "system" else PARANOID_FOR_KERNEL)

    def findings(self, scope: str) -> list[tuple[bool, str]]:
        """(ok, detail) lines for the preflight table: what each event counts here, and any
        problem with its fix named."""
        if self.sudo_refused:
            return [(False, f"perf_access: sudo, but {self.complaint}. Better, {self.capability_fix()}. "
                            f"Else let {self.user} run perf without a password "
                            f"(`{self.user} ALL=(root) NOPASSWD: {self.perf_path}` in a file under /etc/sudoers.d/, "
                            "written with visudo -f); mind that this hands out root, as `sudo perf stat -- /bin/sh` "
                            "is a root shell. Or use perf_access: user-only")]
        if self.complaint:
            detail = f"perf stat refused the events ({self.setting()}, perf_access: {self.access}): {self.complaint}"
            if self._too_paranoid(scope):
                # perf refused even user-space counting: accepting user-only counts cannot help.
                detail = f"{detail.rstrip('. ')}. Fix: {self.fixes(scope, user_only_helps=False)}"
            return [(False, detail)]
        by_reach: dict[str, list[str]] = {}
        for event, reach in self.counts.items():
            by_reach.setdefault(reach, []).append(event)
        parts = [f"{label}: {', '.join(by_reach[reach])}" for reach, label in (
            (perfstat.USER_AND_KERNEL, "kernel and user"), (perfstat.USER_ONLY, "user space only"),
            (perfstat.KERNEL_ONLY, "kernel only"), (perfstat.NOTHING, "nothing")) if reach in by_reach]
        findings = [(bool(set(by_reach) - {perfstat.NOTHING}),
                     f"counts {'; '.join(parts)} ({self.setting()}, perf_access: {self.access})")]
        if self.narrowed and self.access == "direct":
            user = [e for e in self.narrowed if self.counts[e] == perfstat.USER_ONLY]
            lost = [e for e in self.narrowed if self.counts[e] == perfstat.NOTHING]
            what = []
            if user:
                what.append(f"{', '.join(user)} would leave out the kernel, where the copies happen")
            if lost:
                what.append(f"{', '.join(lost)} (counted in the kernel) would count nothing")
            findings.append((False, f"perf may count user space only here: {'; '.join(what)}. "
                                    f"Fix: {self.fixes(scope)}"))
        return findings


def probe_perf(host: Host, experiment: Experiment, timeout: float) -> PerfCheck:
    """Run perf on the host the way a cell will (same access, scope and events) around a short
    sleep, reading kernel.perf_event_paranoid and the uid in the same round trip."""
    access = host.spec.perf_access
    system = "-a " if experiment.perf.scope == "system" else ""
    workload = " ".join(DROP_TO_USER) + " sleep 0.01" if access == "sudo" else "sleep 0.01"
    setpriv = f"command -v setpriv >/dev/null || echo {_MARK}no-setpriv; " if access == "sudo" else ""
    # Counters through -o, so a warning on stderr can't be mistaken for a record, into a file
    # the user made first, so a root perf writes into a file the user owns. No stdin for sudo.
    result = host.run(
        f"echo {_MARK}paranoid $(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null); echo {_MARK}uid $(id -u); "
        f"echo {_MARK}user $(id -un); echo {_MARK}perf $(command -v perf); "
        f"{setpriv}f=$(mktemp) && {' '.join(perf_prefix(access))} stat {system}-x, -o \"$f\" "
        f"-e {shell_quote(','.join(experiment.perf.events))} -- {workload} </dev/null >/dev/null; "
        f"rc=$?; echo {_MARK}rc $rc; cat \"$f\"; rm -f \"$f\"",
        timeout,
    )
    return classify_probe(result.stdout, result.stderr, access, experiment.perf.events)


def _int(text: str | None) -> int | None:
    try:
        return int(text or "")
    except ValueError:
        return None


_SUDO_PASSWORD = re.compile(r"^sudo: (a password is required|a terminal is required)", re.MULTILINE)
_SUDO_MISSING = re.compile(r"sudo: (not found|command not found)")
_SUDO_SAYS = re.compile(r"^(sudo: .*|Sorry, user .*)$", re.MULTILINE)


def classify_probe(stdout: str, stderr: str, access: str, events: list[str]) -> PerfCheck:
    """What the probe's output says perf counts, per requested event."""
    marks: dict[str, str] = {}
    perf_lines = []
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            key, _, value = line[len(_MARK):].partition(" ")
            marks[key] = value.strip()
        else:
            perf_lines.append(line)
    check = PerfCheck(access, _int(marks.get("paranoid")), _int(marks.get("uid")),
                      user=marks.get("user") or "USER", perf_path=marks.get("perf") or "/usr/bin/perf")
    if "no-setpriv" in marks:
        check.complaint = "no `setpriv` (util-linux), which runs the agent as the SSH user under `sudo perf`"
        return check
    if marks.get("rc") != "0":
        if access == "sudo" and (_SUDO_MISSING.search(stderr) or _SUDO_SAYS.search(stderr)):
            check.sudo_refused = True
            if _SUDO_MISSING.search(stderr):
                check.complaint = "`sudo` is not installed"
            elif _SUDO_PASSWORD.search(stderr):
                check.complaint = "`sudo -n perf` would ask for a password"
            else:
                check.complaint = f"sudo refused: {' '.join(_SUDO_SAYS.findall(stderr))[:200]}"
            return check
        said = " ".join(stderr.split())
        check.complaint = (said[:240] + "…" if len(said) > 240 else said) or f"exit status {marks.get('rc') or 'unknown'}"
        return check
    try:
        counters = perfstat.parse_perf_csv("\n".join(perf_lines))
    except perfstat.ParseError as exc:
        check.complaint = str(exc)
        return check
    resolved = perfstat.resolve(counters, events)
    for event in events:
        found = resolved[perfstat.canonical_event(event)]
        check.counts[event] = found.reach
        if found.narrowed:
            check.narrowed.append(event)
    return check


def _check_server_network(host: Host, experiment: Experiment, inventory: Inventory, checks: HostChecks) -> None:
    address, port = inventory.server.data_address, experiment.port
    result = host.run(
        f"ip -o addr show to {shell_quote(address)} | head -n1; echo @@; ss -Htln 'sport = :{port}' 2>/dev/null",
        experiment.timeouts.command,
    )
    local, _, listeners = result.stdout.partition("@@")
    checks.add("data address", bool(local.strip()), address if local.strip() else f"{address} is not an address of this host")
    checks.add("port", not listeners.strip(), f"{port} free" if not listeners.strip() else f"port {port} is already in use: {listeners.strip()}")


def _check_client_network(host: Host, experiment: Experiment, inventory: Inventory, checks: HostChecks) -> None:
    address = inventory.server.data_address
    result = host.run(f"ip -o route get {shell_quote(address)}", experiment.timeouts.command)
    route = " ".join(result.stdout.split())
    checks.add("route to server", result.ok, route or result.stderr.strip() or f"no route to {address}")
    source = re.search(r"\bsrc (\S+)", route)
    if result.ok and source and source.group(1) != inventory.client.data_address:
        checks.add("data address", False, f"traffic to {address} would leave from {source.group(1)}, "
                                          f"not the inventory's client data_address {inventory.client.data_address}")


def _check_compilers(per_host: list[HostChecks], controller: Callable[[str], Toolchain | None]) -> dict[str, list[Builder]]:
    """Where each host's agent will come from: its own cc, else a static build elsewhere for its
    architecture; a host with neither (and no cached agent) stops the run here."""
    toolchains = {r.role: r.toolchain for r in per_host if r.toolchain is not None}
    plans = deploy.plan_builds(toolchains, controller)
    for checks in per_host:
        tc = checks.toolchain
        if tc is None:
            continue
        plan = plans.get(checks.role, [])
        if plan and plan[0].where == checks.role:
            checks.add("compiler", True, tc.version or tc.cc or "cc")
        elif plan:
            first = plan[0]
            checks.add("compiler", True, f"no `cc` here: the agent is built as a static {tc.arch} binary on the "
                                         f"{first.where} ({first.version or first.compiler}), pushed and checked")
        elif checks.cached_agent:
            checks.add("compiler", True, f"no compiler for {tc.arch or 'this host'} anywhere, but an agent for these "
                                         "sources is cached here (checked before use)")
        else:
            checks.add("compiler", False, deploy.no_builder_advice(tc.arch))
    return plans


def run_preflight(hosts: dict[str, Host], experiment: Experiment, inventory: Inventory, run_ids: Iterable[str] = (),
                  controller: Callable[[str], Toolchain | None] | None = None) -> Preflight:
    """Every check on every host; `run_ids` name the folders under runs/ this run will use
    (created and checked with the workdir). Hosts leave with their workdir resolved."""
    run_dirs = [f"runs/{run_id}" for run_id in run_ids]
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        # copy_context: the checks log for the pair that runs them (run.log's pair tag).
        futures = [pool.submit(contextvars.copy_context().run, _check_host, host, experiment, inventory, run_dirs) for host in hosts.values()]
        per_host = [f.result() for f in futures]
    return Preflight(per_host, _check_compilers(per_host, controller or deploy.controller_toolchain))


# ---------------------------------------------------------------------------- reaching the hosts


def connect_hosts(inventory: Inventory, timeout: float) -> dict[str, Host]:
    """Both hosts at once; every host that can't be reached is named in one error."""
    with ThreadPoolExecutor(max_workers=2) as pool:  # copy_context: a pool thread logs for its pair too
        futures = {role: pool.submit(contextvars.copy_context().run, connect, role, inventory.role(role), timeout, inventory.ssh_config) for role in ROLES}
    hosts, problems, config_error = {}, [], None
    for role, future in futures.items():
        try:
            hosts[role] = future.result()
        except HostError as exc:
            problems.append(str(exc))
        except ConfigError as exc:  # a bad ssh_config: the same for both roles
            config_error = exc
    if problems or config_error:
        for host in hosts.values():
            host.close()
        if config_error:
            raise config_error
        raise PreflightError("cannot reach:\n" + "\n".join(problems))
    return hosts


def preflight_pairs(inventory: Inventory, experiment: Experiment) -> dict[str, Preflight | OrchestrateError]:
    """`check`: each pair's preflight checks, or the error that kept it from one (a host out of
    reach, a bad ssh_config entry), every pair at once (one after another on `concurrent: false`).
    Nothing is started and no run folder is used."""

    def one(name: str) -> Preflight | OrchestrateError:
        pair = Inventory(ssh_config=inventory.ssh_config, pairs={name: inventory.pair(name)})
        try:
            hosts = connect_hosts(pair, experiment.timeouts.connect)
        except OrchestrateError as exc:
            return exc
        try:
            return run_preflight(hosts, experiment, pair)
        except OrchestrateError as exc:
            return exc
        finally:
            for host in hosts.values():
                host.close()

    names = list(inventory.pairs)
    with ThreadPoolExecutor(max_workers=len(names) if inventory.concurrent else 1) as pool:
        found = {name: pool.submit(one, name) for name in names}
        return {name: future.result() for name, future in found.items()}
