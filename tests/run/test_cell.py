"""One cell, without SSH: the command each side runs (its `go` gate and the files it sends back
behind a marker), run for real by this machine's shell; the returned files unpacked into the
cell folder; and CellRunner's verdicts, on fake hosts whose commands answer as scripted."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.remote import workdir
from orchestrator.run import cell as cells
from orchestrator.run import leftovers
from orchestrator.experiment.config import Experiment
from orchestrator.remote.deploy import Agent
from orchestrator.errors import HostError
from orchestrator.remote.hosts import LocalHost
from orchestrator.experiment.inventory import HostSpec
from orchestrator.experiment.plan import Cell

from ..fakes import FakeGroup

CELL = Cell(workload="stream", mode="one_copy", message_size=1024, threads=1, fields=1, sender="server",
            nodelay=True, sndbuf=0, rcvbuf=0, receive="copy", uring_buffers="plain", repetition=1)
MARKER = f"\n{cells.FILES_MARKER}\n".encode()

# Stands in for the agent: records its arguments and where it ran, writes its JSON (and a file
# that is not the role's), says READY, and exits with the status in the file `status` beside it.
FAKE_AGENT = """#!/bin/sh
role=$1
here=$(dirname "$0")
printf '%s\\n' "$@" > "$role.args"
pwd > "$here/ran-$role"
echo '{"status": "ok"}' > "$role.json"
echo other > unrelated.txt
echo "agent $role says hi" >&2
echo "READY 127.0.0.1 5301"
exit "$(cat "$here/status" 2>/dev/null || echo 0)"
"""


def experiment(**changes) -> Experiment:
    return Experiment.model_validate({"name": "t", "matrix": {"mode": ["one_copy"]}, "duration": "0.2s",
                                      "warmup": "0s", "perf": {"enabled": False}, **changes})


def local_context(tmp_path: Path) -> cells.CellContext:
    agent = tmp_path / "bin" / "agent"
    agent.parent.mkdir()
    agent.write_text(FAKE_AGENT)
    agent.chmod(0o755)
    spec = HostSpec(host="local", workdir=str(tmp_path / "work"))
    hosts = {role: LocalHost(role, spec) for role in ("server", "client")}
    agents = {role: Agent("0" * 16, str(agent)) for role in ("server", "client")}
    return cells.CellContext("run-1", experiment(), hosts, agents, {})  # type: ignore[arg-type]


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# ---------------------------------------------------------------- the command, run by sh


def test_a_gated_command_runs_nothing_without_its_go_line(tmp_path):
    ctx = local_context(tmp_path)
    process = ctx.hosts["server"].start(cells.agent_command(ctx, CELL, "server"))
    assert process.read_line("READY", 0.3) is None  # waiting on its stdin
    process.send_line("stop")
    code, output = process.finish(5)
    process.close()
    assert code != 0 and output == b""
    assert not (tmp_path / "bin" / "ran-server").exists()
    assert not Path(ctx.remote_dir("server", CELL)).exists()  # not even its folder was made


def test_go_runs_the_agent_in_its_cell_folder_and_sends_its_files_behind_the_marker(tmp_path):
    ctx = local_context(tmp_path)
    process = ctx.hosts["server"].start(cells.agent_command(ctx, CELL, "server"))
    process.send_line(cells.GO)
    assert process.read_line("READY", 5) == "READY 127.0.0.1 5301"
    code, output = process.finish(10)
    process.close()
    assert code == 0
    folder = ctx.remote_dir("server", CELL)
    assert (tmp_path / "bin" / "ran-server").read_text().strip() == folder == f"{tmp_path}/work/runs/run-1/{CELL.cell_id}"
    before, marker, archive = output.partition(MARKER)
    # READY was read above; before the marker, only the free room of the cell folder's disk.
    (room,) = before.decode().strip().splitlines()
    assert marker and room.startswith(workdir.ROOM_MARK) and workdir.parse_room(room) is not None
    sent = members(archive)
    # The role's files only, with the agent's stderr beside them.
    assert set(sent) == {"server.args", "server.json", "server.stderr"}
    assert sent["server.stderr"] == b"agent server says hi\n"
    args = sent["server.args"].decode().split("\n")
    assert args[:3] == ["server", "--bind", "127.0.0.1"] and "--output" in args and args[args.index("--output") + 1] == "server.json"


def test_the_agents_exit_status_is_the_commands_and_its_files_still_come_back(tmp_path):
    ctx = local_context(tmp_path)
    (tmp_path / "bin" / "status").write_text("3\n")
    process = ctx.hosts["client"].start(cells.agent_command(ctx, CELL, "client", gated=False))  # no gate: runs at once
    code, output = process.finish(10)
    process.close()
    assert code == 3
    before, marker, archive = output.partition(MARKER)
    assert b"READY" in before and marker
    assert set(members(archive)) == {"client.args", "client.json", "client.stderr"}


# ---------------------------------------------------------------- unpacking what came back


def test_returned_files_replace_the_cell_folders_and_leave_no_scratch(tmp_path):
    (tmp_path / "server.json").write_text("stale")
    output = b"READY 1.2.3.4 1\n" + MARKER + tar_of({"server.json": b'{"status": "ok"}', "server.stderr": b""})
    assert cells._unpack(output, tmp_path) is True
    assert (tmp_path / "server.json").read_text() == '{"status": "ok"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.json", "server.stderr"]


@pytest.mark.parametrize("output", [
    b"READY 1.2.3.4 1\nthe agent's last words, and no marker\n",
    b"READY\n" + MARKER + b"not a tar stream " * 64,
])
def test_output_without_a_readable_tar_unpacks_nothing(tmp_path, output):
    assert cells._unpack(output, tmp_path) is False
    assert list(tmp_path.iterdir()) == []


def test_a_returned_tar_cannot_write_outside_the_cell_folder(tmp_path):
    cell_dir = tmp_path / "cell"
    cell_dir.mkdir()
    assert cells._unpack(MARKER + tar_of({"../escaped.json": b"x"}), cell_dir) is False
    assert not (tmp_path / "escaped.json").exists() and list(cell_dir.iterdir()) == []
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("server.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    assert cells._unpack(MARKER + buffer.getvalue(), cell_dir) is False
    assert list(cell_dir.iterdir()) == []


# ---------------------------------------------------------------- CellRunner on fake hosts

HANG = object()  # a side that runs until it is killed


@dataclass
class FakeProcess(FakeGroup):
    role: str
    events: list[str]
    code: object = 0  # the exit status, or HANG
    output: bytes = b""
    ready: bool = True
    sent: list[str] = field(default_factory=list)
    killed: bool = False
    closed: bool = False

    def send_line(self, line: str) -> None:
        self.sent.append(line)
        self.events.append(f"{self.role} <- {line}")

    def read_line(self, startswith: str, timeout: float) -> str | None:
        self.events.append(f"{self.role} read {startswith}")
        return f"{startswith} 127.0.0.1 5301" if self.ready and startswith == "READY" else None

    def finish(self, timeout: float) -> tuple[int | None, bytes]:
        if self.killed:
            return -15, self.output  # as a local command killed by SIGTERM ends
        if self.code is HANG:
            time.sleep(min(timeout, 0.01))
            return None, b""
        return self.code, self.output  # type: ignore[return-value]



@dataclass
class FakeHost:
    role: str
    process: FakeProcess
    spec: HostSpec = field(default_factory=lambda: HostSpec(host="lab-a", user="bench", workdir="/w"))
    started: list[str] = field(default_factory=list)
    shell_startup: float = 0.0  # a quick login shell (what the Host protocol reports)
    fetched: list[str] = field(default_factory=list)
    fetch_files: dict[str, bytes] | None = None  # what fetch_dir brings, None: it fails

    @property
    def name(self) -> str:
        return f"{self.role} (fake)"

    def start(self, command: str) -> FakeProcess:
        self.started.append(command)
        return self.process

    def fetch_dir(self, remote: str, local: Path, timeout: float) -> None:
        self.fetched.append(remote)
        if self.fetch_files is None:
            raise HostError(self.name, f"could not fetch {remote}: gone")
        for name, data in self.fetch_files.items():
            (local / name).write_bytes(data)


def returned(role: str, document: dict | None = None, ready: bool = False) -> bytes:
    files = {f"{role}.json": json.dumps(document or {"status": "ok"}).encode(), f"{role}.stderr": b""}
    return (b"READY 127.0.0.1 5301\n" if ready else b"") + MARKER + tar_of(files)


def run_cell(tmp_path: Path, server: FakeProcess, client: FakeProcess,
             fetch: dict[str, dict[str, bytes]] | None = None, grace: str = "0.3s") -> tuple[cells.CellOutcome, dict]:
    fetch = fetch or {}
    hosts = {"server": FakeHost("server", server, fetch_files=fetch.get("server")),
             "client": FakeHost("client", client, fetch_files=fetch.get("client"))}
    agents = {role: Agent("0" * 16, "/w/agents/x/bin/agent") for role in hosts}
    ctx = cells.CellContext("run-1", experiment(timeouts={"cell_grace": grace}), hosts, agents, {})  # type: ignore[arg-type]
    local = tmp_path / "run" / "cells" / CELL.cell_id
    outcome = cells.CellRunner(ctx).run(CELL, local)
    return outcome, hosts


def test_a_good_cell_opens_the_gates_in_order_and_keeps_both_sides_files(tmp_path):
    events: list[str] = []
    server = FakeProcess("server", events, output=returned("server", ready=True))
    client = FakeProcess("client", events, output=returned("client"))
    outcome, hosts = run_cell(tmp_path, server, client)
    assert outcome.error is None
    # The server is let go first; the client only once the server said READY.
    assert events[:3] == ["server <- go", "server read READY", "client <- go"]
    # Each side was started gated, once: no second SSH session per cell.
    for role in ("server", "client"):
        (command,) = hosts[role].started
        assert command.startswith('IFS= read -r go && [ "$go" = go ] && ') and f"/bin/agent {role} --" in command
    assert not server.killed and not client.killed and server.closed and client.closed
    assert json.loads((outcome.local_dir / "server.json").read_text()) == {"status": "ok"}
    assert (outcome.local_dir / "client.json").is_file()
    # The runner judges nothing and writes no cell.json: the run does, once, from the raw files.
    assert outcome.exit_codes == {"server": 0, "client": 0} and not (outcome.local_dir / "cell.json").exists()
    assert hosts["server"].fetched == [] and hosts["client"].fetched == []  # everything came with the commands


def test_both_commands_are_recorded_in_one_fsync_before_the_first_go(tmp_path, monkeypatch):
    """Each fsync is time between two cells, and with several pairs their fsyncs queue on the disk:
    a cell's two process groups are written down together."""
    events: list[str] = []
    real_fsync = leftovers.os.fsync

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(leftovers.os, "fsync", fsync)
    server = FakeProcess("server", events, output=returned("server", ready=True))
    client = FakeProcess("client", events, output=returned("client"))
    hosts = {"server": FakeHost("server", server), "client": FakeHost("client", client)}
    agents = {role: Agent("0" * 16, "/w/agents/x/bin/agent") for role in hosts}
    record = leftovers.GroupRecord(tmp_path)
    ctx = cells.CellContext("run-1", experiment(), hosts, agents, {}, record)  # type: ignore[arg-type]
    outcome = cells.CellRunner(ctx).run(CELL, tmp_path / "cells" / CELL.cell_id)
    assert outcome.error is None
    assert events[:2] == ["fsync", "server <- go"] and events.count("fsync") == 1
    assert [(s.role, s.pgid, s.cell) for s in record.read()] == [("server", 4242, CELL.cell_id), ("client", 4242, CELL.cell_id)]


