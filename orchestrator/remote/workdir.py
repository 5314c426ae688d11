"""The remote workdir, made and checked so that nothing another account planted is ever built or
run from it.

One small POSIX sh script per round trip: it resolves `~/` against the SSH user's $HOME,
creates the workdir with mode 0700 (umask 077 for any parent it makes), and checks the workdir,
every folder above it, and each path under it that we use. A path is refused when it is a
symlink, owned by another user, writable by group or others, or carries an ACL; a folder above
the workdir may also be root's, and group/other-writable only with the sticky bit (as /tmp).
Callers append their own commands, which the script runs only when every check passed.
`ls -ldn` rather than `stat -c` keeps it portable (POSIX), at no cost.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import UnsafeWorkdir
from ..experiment.config import Experiment
from .hosts import Host
from ..processes import shell_quote

# The same alphabet as the inventory's workdir: anything else never reaches a command line.
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]{0,254}$")
_RELATIVE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
THEN = "@@workdir-then@@"

_FUNCTIONS = r"""
umask 077
me=$(id -u); safe=1
unsafe() { echo "UNSAFE $1 $2"; safe=0; }
entry() { mode=; owner=; set -- $(ls -ldn "$1" 2>/dev/null); mode=${1:-}; owner=${3:-}; }
above() {
  a=$(dirname "$1")
  while :; do
    if [ -e "$a" ] || [ -L "$a" ]; then
      entry "$a"
      case $owner in 0|"$me") ;; *) unsafe "$a" "is a folder above the workdir owned by uid $owner (only root or uid $me may own it)" ;; esac
      case $mode in l*|?????????[tT]*) ;; ?????w*|????????w*) unsafe "$a" "is a folder above the workdir writable by group or others ($mode) without the sticky bit" ;; esac
    fi
    [ "$a" = / ] && break
    a=$(dirname "$a")
  done
}
own() {
  [ "$safe" = 1 ] || return 0
  if [ -L "$1" ]; then unsafe "$1" "is a symlink"; return 0; fi
  if [ ! -e "$1" ]; then
    if [ "$3" = 1 ]; then
      mkdir -m 700 "$1" 2>/dev/null
      if [ -L "$1" ] || [ ! -d "$1" ]; then unsafe "$1" "cannot be created"; return 0; fi
    else
      echo "ABSENT $1"; return 0
    fi
  fi
  entry "$1"
  case $mode in d*) k=d ;; -*) k=f ;; *) k=other ;; esac
  if [ "$k" != "$2" ]; then
    if [ "$2" = d ]; then unsafe "$1" "is not a folder"; else unsafe "$1" "is not a regular file"; fi
    return 0
  fi
  if [ "$owner" != "$me" ]; then unsafe "$1" "is owned by uid $owner, not by uid $me who runs the agents"; return 0; fi
  case $mode in
    ?????w*|????????w*) unsafe "$1" "is writable by group or others ($mode)"; return 0 ;;
    ??????????+*) unsafe "$1" "has an ACL ($mode), which may let others write"; return 0 ;;
  esac
  echo "OK $1"
}
"""

_RESOLVE_HOME = r"""
h=${HOME:-}
case $h in
  /*) ;;
  *) echo "ERROR the SSH user's HOME is not an absolute path"; h= ; safe=0 ;;
esac
h=${h%/}
case $h in
  *[!A-Za-z0-9_./-]*|*/../*|*/..) echo "ERROR the SSH user's HOME holds '..' or characters outside A-Z a-z 0-9 _ . / -"; safe=0 ;;
