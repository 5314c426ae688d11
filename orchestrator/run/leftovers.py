"""What a run starts on its hosts, written down before it starts, so that `--resume` can end
whatever of it is still running (after SIGKILL of the orchestrator, a lost connection, a host
that could not be reached to kill it) before it measures anything.

Processes are found only by the process groups this run recorded, never by a name or a path
pattern. A recorded group id may since have been reused by an unrelated process, so a group is
killed only if one of its live members still works in the remote folder the command was
started in (`/proc/PID/cwd`): every command of a cell `cd`s into that cell's folder of this run,
and nothing else ever has a reason to.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from ..rows import layout
from ..errors import HostError, OrchestrateError
from ..remote.hosts import Host, kill_group_script
from ..processes import shell_quote

log = logging.getLogger(__name__)

# After the kill scripts (TERM, then KILL a second later): how long the groups have to be gone.
GONE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Started:
    role: str
    host: str  # the host's label, for the user
    pgid: int
    cwd: str  # the remote folder the command works in, as given to its `cd`
    cell: str


class GroupRecord:
    """`processes.jsonl` (layout.PROCESSES) in a pair's folder: one line per command, fsynced before the command is
    let go (cells gate their commands on a `go` line), so it survives SIGKILL of the orchestrator."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / layout.PROCESSES

    def add(self, *started: Started) -> None:
        """One line per command, all in one write and one fsync: a cell's commands are let go
        together, and each fsync is time between two cells."""
        try:
            with open(self.path, "a", encoding="utf-8") as file:
                file.write("".join(json.dumps(asdict(s)) + "\n" for s in started))
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:
            raise OrchestrateError(f"{self.path}: cannot record a started command ({exc.strerror or exc}); "
                                   "nothing is started that could not be ended later") from None

    def read(self) -> list[Started]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise OrchestrateError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        entries = []
        for line in lines:
            try:
                entries.append(Started(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line torn by a crash while it was written: its command never got `go`
        return entries


# Reads folder names on stdin and prints each with its physical path, then every live process
# (pid, process group, and, for members of the groups named in $1, the working folder). /proc
# and shell builtins only: one fork per candidate, not per process.
SCAN = r"""
groups=" $1 "
while IFS= read -r d; do
  r=$(cd -- "$d" 2>/dev/null && pwd -P) || r=
  printf 'D\t%s\t%s\n' "$d" "$r"
done
for p in /proc/[0-9]*; do
  { IFS= read -r s < "$p/stat"; } 2>/dev/null || continue
  rest=${s##*) }
  set -f; set -- $rest; set +f
  [ "$1" = Z ] && continue
  case "$groups" in *" $3 "*) ;; *) continue ;; esac
  c=$(readlink "$p/cwd" 2>/dev/null) || c=
  printf 'P\t%s\t%s\t%s\n' "${p#/proc/}" "$3" "$c"
done
"""


@dataclass(frozen=True)
class Member:
    pid: int
    pgid: int
    cwd: str


def parse_scan(output: str) -> tuple[dict[str, str], list[Member]]:
    resolved, members = {}, []
    for line in output.splitlines():
        fields = line.split("\t")
        if fields[0] == "D" and len(fields) == 3:
            resolved[fields[1]] = fields[2] or fields[1]
        elif fields[0] == "P" and len(fields) == 4:
            try:
                members.append(Member(int(fields[1]), int(fields[2]), fields[3]))
            except ValueError:
                continue
    return resolved, members


def classify(entries: list[Started], resolved: dict[str, str], members: list[Member]) -> tuple[dict[int, Started], dict[int, list[Member]]]:
    """The recorded groups still running that are ours (a live member works in the folder its
    command was started in), and those whose id now belongs to processes that are not ours."""
    by_group: dict[int, list[Member]] = defaultdict(list)
    for member in members:
        by_group[member.pgid].append(member)
    ours: dict[int, Started] = {}
    foreign: dict[int, list[Member]] = {}
    for entry in entries:
        live = by_group.get(entry.pgid)
        if not live or entry.pgid in ours:
            continue
        folder = resolved.get(entry.cwd, entry.cwd)
        if any(m.cwd == folder for m in live):
            ours[entry.pgid] = entry
            foreign.pop(entry.pgid, None)
        else:
            foreign[entry.pgid] = live
    return ours, foreign


def _scan(host: Host, entries: list[Started], timeout: float) -> tuple[dict[str, str], list[Member]]:
    groups = " ".join(sorted({str(e.pgid) for e in entries}))
    folders = "".join(sorted({e.cwd + "\n" for e in entries}))
    result = host.run(f"sh -c {shell_quote(SCAN)} scan {shell_quote(groups)}", timeout, stdin=folders.encode())
    if not result.ok:
        raise HostError(host.name, f"cannot list processes to find what this run left running: {result.stderr.strip()}")
    return parse_scan(result.stdout)


def end_leftovers(hosts: dict[str, Host], record: GroupRecord, timeout: float) -> list[str]:
    """End every recorded group of this run still running on its host, and wait until it is gone.
    Returns what was done, for the user; raises HostError if a group would not go."""
    entries = record.read()
    notes: list[str] = []
    for role, host in hosts.items():
        mine = [e for e in entries if e.role == role]
        if not mine:
            continue
        resolved, members = _scan(host, mine, timeout)
        ours, foreign = classify(mine, resolved, members)
        for pgid, live in sorted(foreign.items()):
            notes.append(f"{host.name}: process group {pgid} recorded by this run now belongs to other processes "
                         f"(pid {', '.join(str(m.pid) for m in live)}, not in this run's folder): left alone")
        if not ours:
            continue
        script = " ".join(f"( {kill_group_script(pgid)} ) &" for pgid in sorted(ours)) + " wait"
        host.run(script, timeout)
        deadline = time.monotonic() + GONE_TIMEOUT
        while True:
            resolved, members = _scan(host, list(ours.values()), timeout)
            still = sorted(classify(list(ours.values()), resolved, members)[0])
            if not still or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for pgid, entry in sorted(ours.items()):
            if pgid not in still:
                notes.append(f"{host.name}: ended process group {pgid} left running by this run ({entry.cell})")
        if still:
            raise HostError(host.name, f"process group(s) {', '.join(map(str, still))} of this run are still running "
                                       f"after SIGKILL; not measuring alongside them")
    for note in notes:
        log.info("%s", note)
    return notes