def test_a_server_that_never_becomes_ready_keeps_the_clients_gate_shut(tmp_path):
    events: list[str] = []
    server = FakeProcess("server", events, code=HANG, ready=False, output=returned("server"))
    client = FakeProcess("client", events, code=HANG, output=b"")
    outcome, _ = run_cell(tmp_path, server, client, fetch={"client": {"client.stderr": b""}})
    assert outcome.error is not None and outcome.error.startswith("server agent did not become ready")
    assert client.sent == ["stop"] and server.killed and client.killed


@pytest.mark.parametrize("code, meaning", [
    (2, "exited with status 2 (bad arguments)"),
    (3, "exited with status 3 (a system failure: out of memory, or a socket or thread refused)"),
    (1, "exited with status 1"),
    (137, "was killed by signal 9"),  # the shell's 128 + SIGKILL
    (143, "was killed by signal 15"),
    (-15, "was killed by signal 15"),  # a signal number as a local process reports it
    (-1, "was killed by a signal"),  # sshd's exit-signal, whose number paramiko does not keep
])
def test_a_failed_side_is_named_with_what_its_exit_status_means(tmp_path, code, meaning):
    events: list[str] = []
    server = FakeProcess("server", events, code=HANG, output=returned("server", ready=True))
    client = FakeProcess("client", events, code=code,
                         output=returned("client", {"status": "error", "error": "connect: Connection refused"}))
    started = time.monotonic()
    outcome, _ = run_cell(tmp_path, server, client, grace="30s")
    assert outcome.error == f"client agent {meaning}"  # the agents' own words are added by cellrow.read_cell
    # The side still running is ended at once, not waited out to the cell's 30 s limit.
    assert server.killed and time.monotonic() - started < 10
    assert outcome.exit_codes == {"client": code, "server": -15}


