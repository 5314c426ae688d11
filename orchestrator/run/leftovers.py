"""What a run starts on its hosts, written down before it starts, so that `--resume` can end
whatever of it is still running (after SIGKILL of the orchestrator, a lost connection, a host
that could not be reached to kill it) before it measures anything.

Processes are found only by the process groups this run recorded, never by a name or a path
pattern. The record is a file in the run folder, which may have been copied, shared or damaged,
and a recorded group id may since have been reused by an unrelated process; so a group is killed
only if the folder recorded for it lies inside this run's own folder on that host
(`<workdir>/runs/<run-id>/`, resolved there) and one of its live members still works in that
folder (`/proc/PID/cwd`): every command of a cell `cd`s into that cell's folder of this run, and
nothing else ever has a reason to. Every other group is left running, and the user is told.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Sequence

from ..rows import layout
from ..errors import HostError, OrchestrateError
from ..remote.hosts import Host, kill_group_script
from ..processes import shell_quote
from ..roles import ROLES

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
    let go (cells gate their commands on a `go` line), so it survives SIGKILL of the orchestrator.

    Read back as untrusted input (the folder may have been copied, shared or damaged): a line is
    used only if every field has the type and form this module writes."""

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
        return self.load()[0]

    def load(self) -> tuple[list[Started], list[str]]:
        """The lines that are well formed, and a note for each of the others (skipped: nothing is
        ever killed on their word). A last line torn by a crash is expected: its command never got `go`."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], []
        except OSError as exc:
            raise OrchestrateError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        lines = data.split(b"\n")
        torn = lines.pop() if lines else b""  # after the last newline: b"" unless the last write was cut off
        entries: list[Started] = []
        skipped: list[str] = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            why = None
            try:
                entries.append(parse_started(line.decode("utf-8")))
            except (ValueError, TypeError) as exc:
                why = str(exc)
            if why is not None:
                skipped.append(f"{self.path} line {number}: skipped, nothing is ended on its word ({why})")
        if torn.strip():
            skipped.append(f"{self.path} line {len(lines) + 1}: a line cut off (a crash while it was written): skipped")
        return entries, skipped


# A pgid above 1 (`kill -- -1` would signal every process of the user) and within pid_max's ceiling.
MAX_PID = 1 << 22
_FIELDS = {f.name for f in fields(Started)}


def parse_started(line: str) -> Started:
    """One processes.jsonl line as Started, or ValueError saying what is wrong with it."""
    doc = json.loads(line)
    if not isinstance(doc, dict) or set(doc) != _FIELDS:
        raise ValueError(f"not an object with exactly the fields {', '.join(sorted(_FIELDS))}")
    role, host, pgid, cwd, cell = (doc[k] for k in ("role", "host", "pgid", "cwd", "cell"))
    if role not in ROLES:
        raise ValueError(f"role {role!r} is neither {' nor '.join(ROLES)}")
    if type(pgid) is not int or not 1 < pgid < MAX_PID:
        raise ValueError(f"pgid {pgid!r} is not a process group id")
    for name, value in (("host", host), ("cell", cell), ("cwd", cwd)):
        if not isinstance(value, str) or not value or len(value) > 4096 or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError(f"{name} is not a one-line string")
    if not SAFE_PATH.fullmatch(cwd):
        raise ValueError(f"cwd {cwd!r} is not an absolute folder without '.' or '..' parts")
    return Started(role, host, pgid, cwd, cell)


# An absolute path (or ~/...), no `.` or `..` part, no empty part: compared part by part below.
SAFE_PATH = re.compile(r"(~|)(/(?!\.\.?(/|$))[^/]+)+")
# A run id as runner.py makes it (and a pair name and the probe's suffix): no `/`, not `.` or `..`.
RUN_ID = re.compile(r"(?!\.\.?$)[A-Za-z0-9_.-]+")


# Reads folder names on stdin and prints each with its physical path (`~/` is the SSH user's home,
# as everywhere else), then every live process of the groups named in $1: pid, process group and
# working folder. /proc and shell builtins only: one fork per folder, not per process.
SCAN = r"""
groups=" $1 "
while IFS= read -r d; do
  e=$d; case $e in '~/'*) e="$HOME/${e#??}";; esac
  r=$(cd -P -- "$e" 2>/dev/null && pwd -P) || r=
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
    """The folders as the host resolved them (missing: it could not), and the groups' members."""
    resolved, members = {}, []
    for line in output.splitlines():
        parts = line.split("\t")
        if parts[0] == "D" and len(parts) == 3:
            if parts[2]:
                resolved[parts[1]] = parts[2]
        elif parts[0] == "P" and len(parts) == 4:
            try:
                members.append(Member(int(parts[1]), int(parts[2]), parts[3]))
            except ValueError:
                continue
    return resolved, members