esac
"""


@dataclass
class WorkdirCheck:
    """What the script found: the workdir as resolved on the host, and what is wrong with it."""

    requested: str
    workdir: str = ""
    problems: list[str] = field(default_factory=list)
    present: set[str] = field(default_factory=set)  # checked and ours, relative to the workdir
    output: str = ""  # what the caller's own commands printed (only when every check passed)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.workdir)

    def describe(self) -> str:
        where = self.workdir or self.requested
        return (f"workdir {where} refused, nothing was built or run from it: " + "; ".join(self.problems)
                + ". Remove the offending path, or choose another `workdir:` in the inventory")

    def raise_unless_ok(self, host: str) -> None:
        if not self.ok:
            raise UnsafeWorkdir(f"{host}: {self.describe()}")


def _relative(path: str) -> str:
    if not _RELATIVE.match(path) or ".." in path.split("/"):
        raise ValueError(f"not a plain relative path: {path!r}")
    return path


def script(workdir: str, dirs: Iterable[str] = (), files: Iterable[str] = (), then: str = "",
           existing_dirs: Iterable[str] = ()) -> str:
    """The check as one sh script. `dirs` (relative, in order, parents first) are created if
    absent; `existing_dirs` and `files` are checked when present. `then` runs in the workdir
    only if everything passed, after a marker line."""
    if workdir.startswith("~/"):
        head = _RESOLVE_HOME + f'wd="$h/"{shell_quote(workdir[2:].rstrip("/"))}\n'
    else:
        head = f"wd={shell_quote(workdir.rstrip('/') or '/')}\n"
    body = [
        'echo "WORKDIR $wd"',
        # Folders above first, so nothing is created under a parent someone else controls.
        '[ "$safe" = 1 ] && above "$wd"',
        'if [ "$safe" = 1 ] && [ ! -e "$wd" ] && [ ! -L "$wd" ]; then mkdir -p "$(dirname "$wd")" 2>/dev/null; fi',
        '[ "$safe" = 1 ] && above "$wd"',
        'own "$wd" d 1',
        # A symlinked folder above: check where it really leads, too.
        'if [ "$safe" = 1 ]; then p=$(cd -P "$wd" 2>/dev/null && pwd -P); [ -n "$p" ] && [ "$p" != "$wd" ] && above "$p/x"; fi',
    ]
    body += [f'own "$wd"/{shell_quote(_relative(d))} d 1' for d in dirs]
    body += [f'own "$wd"/{shell_quote(_relative(d))} d 0' for d in existing_dirs]
    body += [f'own "$wd"/{shell_quote(_relative(f))} f 0' for f in files]
    body.append(f'if [ "$safe" = 1 ]; then echo {shell_quote(THEN)}; cd "$wd" && {{\n{then or ":"}\n}}; fi')
    return _FUNCTIONS + head + "\n".join(body) + "\n"


def parse(requested: str, stdout: str) -> WorkdirCheck:
    check = WorkdirCheck(requested)
    before, marker, after = stdout.partition(THEN + "\n")
    if marker:
        check.output = after
    for line in before.splitlines():
        word, _, rest = line.partition(" ")
        if word == "WORKDIR":
            check.workdir = rest.strip()
        elif word == "UNSAFE":
            path, _, reason = rest.partition(" ")
            check.problems.append(f"{path} {reason}")
        elif word == "ERROR":
            check.problems.append(rest.strip())
        elif word == "OK" and check.workdir and rest.startswith(check.workdir + "/"):
            check.present.add(rest[len(check.workdir) + 1:])
    if check.workdir and (not SAFE_PATH.match(check.workdir) or ".." in check.workdir.split("/")):
        check.problems.append(f"{check.workdir} resolves outside the safe alphabet")
        check.workdir = ""
    if not check.workdir and not check.problems:
        check.problems.append("the host did not report its workdir")
    if not marker and not check.problems:
        check.problems.append("the check did not finish")
    return check


def check(host: Host, timeout: float, dirs: Iterable[str] = (), files: Iterable[str] = (), then: str = "",
          existing_dirs: Iterable[str] = (), before: str = "", stdin: bytes | None = None) -> tuple[WorkdirCheck, str]:
    """Create and check the workdir of `host` (and the paths under it); run `then` in it only if
    all is safe, with `stdin` for it (nothing before it reads stdin). `before` runs first
    whatever the outcome (read-only probes); its output is returned beside the check."""
    requested = host.spec.workdir
    result = host.run(before + "\n" + script(requested, dirs, files, then, existing_dirs), timeout, stdin)
    return parse(requested, result.stdout), result.stdout


def adopt(host: Host, found: WorkdirCheck) -> None:
    """From here on the host carries the absolute workdir (the saved inventory keeps what the
    user wrote)."""
    if found.ok and host.spec.workdir != found.workdir:
        host.spec = host.spec.model_copy(update={"workdir": found.workdir})


# ---------------------------------------------------------------------------- room on its disk

ROOM_MARK = "@@orchestrate-room "
# `df -Pk`'s figures: 1024-blocks, used, available, capacity%. Matched as a group, so a
# filesystem or mount point name with spaces in it cannot shift the columns.
_DF_FIGURES = re.compile(r"\s(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%\s")

# One cell's raw files on a host, per role (the agent's JSON, perf's counters, its stderr),
# from recorded cells (tests/fixtures/runs/*-labfull-*: 24 KB a side, 19.5 KB of it the
# host counters): the host counters are this host's /proc/{stat,softirqs,interrupts,net/snmp,
# net/netstat} twice, 10 KB on a 2-CPU machine, and /proc/interrupts grows with CPUs × IRQ
# lines, so 256 KiB covers a large server; each connection adds one interval record and one
# tcp_info sample (about 420 bytes) per interval, plus one.
HOST_COUNTERS_BYTES = 256 * 1024
SAMPLE_BYTES = 512
SMALL_FILES_BYTES = 8 * 1024
# A cell's raw files stay in the workdir for the whole run (runs/<run>/<cell>/), and the agent
# is built there: a workdir with room for fewer than this many cells fails within the first few.
MARGIN_CELLS = 4


def room_probe(path: str = ".") -> str:
    """A shell line printing the free room of the filesystem holding `path` (already quoted, or
    a shell expression), one marked `df -Pk` line; nothing if df cannot tell."""
    return f"df -Pk {path} 2>/dev/null | sed -n {shell_quote('2s/^/' + ROOM_MARK + '/p')}"


def parse_room(text: str) -> int | None:
    """KiB available from the last line room_probe printed in `text`; None if there is none."""
    free = None
    for line in text.splitlines():
        if line.startswith(ROOM_MARK):
            figures = _DF_FIGURES.search(line[len(ROOM_MARK):] + " ")
            if figures:
                free = int(figures.group(3))
    return free


def cell_files_kib(experiment: Experiment) -> int:
    """About how much one cell's raw files take in a workdir that holds both roles' (as on a
    single host); the cell with the most connections, at the experiment's duration and interval."""
    samples = max(experiment.dimension("threads")) * (math.ceil(experiment.duration / experiment.interval) + 1)
    per_role = HOST_COUNTERS_BYTES + SAMPLE_BYTES * samples + SMALL_FILES_BYTES
    return math.ceil(2 * per_role / 1024)


def room_needed_kib(experiment: Experiment) -> int:
    """The free room a workdir must have before a run starts (preflight)."""
    return MARGIN_CELLS * cell_files_kib(experiment)


def no_room(host: str, workdir: str, free_kib: int) -> str:
    return f"no room left on {host} in {workdir} ({free_kib} KiB free)"
