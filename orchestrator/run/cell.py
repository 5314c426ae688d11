"""One cell of the matrix: the server agent, then the client agent, each under `perf stat`,
then their raw files brought home."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from . import iperf3
from ..experiment.config import Experiment
from ..remote import workdir
from ..remote.deploy import Agent
from ..errors import HostError, OrchestrateError
from ..rows import agentjson, layout, perfstat
from ..rows.durable import disk_error
from ..remote.hosts import Host, Process, extract_tar
from ..processes import shell_quote
from .arming import warmup_to_arm
from .leftovers import GroupRecord, Started
from ..experiment.plan import Cell
from .preflight import DROP_TO_USER, perf_prefix
from ..roles import ROLES

READY_TIMEOUT = 15.0
FINISH_SLICE = 0.05  # how often each side is looked at while both run
KILLED_FINISH = 15.0  # for a killed side's command to send its raw files and end
FILES_MARKER = "@@orchestrate-files@@"
GO = "go"


@dataclass(frozen=True)
class CellContext:
    """What every cell of a run shares."""

    run_id: str
    experiment: Experiment
    hosts: dict[str, Host]
    agents: dict[str, Agent]
    perf_events: dict[str, list[str]]  # role -> events to count there (empty: no perf)
    record: GroupRecord | None = None  # where each command's process group is written before it is let go

    def remote_dir(self, role: str, cell: Cell) -> str:
        return f"{self.hosts[role].spec.workdir}/runs/{self.run_id}/{cell.cell_id}"


@dataclass(frozen=True)
class CellOutcome:
    """How a cell ran. `CellRunner.run` gives what the run itself saw (`error`: an agent's exit
    status, a time limit, a lost host); the run then reads the raw files (cellrow.read_cell) and
    gives the cell's final outcome, whose `status` and `error` are its results row's."""

    cell: Cell
    local_dir: Path
    error: str | None
    seconds: float
    commands: dict[str, str] = field(default_factory=dict)
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    status: str | None = None  # the row's status, once the raw files were read

    def record(self) -> dict[str, Any]:
        """cell.json: what the orchestrator ran, the exit codes, the time, and the row's verdict."""
        return {"cell": self.cell.to_json(), "commands": self.commands, "exit_codes": self.exit_codes,
                "seconds": self.seconds, "status": self.status, "error": self.error}


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
        "--receive", cell.receive,
        "--uring-buffers", cell.uring_buffers,
        "--output", layout.agent_json(role),
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


def agent_command(ctx: CellContext, cell: Cell, role: str, gated: bool = True) -> str:
    experiment = ctx.experiment
    server_address = ctx.hosts["server"].spec.data_address
    agent = " ".join(shell_quote(a) for a in [ctx.agents[role].path, *agent_arguments(cell, experiment, role, server_address)])
    if cell.mode == iperf3.MODE:  # iperf3 in the agent's place, under the same perf stat
        agent = iperf3.program(cell, experiment, role, server_address, cell_time_limit(experiment))
    events = ctx.perf_events.get(role) or []
    perf_file = shell_quote(layout.perf_csv(role))
    command = agent
    if experiment.perf.enabled and events:
        access = ctx.hosts[role].spec.perf_access
        perf = [*perf_prefix(access), "stat", "-x,", "-o", layout.perf_csv(role), "-e", ",".join(events)]
        if experiment.perf.scope == "system":
            perf.append("-a")
        perf.append("--")
        command = f"{' '.join(shell_quote(a) for a in perf)} {agent}"
        if access == "sudo":
            # perf runs as root and the agent as the SSH user again (setpriv). The user makes the
            # counters' file first, so root perf writes into a file the user owns and can tar
            # back; sudo gets no stdin, so it can never sit waiting for a password.
            command = (f": >{perf_file} && {' '.join(shell_quote(a) for a in perf)} {' '.join(DROP_TO_USER)} {agent} </dev/null")
    if cell.mode == iperf3.MODE and role == "server":
        command = iperf3.ready_when_listening(command, experiment.port)
    directory = ctx.remote_dir(role, cell)
    # After the agent, the same command sends this role's raw files back as a tar stream behind
    # a marker line: no extra SSH round trip per cell to fetch them.
    # A gated command is started early and waits for a `go` line on its stdin, so the SSH
    # session's own start-up is not on the critical path after the server is ready.
    gate = f"IFS= read -r go && [ \"$go\" = {GO} ] && " if gated else ""
    # The free room of the cell folder's filesystem goes before the marker (one `df`, after the
    # measurement): a command that fails on a full disk is named as such (CellRunner._room_problem).
    where = shell_quote(ctx.hosts[role].spec.workdir)
    return (
        f"{gate}{{ mkdir -p {shell_quote(directory)} && cd {shell_quote(directory)} || {{ rc=$?; {workdir.room_probe(where)}; exit $rc; }}; "
        f"{{ {command} 2>{shell_quote(layout.agent_stderr(role))}; "
        f"rc=$?; {workdir.room_probe()}; printf '\\n%s\\n' {shell_quote(FILES_MARKER)}; tar -cf - {shell_quote(role)}.*; exit $rc; }}; }}"
    )