def run_folders(workdir: str, run_ids: Sequence[str]) -> dict[str, str]:
    """This run's own folders on a host, as given to the scan: `<workdir>/runs/<id>` for each id."""
    base = workdir.rstrip("/")
    return {run_id: f"{base}/runs/{run_id}" for run_id in run_ids}


def own_roots(workdir: str, run_ids: Sequence[str], resolved: dict[str, str]) -> list[PurePosixPath]:
    """The physical folders of this run on the host: `<workdir>/runs/<id>` where it resolves to
    exactly the workdir's physical path + `/runs/<id>` (a `runs` or run folder that is a symlink
    could lead anywhere, so it is not this run's)."""
    base = resolved.get(workdir.rstrip("/") or "/")
    if not base:
        return []
    roots = []
    for run_id, folder in run_folders(workdir, run_ids).items():
        physical = resolved.get(folder)
        if physical and RUN_ID.fullmatch(run_id) and PurePosixPath(physical) == PurePosixPath(base) / "runs" / run_id:
            roots.append(PurePosixPath(physical))
    return roots


def inside(folder: str, roots: Sequence[PurePosixPath]) -> bool:
    """`folder` lies strictly inside one of `roots`, compared part by part (`/runs/ID-evil` is not
    inside `/runs/ID`)."""
    if not folder.startswith("/") or not SAFE_PATH.fullmatch(folder):
        return False
    path = PurePosixPath(folder)
    return any(path != root and path.is_relative_to(root) for root in roots)


def classify(entries: list[Started], resolved: dict[str, str], members: list[Member],
             roots: Sequence[PurePosixPath]) -> tuple[dict[int, Started], dict[int, str]]:
    """The recorded groups still running that are ours, and why each other live one is left alone.
    Ours: the recorded folder resolves (on the host) to a folder inside this run's own folder
    there (`roots`), and a live member of the group works in exactly that folder."""
    by_group: dict[int, list[Member]] = defaultdict(list)
    for member in members:
        by_group[member.pgid].append(member)
    ours: dict[int, Started] = {}
    left: dict[int, str] = {}
    for entry in entries:
        live = by_group.get(entry.pgid)
        if not live or entry.pgid in ours:
            continue
        folder = resolved.get(entry.cwd)
        pids = ", ".join(str(m.pid) for m in live)
        if folder is None or not inside(folder, roots):
            that = f" (that is {folder})" if folder and folder != entry.cwd else ""
            why = f"its recorded folder {entry.cwd}{that} is not inside this run's own folder there (pid {pids})"
        elif any(m.cwd == folder for m in live):
            ours[entry.pgid] = entry
            left.pop(entry.pgid, None)
            continue
        else:
            why = f"none of its processes (pid {pids}) works in {folder}: the id now belongs to other processes"
        left.setdefault(entry.pgid, why)
    return ours, left


def _scan(host: Host, entries: list[Started], folders: Sequence[str], timeout: float) -> tuple[dict[str, str], list[Member]]:
    # Every value below was validated (parse_started, RUN_ID, the inventory's workdir), and is quoted
    # or sent on stdin, one per line.
    groups = " ".join(sorted({str(int(e.pgid)) for e in entries}))
    lines = sorted({e.cwd for e in entries} | set(folders))
    text = "".join(f"{line}\n" for line in lines if "\n" not in line)
    result = host.run(f"sh -c {shell_quote(SCAN)} scan {shell_quote(groups)}", timeout, stdin=text.encode())
    if not result.ok:
        raise HostError(host.name, f"cannot list processes to find what this run left running: {result.stderr.strip()}")
    return parse_scan(result.stdout)


def end_leftovers(hosts: dict[str, Host], record: GroupRecord, timeout: float, run_ids: Sequence[str]) -> list[str]:
    """End every recorded group of this run still running on its host and still its own (see
    classify), and wait until it is gone; every other live group named in the record is left
    running, and the notes say which and why. `run_ids`: this run's folders under the host's
    `<workdir>/runs/`. Returns what was done, for the user; raises HostError if a group would not go."""
    entries, notes = record.load()
    ids = [r for r in run_ids if RUN_ID.fullmatch(r)]
    for role, host in hosts.items():
        mine = [e for e in entries if e.role == role]
        if not mine:
            continue
        workdir = host.spec.workdir
        own = run_folders(workdir, ids)
        resolved, members = _scan(host, mine, [workdir.rstrip("/") or "/", *own.values()], timeout)
        roots = own_roots(workdir, ids, resolved)
        ours, left = classify(mine, resolved, members, roots)
        for pgid, why in sorted(left.items()):
            notes.append(f"{host.name}: process group {pgid} named in {record.path} left running: {why}")
        if not ours:
            continue
        script = " ".join(f"( {kill_group_script(pgid)} ) &" for pgid in sorted(ours)) + " wait"
        host.run(script, timeout)
        deadline = time.monotonic() + GONE_TIMEOUT
        while True:
            resolved, members = _scan(host, list(ours.values()), [], timeout)
            still = sorted(classify(list(ours.values()), resolved, members, roots)[0])
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
