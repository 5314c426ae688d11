"""iperf3's commands in a reference cell: the command line at the cell's settings, the server
side's READY once it listens, and preflight's look for iperf3, taskset and ss on each host.

Equal settings: `-N` exactly when the cell's nodelay is on, `-R` when the server sends (as our
default `sender: server`), `-w` for the socket buffers, `taskset -c` for the affinity, `-l` the
message size and `-P` the connections. iperf3 writes one buffer of the message size per call;
our agent sends `fields` buffers per message, so one_copy (one sendmsg per message) is the fair
comparison, which the report says.
"""

from __future__ import annotations

import ipaddress
import math

from ..errors import ConfigError
from ..experiment.config import Experiment
from ..experiment.iperf3 import MAX_INTERVAL, MIN_INTERVAL, MODE
from ..experiment.plan import Cell
from ..processes import shell_quote
from ..rows import layout

INSTALL = ("`apt install iperf3` (Debian, Ubuntu), `dnf install iperf3` (Fedora, RHEL), "
           "or the distribution's iperf3 package")
_POLL = 0.05  # seconds between looks for the server's listening socket


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
    """What cell.agent_command runs in the agent's place (inside the same perf stat): iperf3
    with its JSON into `<role>.iperf3.json`."""
    output = layout.iperf3_json(role)
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
