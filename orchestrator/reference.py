"""iperf3 as a reference in the same run (issue 11): `reference: iperf3` in an experiment.

For each message size and thread count of the stream cells (and each sender, nodelay and
buffer setting they vary), the plan gets an iperf3 cell with mode `iperf3`. It runs on the
same two hosts, through the same SSH sessions, gate, perf stat, warm-up and window as our
agents (cells.py puts iperf3 where the agent would be): `iperf3 -s -1` on the server host,
the client on the client host to the server's data address. Its `-J` output becomes a row of
the same results.csv schema, and the report gives ours ÷ iperf3 per cell with a 95% interval
(referencereport.py). This module is the run's side (config, plan, commands, preflight): it
imports no SSH and no analysis library, so the CLI and the analysis modules may both use it.

Equal settings: `-N` exactly when the cell's nodelay is on, `-R` when the server sends (as our
default `sender: server`), `-w` for the socket buffers, `taskset -c` for the affinity, `-l` the
message size and `-P` the connections. iperf3 writes one buffer of the message size per call;
our agent sends `fields` buffers per message, so one_copy (one sendmsg per message) is the fair
comparison, which the report says.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .processes import shell_quote

if TYPE_CHECKING:
    from .config import Experiment
    from .plan import Cell

MODE = "iperf3"
CLIENT_JSON = "client.iperf3.json"  # `role.*` names: the cell command's tar brings them home
SERVER_JSON = "server.iperf3.json"
# The cell keys an iperf3 cell takes over from the stream cells it is the reference for; it
# always sends one buffer per write (fields 1).
KEYS = ("message_size", "threads", "sender", "nodelay", "sndbuf", "rcvbuf")
# iperf3's own limits (iperf 3.12 refuses beyond them): -l, -O, -i; -t and -O take whole seconds.
MAX_BLOCK = 1 << 20
MAX_OMIT = 600
MIN_INTERVAL, MAX_INTERVAL = 0.1, 60.0
INSTALL = ("`apt install iperf3` (Debian, Ubuntu), `dnf install iperf3` (Fedora, RHEL), "
           "or the distribution's iperf3 package")
_POLL = 0.05  # seconds between looks for the server's listening socket


def settings_problems(experiment: Experiment) -> list[str]:
    """Why iperf3 could not run at the experiment's settings (config.py's validator)."""
    problems = []
    if "stream" not in experiment.dimension("workload"):
        problems.append("iperf3 is a reference for stream cells, and the experiment has none")
    for name, value, top in (("duration", experiment.duration, 86400), ("warmup", experiment.warmup, MAX_OMIT)):
        if value != int(value) or value > top:
            problems.append(f"iperf3 takes {name} in whole seconds up to {top} (-t, -O); {name} is {value:g}s")
    if max(experiment.dimension("message_size")) > MAX_BLOCK:
        problems.append(f"iperf3 writes at most {MAX_BLOCK} bytes per call (-l); use message sizes up to 1MiB")
    for sndbuf, rcvbuf in itertools.product(experiment.dimension("sndbuf"), experiment.dimension("rcvbuf")):
        if sndbuf != rcvbuf:
            problems.append("iperf3 sets both socket buffers to one value (-w): sndbuf and rcvbuf must be equal")
            break
    return problems


def _combinations(experiment: Experiment) -> list[dict[str, Any]]:
    if experiment.reference != MODE or "stream" not in experiment.dimension("workload"):
        return []
    return [dict(zip(KEYS, combo)) for combo in itertools.product(*(experiment.dimension(k) for k in KEYS))]


def cell_count(experiment: Experiment) -> int:
    """How many reference cells the plan gets (plan_size, without expanding)."""
    return len(_combinations(experiment)) * experiment.repetitions


def cell_parameters(experiment: Experiment) -> list[dict[str, Any]]:
    """The reference cells' parameters (plan.expand adds repetitions): one per combination of
    KEYS among the stream cells, each sending one buffer per write (fields 1)."""
    return [{"workload": "stream", "mode": MODE, "fields": 1, **combo} for combo in _combinations(experiment)]


def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(f"data address {value!r} is not an IP address") from None


def _interval(experiment: Experiment) -> str:
    return f"{min(max(experiment.interval, MIN_INTERVAL), MAX_INTERVAL):g}"


def arguments(cell: Cell, experiment: Experiment, role: str, server_address: str, lifetime: float) -> list[str]:
    """iperf3's command line for one side of a reference cell, at the cell's settings.
    `lifetime`: as our agent's --lifetime, a server no client reached ends by itself then."""
    address, port = _address(server_address), str(int(experiment.port))
    if role == "server":
        args = ["iperf3", "-s", "-1", "-J", "-B", address, "-p", port, "-i", _interval(experiment),
                "--idle-timeout", str(math.ceil(lifetime))]
    else:
        args = ["iperf3", "-c", address, "-p", port, "-J",
                "-l", str(int(cell.message_size)), "-P", str(int(cell.threads)),
                "-t", str(int(experiment.duration)), "-O", str(int(experiment.warmup)), "-i", _interval(experiment)]
        if cell.nodelay:
            args.append("-N")
        if cell.sender == "server":
            args.append("-R")  # the server sends, as our agents do with sender: server
        if cell.sndbuf:
            args += ["-w", str(int(cell.sndbuf))]
    cpus = getattr(experiment.affinity, role)
    if cpus:
        # Our agent pins its threads round-robin over the list; iperf3 has one CPU (-A) only,
        # so the whole process gets the list.
        args = ["taskset", "-c", cpus, *args]
    return args