def kill_agents(processes: Iterable[Process]) -> None:
    """End exactly these commands' process groups (agent, the perf around it, the shell that
    sends their files): never another run's agents, even ones built from the same sources.
    Best effort on each; what could not be killed is named in the run log."""
    for process in processes:
        process.kill()


class CellRunner:
    """Runs cells one after another. While a cell warms up, the next cell's commands are
    already started on both hosts, gated on stdin, so each cell begins without waiting for
    sshd to start a session: the orchestrator's own time per cell stays small."""

    def __init__(self, ctx: CellContext) -> None:
        self.ctx = ctx
        self.armed: tuple[Cell, dict[str, Process]] | None = None

    def _start_gated(self, cell: Cell) -> dict[str, Process]:
        processes: dict[str, Process] = {}
        try:
            for role in ROLES:
                processes[role] = self.ctx.hosts[role].start(agent_command(self.ctx, cell, role, gated=True))
        except HostError:
            _release(processes)
            raise
        return processes

    def _processes_for(self, cell: Cell) -> dict[str, Process]:
        if self.armed is not None and self.armed[0] == cell:
            processes, self.armed = self.armed[1], None
            return processes
        self.disarm()
        return self._start_gated(cell)

    def _arm(self, cell: Cell | None) -> None:
        # Only where the warm-up holds the hosts' session start-up, as measured so far (arming.py).
        startup = max(host.shell_startup for host in self.ctx.hosts.values())
        if cell is None or self.ctx.experiment.warmup < warmup_to_arm(startup):
            return
        try:
            self.armed = (cell, self._start_gated(cell))
        except HostError:
            self.armed = None  # the next cell starts its own, and meets the problem itself

    def _record(self, cell: Cell, processes: dict[str, Process]) -> None:
        """Write down each command's process group before it is let go: whatever happens to us
        after this, `--resume` can find it (and only it) and end it."""
        ctx = self.ctx
        if ctx.record is None:
            return
        started = []
        for role in ROLES:
            host = ctx.hosts[role]
            pgid = processes[role].group(max(2.0, ctx.experiment.timeouts.connect))
            if pgid is None:
                raise HostError(host.name, "the command's process group id did not come back; the cell was not started")
            started.append(Started(role, host.spec.label, pgid, ctx.remote_dir(role, cell), cell.cell_id))
        ctx.record.add(*started)

    def disarm(self) -> None:
        if self.armed is not None:
            _release(self.armed[1])
            self.armed = None

    def run(self, cell: Cell, local_dir: Path, next_cell: Cell | None = None) -> CellOutcome:
        """Run the cell and bring its raw files into `local_dir`; nothing is judged or written
        about the cell here (the run does that, once, from the raw files)."""
        ctx = self.ctx
        started = time.monotonic()
        local_dir.mkdir(parents=True, exist_ok=True)
        commands = {role: agent_command(ctx, cell, role, gated=True) for role in ROLES}
        exit_codes: dict[str, int | None] = {}
        error: str | None = None
        processes: dict[str, Process] = {}
        returned: set[str] = set()
        rooms: dict[str, int | None] = {}
        try:
            processes = self._processes_for(cell)
            self._record(cell, processes)
            processes["server"].send_line(GO)
            if processes["server"].read_line("READY", READY_TIMEOUT) is None:
                error = "server agent did not become ready"
                processes["client"].send_line("stop")
                kill_agents(processes.values())  # a hung server would hold the cell to its time limit
            else:
                processes["client"].send_line(GO)
                self._arm(next_cell)
            limit = cell_time_limit(ctx.experiment)
            for role, (code, output) in self._finish_both(processes, limit).items():
                exit_codes[role] = code
                rooms[role] = workdir.parse_room(_before_marker(output))
                if _unpack(output, local_dir):
                    returned.add(role)
                error = error or exit_problem(role, code, limit, local_dir if self._under_perf(role) else None)
        except HostError as exc:
            error = str(exc)
        except BaseException:
            # Ctrl-C or a bug: no agent of ours may outlive the orchestrator's interest in it.
            self.disarm()
            kill_agents(processes.values())
            raise
        finally:
            for process in processes.values():
                process.close()
        if error:
            self.disarm()  # the armed next cell's commands are killed as they are released
        fetch_error = _fetch_missing(ctx, cell, local_dir, set(ROLES) - returned)
        error = error or fetch_error
        full = self._room_problem(cell, local_dir, exit_codes, rooms)
        if full:
            error = f"{full}: {error}" if error else full
        return CellOutcome(cell, local_dir, error, time.monotonic() - started, commands, exit_codes)

    def _under_perf(self, role: str) -> bool:
        return bool(self.ctx.experiment.perf.enabled and self.ctx.perf_events.get(role))

    def _room_problem(self, cell: Cell, local_dir: Path, exit_codes: dict[str, int | None],
                      rooms: dict[str, int | None]) -> str | None:
        """A host whose command failed, or whose raw files are not whole, with less room left
        than a cell's raw files take: named, with its workdir and the free KiB."""
        named: list[str] = []
        for role in ROLES:
            free = rooms.get(role)
            if free is None or free >= workdir.cell_files_kib(self.ctx.experiment):
                continue
            if exit_codes.get(role) == 0 and _files_whole(local_dir, role, cell, self._under_perf(role)):
                continue
            host = self.ctx.hosts[role]
            message = workdir.no_room(host.name, host.spec.workdir, free)
            if message not in named:
                named.append(message)
        return "; ".join(named) or None

    def _finish_both(self, processes: dict[str, Process], limit: float) -> dict[str, tuple[int | None, bytes]]:
        """Both commands' exit codes and output, waiting on both at once: as soon as one side
        has failed (a client that cannot connect exits at once), the other is killed instead of
        being waited out to its lifetime. At the time limit, both are killed."""
        deadline = time.monotonic() + limit
        done: dict[str, tuple[int | None, bytes]] = {}
        killed = False
        while len(done) < len(ROLES) and time.monotonic() < deadline:
            for role in reversed(ROLES):  # the client first: one that cannot connect exits at once
                if role in done:
                    continue
                others_ok = bool(done) and all(code == 0 for code, _ in done.values())
                # Once the other side ended well, this side has all the time left in one wait;
                # while both run, short slices so that a failure on either is seen at once.
                wait = deadline - time.monotonic() if others_ok else min(FINISH_SLICE, deadline - time.monotonic())
                code, output = processes[role].finish(max(0.0, wait))
                if code is None:
                    continue
                done[role] = (code, output)
                if code != 0 and not killed and len(done) < len(ROLES):
                    kill_agents(processes.values())  # the other side ends now, and sends its files
                    killed = True
        for role in ROLES:
            if role not in done:
                if not killed:
                    kill_agents(processes.values())
                    killed = True
                _, output = processes[role].finish(KILLED_FINISH)
                done[role] = (None, output)  # None: it did not finish in time by itself
        return done


