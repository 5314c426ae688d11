"""A run owns its hosts: for its whole life it holds a lock on each (host, workdir) it uses, so
that two runs never measure alongside each other, and one run's clean-up never meets another's
agents.

The lock is `flock` on `<workdir>/lock`, held by a long-lived command on the run's own SSH
connection (or a local child process): it is released when the run lets it go, and by the
kernel when that command ends because the run or its connection died. The holder (run id,
controller host and pid) is written beside it, in `lock.holder`, for the error another run gets.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import socket
import time
from dataclasses import dataclass

from ..errors import ExitStatus, HostError, OrchestrateError
from .hosts import Host, Process
from ..processes import shell_quote

log = logging.getLogger(__name__)

MARK = "@@orchestrate-lock"
# A run resumed right after its own orchestrator was killed may find its old lock not yet let go
# (sshd has yet to notice the dead connection): it waits this long for its own run, never for another.
OWN_RUN_WAIT = 10.0


class HostBusy(OrchestrateError):
    """Another run holds a host: this one stops before it measures or kills anything."""

    exit_code = ExitStatus.HOST_FAILED


def _holder_line(run_id: str) -> str:
    controller = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64] or "unknown"
    return f"run={run_id} controller={controller} pid={os.getpid()} since={dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"


def _fields(holder: str, *names: str) -> tuple[str | None, ...]:
    found = dict(re.findall(r"(\w+)=(\S+)", holder))
    return tuple(found.get(name) for name in names)


def describe(holder: str) -> str:
    """`run=ID controller=HOST pid=N since=T` as a phrase; whatever else as it is."""
    fields = dict(re.findall(r"(\w+)=(\S+)", holder))
    if "run" not in fields:
        return holder or "a run that did not say which (no lock.holder beside the lock)"
    return f"run {fields['run']} (orchestrate pid {fields.get('pid', '?')} on {fields.get('controller', '?')}, since {fields.get('since', '?')})"


def lock_script(workdir: str, holder: str) -> str:
    """Take the lock or say who holds it; once taken, hold it until stdin ends (the run let it go,
    or its connection died). The workdir must be ours: not a symlink, not writable by others."""
    return (
        f"problem() {{ echo \"{MARK} error $*\"; exit 1; }}; "
        f"command -v flock >/dev/null 2>&1 || problem 'flock (util-linux) is not installed'; "
        # `~/` is the SSH user's home, as the workdir check resolves it; a new folder is private.
        f"W={shell_quote(workdir)}; case $W in '~/'*) W=\"$HOME/${{W#??}}\";; esac; "
        # The same refusals, in the same words, as the workdir check that preflight runs next: the
        # lock is taken first, so it must never follow a planted link or write into a folder not ours.
        f"[ -L \"$W\" ] && problem \"workdir $W refused: it is a symlink\"; "
        f"umask 077; mkdir -p -- \"$W\" && cd -P -- \"$W\" || problem \"cannot create $W\"; "
        f"[ -O . ] || problem \"workdir $W refused: it is owned by uid $(ls -ldn . | awk '{{print $3}}'), not by uid $(id -u) who runs the agents\"; "
        f"case $(ls -ld .) in ?????w*|????????w*) problem \"workdir $W refused: it is writable by group or others\";; esac; "
        f"for f in lock lock.holder; do [ -L \"$f\" ] && problem \"$W/$f is a symlink\"; done; "
        f"exec 9>>lock || problem \"cannot open $W/lock\"; "
        f"if flock -n 9; then "
        f"printf '%s\\n' {shell_quote(holder)} >lock.holder.tmp && mv -f lock.holder.tmp lock.holder; "
        f"echo \"{MARK} held\"; cat >/dev/null; rm -f lock.holder; exit 0; fi; "
        # The holder writes its name just after it takes the lock: give it a moment.
        f"i=0; while [ ! -s lock.holder ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; "
        f"echo \"{MARK} busy $(cat lock.holder 2>/dev/null)\""
    )


@dataclass
class HostLocks:
    held: list[tuple[Host, Process]]

    def release(self) -> None:
        """Let every lock go: end its command's stdin, so it removes the holder file and exits."""
        for host, process in self.held:
            try:
                process.send_line("release")
                process.finish(5.0)
            except HostError:
                pass  # a dead connection has let the lock go already
            finally:
                process.close()
        self.held = []


def _places(hosts: dict[str, Host]) -> list[Host]:
    """One lock per (host, workdir): both roles on one host and one workdir take it once."""
    places: dict[tuple[str, str], Host] = {}
    for host in hosts.values():
        places.setdefault((host.spec.label, host.spec.workdir), host)
    return list(places.values())


def _try(host: Host, holder: str, timeout: float) -> tuple[Process | None, str]:
    process = host.start(lock_script(host.spec.workdir, holder))
    line = process.read_line(MARK, timeout)
    if line is not None and line.startswith(f"{MARK} held"):
        return process, ""
    process.close()
    if line is None:
        raise HostError(host.name, f"no answer when taking the run's lock in {host.spec.workdir} within {timeout:g}s")
    if line.startswith(f"{MARK} error"):
        raise HostError(host.name, f"cannot take the run's lock: {line[len(MARK) + 7:]}")
    return None, line[len(MARK) + 6:].strip()


def acquire(hosts: dict[str, Host], run_id: str, timeout: float) -> HostLocks:
    """Lock every host of the run, or raise HostBusy naming the run that holds one (after
    letting go of any already taken)."""
    locks = HostLocks([])
    holder = _holder_line(run_id)
    try:
        for host in _places(hosts):
            deadline = time.monotonic() + OWN_RUN_WAIT
            while True:
                process, other = _try(host, holder, timeout)
                if process is not None:
                    locks.held.append((host, process))
                    log.info("%s: locked %s/lock for run %s", host.name, host.spec.workdir, run_id)
                    break
                if _fields(other, "run", "controller", "pid") == _fields(holder, "run", "controller", "pid"):
                    # This very process holds it, through another host: one workdir that both
                    # hosts see (an NFS home). The lock taken there covers it.
                    log.info("%s: %s/lock is this run's own, taken through another host", host.name, host.spec.workdir)
                    break
                held_by = re.search(r"run=(\S+)", other)
                if held_by and held_by.group(1) == run_id and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                same = " (this same run: is it still running elsewhere?)" if held_by and held_by.group(1) == run_id else ""
                raise HostBusy(f"{host.name}: {host.spec.workdir} is in use by another run{same}: {describe(other)}. "
                               f"This run stopped before measuring or killing anything; run it again once that one has ended.")
    except BaseException:
        locks.release()
        raise
    return locks