def test_sides_that_outlive_the_cells_time_limit_are_killed_and_named(tmp_path):
    events: list[str] = []
    server = FakeProcess("server", events, code=HANG, output=returned("server", ready=True))
    client = FakeProcess("client", events, code=HANG, output=returned("client"))
    started = time.monotonic()
    outcome, _ = run_cell(tmp_path, server, client)
    limit = cells.cell_time_limit(experiment(timeouts={"cell_grace": "0.3s"}))
    assert limit == pytest.approx(0.5)
    assert outcome.error == f"server agent did not finish within {limit:g}s"
    assert server.killed and client.killed and time.monotonic() - started < 5
    assert (outcome.local_dir / "server.json").is_file()  # the killed commands still sent their files


def test_files_that_did_not_come_back_are_fetched_from_the_cell_folder(tmp_path):
    events: list[str] = []
    server = FakeProcess("server", events, output=b"READY 127.0.0.1 5301\n")  # its connection dropped the tar
    client = FakeProcess("client", events, output=returned("client"))
    outcome, hosts = run_cell(tmp_path, server, client, fetch={"server": {"server.json": b'{"status": "ok"}'}})
    assert outcome.error is None
    assert hosts["server"].fetched == [f"/w/runs/run-1/{CELL.cell_id}"] and hosts["client"].fetched == []
    assert (outcome.local_dir / "server.json").read_text() == '{"status": "ok"}'