def _release(processes: dict[str, Process]) -> None:
    """Gated commands that will not run: tell them so, and let their sessions go."""
    for process in processes.values():
        try:
            process.send_line("stop")
            process.finish(2.0)  # it ends on its own; close() kills it if it did not
        except HostError:
            pass
        process.close()


# The agent's own exit statuses before any traffic (docs/agent-protocol.md); 1 is a run error,
# explained by the agent's JSON.
_AGENT_EXITS = {
    2: "bad arguments",
    3: "a system failure: out of memory, or a socket or thread refused",
}


def exit_problem(role: str, code: int | None, limit: float, perf_folder: Path | None = None) -> str | None:
    """What an agent command's exit code says went wrong, None if nothing (code 0). None as the
    code: it did not end by itself within the cell's time limit and was killed. `perf_folder`:
    the command ran the agent under perf, whose raw files are there."""
    if code is None:
        return f"{role} agent did not finish within {limit:g}s"
    if code != 0:
        if perf_folder is not None and _killed(code) and not _perf_counted(perf_folder, role):
            return perf_killed(role, code, perf_folder)
        return f"{role} agent {_exit_meaning(code)}"
    return None


def _killed(code: int) -> bool:
    return code < 0 or code > 128


def perf_killed(role: str, code: int, folder: Path) -> str:
    """perf stat itself died of a signal. perf stat ends with status 0 when the program it counts
    is killed (perf 6.1 prints the signal's name and exits 0), and it writes its counters only
    as it ends: a signal status with no counters written is perf's own death, not the agent's.
    The agent, perf's child, outlives it only until its command is ended."""
    agent = layout.agent_json(role)
    try:
        agentjson.load_agent_json(folder / agent)
        fate = f"the {role} agent's figures survived ({agent}), without perf's counters"
    except OrchestrateError:
        fate = f"the {role} agent's figures were lost with it (no complete {agent})"
    return f"{role} perf {_exit_meaning(code)}; {fate}"