def program(cell: Cell, experiment: Experiment, role: str, server_address: str, lifetime: float) -> str:
    """What cells.agent_command runs in the agent's place (inside the same perf stat): iperf3
    with its JSON into `<role>.iperf3.json`."""
    output = SERVER_JSON if role == "server" else CLIENT_JSON
    return " ".join(shell_quote(a) for a in arguments(cell, experiment, role, server_address, lifetime)) + f" >{shell_quote(output)}"


def ready_when_listening(command: str, port: int) -> str:
    """The server side's command, started in the background, says READY (as our agent does)
    once its port listens: iperf3 -J prints nothing until the end. If iperf3 exits first (the
    port taken), no READY comes and its exit status is the command's."""
    port_filter = shell_quote(f"sport = :{int(port)}")
    return (f"{{ {command} & p=$!; while kill -0 \"$p\" 2>/dev/null && ! ss -Htln {port_filter} | grep -q .; "
            f"do sleep {_POLL:g}; done; kill -0 \"$p\" 2>/dev/null && echo READY iperf3; wait \"$p\"; }}")


def preflight_probe(experiment: Experiment, role: str) -> str:
    """Shell lines for preflight's first round trip: `@noiperf3`, `@notaskset`, `@noss`."""
    if experiment.reference != MODE:
        return ""
    lines = ['command -v iperf3 >/dev/null 2>&1 || echo "@noiperf3"']
    if getattr(experiment.affinity, role):
        lines.append('command -v taskset >/dev/null 2>&1 || echo "@notaskset"')
    if role == "server":
        lines.append('command -v ss >/dev/null 2>&1 || echo "@noss"')
    return "; ".join(lines)


def preflight_findings(experiment: Experiment, lines: list[str]) -> list[tuple[bool, str]]:
    """(ok, detail) for preflight's `iperf3` line, from preflight_probe's output."""
    if experiment.reference != MODE:
        return []
    if "@noiperf3" in lines:
        return [(False, f"no `iperf3`, which `reference: iperf3` runs on both hosts: install it with {INSTALL}")]
    found = [(True, "iperf3 found")]
    if "@notaskset" in lines:
        found.append((False, "no `taskset` (util-linux), which pins iperf3 to the affinity's CPUs"))
    if "@noss" in lines:
        found.append((False, "no `ss` (iproute2), which tells when the iperf3 server listens"))
    return found
