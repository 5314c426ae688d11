"""One cell of the matrix: the server agent, then the client agent, each under `perf stat`,
then their raw files brought home."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Experiment
from .deploy import Agent
from .errors import HostError
from .hosts import Host, Process, q
from .plan import Cell

READY_TIMEOUT = 15.0


@dataclass(frozen=True)
class CellContext:
    """What every cell of a run shares."""

    run_id: str
    experiment: Experiment
    hosts: dict[str, Host]
    agents: dict[str, Agent]
    perf_events: dict[str, list[str]]  # role -> events to count there (empty: no perf)

    def remote_dir(self, role: str, cell: Cell) -> str:
        return f"{self.hosts[role].spec.workdir}/runs/{self.run_id}/{cell.cell_id}"


@dataclass
class CellOutcome:
    cell: Cell
    local_dir: Path
    error: str | None
    seconds: float


def agent_arguments(cell: Cell, experiment: Experiment, role: str, server_address: str) -> list[str]:
    side = ["server", "--bind", server_address] if role == "server" else ["client", "--connect", server_address]
    args = side + [
        "--port", str(experiment.port),
        "--mode", cell.mode,
        "--workload", cell.workload,
        "--size", str(cell.message_size),
        "--fields", str(cell.fields),
        "--threads", str(cell.threads),
        "--duration", f"{experiment.duration:g}",
        "--warmup", f"{experiment.warmup:g}",
        "--interval", f"{experiment.interval:g}",
        "--sender", cell.sender,
        "--nodelay", "1" if cell.nodelay else "0",
        "--sndbuf", str(cell.sndbuf),
        "--rcvbuf", str(cell.rcvbuf),
        "--output", f"{role}.json",
        "--lifetime", f"{cell_time_limit(experiment):g}",
    ]
    cpus = getattr(experiment.affinity, role)
    if cpus:
        args += ["--cpus", cpus]
    if experiment.verify:
        args.append("--verify")
    return args


def cell_time_limit(experiment: Experiment) -> float:
    return experiment.warmup + experiment.duration + experiment.timeouts.cell_grace


def agent_command(ctx: CellContext, cell: Cell, role: str) -> str:
    experiment = ctx.experiment
    server_address = ctx.hosts["server"].spec.data_address
    agent = [ctx.agents[role].path, *agent_arguments(cell, experiment, role, server_address)]
    events = ctx.perf_events.get(role) or []
    perf: list[str] = []
    if experiment.perf.enabled and events:
        perf = ["perf", "stat", "-x,", "-o", f"{role}.perf.csv", "-e", ",".join(events)]
        if experiment.perf.scope == "system":
            perf.append("-a")
        perf.append("--")
    directory = ctx.remote_dir(role, cell)
    return f"mkdir -p {q(directory)} && cd {q(directory)} && exec {' '.join(q(a) for a in perf + agent)} 2>{q(role + '.stderr')}"


def kill_agents(hosts: dict[str, Host], agents: dict[str, Agent]) -> None:
    """Leave no agent (or the perf wrapping it) alive on any host; best effort on each."""
    for role, host in hosts.items():
        try:
            host.run(f"pkill -KILL -f {q(agents[role].kill_pattern)}; true", 15)
        except HostError:
            pass


def run_cell(ctx: CellContext, cell: Cell, local_dir: Path) -> CellOutcome:
    started = time.monotonic()
    experiment = ctx.experiment
    record: dict[str, Any] = {"cell": cell.to_json(), "commands": {}, "exit_codes": {}}
    error: str | None = None
    processes: dict[str, Process] = {}
    try:
        for role in ("server", "client"):
            record["commands"][role] = agent_command(ctx, cell, role)
        processes["server"] = ctx.hosts["server"].start(record["commands"]["server"])
        if processes["server"].read_line("READY", READY_TIMEOUT) is None:
            error = "server agent did not become ready"
        else:
            processes["client"] = ctx.hosts["client"].start(record["commands"]["client"])
            limit = cell_time_limit(experiment)
            deadline = time.monotonic() + limit
            for role in ("client", "server"):
                code = processes[role].wait(max(1.0, deadline - time.monotonic()))
                record["exit_codes"][role] = code
                if code is None:
                    error = error or f"{role} agent did not finish within {limit:g}s"
                elif code < 0:
                    how = f"signal {-code}" if code != -1 else "a signal"
                    error = error or f"{role} agent was killed by {how}"
                elif code != 0:
                    error = error or f"{role} agent exited with status {code}"
    except HostError as exc:
        error = str(exc)
    except BaseException:
        # Ctrl-C or a bug: no agent of ours may outlive the orchestrator's interest in it.
        kill_agents(ctx.hosts, ctx.agents)
        raise
    finally:
        for process in processes.values():
            process.close()
    if error:
        kill_agents(ctx.hosts, ctx.agents)
    record["seconds"] = time.monotonic() - started
    fetch_error = _fetch(ctx, cell, local_dir)
    error = error or fetch_error
    if error:
        error = _explain(error, local_dir)
    record["error"] = error
    (local_dir / "cell.json").write_text(json.dumps(record, indent=2) + "\n")
    return CellOutcome(cell, local_dir, error, time.monotonic() - started)


def _fetch(ctx: CellContext, cell: Cell, local_dir: Path) -> str | None:
    local_dir.mkdir(parents=True, exist_ok=True)
    fetched: set[tuple[str, str]] = set()
    problems = []
    for role in ("server", "client"):
        host = ctx.hosts[role]
        key = (host.spec.label, ctx.remote_dir(role, cell))
        if key in fetched:
            continue
        fetched.add(key)
        try:
            host.fetch_dir(key[1], local_dir, ctx.experiment.timeouts.command)
        except HostError as exc:
            problems.append(str(exc))
    return "; ".join(problems) or None


def _explain(error: str, local_dir: Path) -> str:
    """Add the agents' own words to a failure: their JSON error, or the last stderr line."""
    details = []
    for role in ("server", "client"):
        message = None
        try:
            message = json.loads((local_dir / f"{role}.json").read_text()).get("error")
        except (OSError, ValueError, AttributeError):
            pass
        if not message:
            try:
                lines = [l for l in (local_dir / f"{role}.stderr").read_text().splitlines() if l.strip()]
                message = lines[-1] if lines else None
            except OSError:
                pass
        if message:
            details.append(f"{role}: {message}")
    return error + (" (" + "; ".join(details) + ")" if details else "")