def _perf_counted(folder: Path, role: str) -> bool:
    try:
        return bool(perfstat.load_perf_file(folder / layout.perf_csv(role)))
    except (OrchestrateError, OSError):
        return False


def _files_whole(folder: Path, role: str, cell: Cell, under_perf: bool) -> bool:
    """The role's raw files all came back, readable: its JSON (the agent's, or iperf3's in a
    reference cell) and, under perf, perf's counters."""
    if cell.mode == iperf3.MODE:
        path = folder / layout.iperf3_json(role)
        whole = path.is_file() and path.stat().st_size > 0
    else:
        try:
            agentjson.load_agent_json(folder / layout.agent_json(role))
            whole = True
        except OrchestrateError:
            whole = False
    return whole and (not under_perf or _perf_counted(folder, role))


def _before_marker(output: bytes) -> str:
    position = output.find(f"\n{FILES_MARKER}\n".encode())
    return (output if position == -1 else output[:position]).decode("utf-8", errors="replace")


def _exit_meaning(code: int) -> str:
    if code == -1:
        return "was killed by a signal"
    if code < 0 or code > 128:
        return f"was killed by signal {abs(code) % 128 if code > 128 else -code}"
    meaning = _AGENT_EXITS.get(code)
    return f"exited with status {code}" + (f" ({meaning})" if meaning else "")


def _unpack(output: bytes, local_dir: Path) -> bool:
    """A command's raw files into the cell folder. They land in a scratch folder first and are
    moved in only once all of them are written: a full disk leaves no empty or cut file there,
    and is a DiskError (the run stops; --resume measures the cell again)."""
    marker = f"\n{FILES_MARKER}\n".encode()
    position = output.find(marker)
    if position == -1:
        return False
    scratch: Path | None = None
    try:
        scratch = Path(tempfile.mkdtemp(dir=local_dir, prefix=".incoming-"))
        try:
            extract_tar(output[position + len(marker):], scratch)
        except tarfile.TarError:
            return False
        for item in scratch.iterdir():
            os.replace(item, local_dir / item.name)
    except OSError as exc:
        raise disk_error(local_dir / "raw files", exc, local_dir.parent.parent) from None
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return True


def _fetch_missing(ctx: CellContext, cell: Cell, local_dir: Path, roles: set[str]) -> str | None:
    """Raw files that did not come back with their command (a killed or lost one) are fetched."""
    problems = []
    for role in sorted(roles):
        host = ctx.hosts[role]
        try:
            host.fetch_dir(ctx.remote_dir(role, cell), local_dir, ctx.experiment.timeouts.command)
        except HostError as exc:
            problems.append(str(exc))
        except tarfile.TarError as exc:
            problems.append(f"{host.name}: the raw files of {role} came back unreadable: {exc}")
        except OSError as exc:  # unpacking here: this machine's disk
            raise disk_error(local_dir / "raw files", exc, local_dir.parent.parent) from None
    return "; ".join(problems) or None