def test_files_that_cannot_be_fetched_fail_the_cell(tmp_path):
    events: list[str] = []
    server = FakeProcess("server", events, output=b"READY 127.0.0.1 5301\n")
    client = FakeProcess("client", events, output=returned("client"))
    outcome, _ = run_cell(tmp_path, server, client)  # fetch_dir fails
    assert outcome.error == f"server (fake): could not fetch /w/runs/run-1/{CELL.cell_id}: gone"


@pytest.mark.parametrize("startup, warmup, armed", [(0.1, 0.5, True), (0.0, 0.4, False), (0.3, 0.5, False), (0.3, 0.6, True),
                                                    (2.0, 3.0, False), (2.0, 4.0, True)])
def test_the_next_cell_starts_early_only_where_the_warm_up_holds_the_hosts_session_start_up(startup, warmup, armed):
    """A login shell whose start-up files take seconds (conda) must not start the next cell's
    commands during this cell's measured window."""
    hosts = {"server": FakeHost("server", None, shell_startup=startup), "client": FakeHost("client", None)}  # type: ignore[arg-type]
    ctx = cells.CellContext("run-1", experiment(warmup=f"{warmup}s"), hosts, {}, {})  # type: ignore[arg-type]
    runner = cells.CellRunner(ctx)
    runner._start_gated = lambda cell: {"server": cell}  # type: ignore[method-assign]
    runner._arm(CELL)
    assert (runner.armed is not None) is armed


# ---------------------------------------------------------------- perf's death, from the files that came back

LABFULL = Path(__file__).parents[1] / "fixtures" / "runs" / "20261206T023809Z-labfull-87e3" / "cells" / "rr-zero_copy-65536B-2t-r1"


def test_a_signal_status_with_no_counters_written_is_perfs_own_death(tmp_path):
    # Files as a cell whose server perf was SIGKILLed sends them: perf's file made, never written.
    (tmp_path / "server.perf.csv").write_bytes(b"")
    (tmp_path / "server.stderr").write_bytes(b"")
    assert cells.exit_problem("server", 137, 10, tmp_path) == \
        "server perf was killed by signal 9; the server agent's figures were lost with it (no complete server.json)"
    # The agent's JSON, whole (a recorded one): its figures survived.
    shutil.copy(LABFULL / "server.json", tmp_path / "server.json")
    assert cells.exit_problem("server", 137, 10, tmp_path) == \
        "server perf was killed by signal 9; the server agent's figures survived (server.json), without perf's counters"
    # perf wrote its counters (recorded): the signal was the agent's, passed on.
    shutil.copy(LABFULL / "server.perf.csv", tmp_path / "server.perf.csv")
    assert cells.exit_problem("server", 137, 10, tmp_path) == "server agent was killed by signal 9"
    # Not under perf, or not a signal: the agent's, as before.
    assert cells.exit_problem("server", 137, 10) == "server agent was killed by signal 9"
    (tmp_path / "server.perf.csv").write_bytes(b"")
    assert cells.exit_problem("server", 1, 10, tmp_path) == "server agent exited with status 1"
