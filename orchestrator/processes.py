"""A started command, read one way wherever it runs: its stdout up to a line or to its end within
a deadline, then its exit status; and if it has not ended by the time we stop caring, its whole
process group ended (TERM, then KILL). Also the commands of this machine, which the lab's setup
and a local host both run through `run_local`.

A leaf: it imports nothing from the package, so the lab can use it without SSH (remote/hosts.py adds
the SSH kind of process on top).
"""

from __future__ import annotations

import logging
import os
import selectors
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger("orchestrator.remote")

# Between SIGTERM and SIGKILL to a process group: perf under `sudo -n` only hears of TERM (sudo
# relays it, but nothing can relay KILL), and perf needs a moment to write its counts.
KILL_GRACE = 1.0


# What every command of ours runs under, on any host: files it makes are the user's alone, whatever
# umask the account's start-up files set; tools print in one locale, whatever locale they set; and
# the admin tools (sysctl, ethtool, ip) are found although sshd gives a non-root account a PATH
# without the sbin directories.
COMMAND_PREAMBLE = 'umask 077; LC_ALL=C; export LC_ALL; PATH="$PATH:/usr/sbin:/sbin"; export PATH'


def shell_quote(value: object) -> str:
    """Every value that reaches a remote or local shell goes through here, after it was validated."""
    return shlex.quote(str(value))


def log_command(host: str, command: str, exit_code: object, started: float) -> None:
    log.info("%s rc=%s %.3fs $ %s", host, exit_code, time.monotonic() - started, command)


def kill_group_script(pgid: int) -> str:
    """A POSIX sh script that ends process group `pgid`: TERM, up to KILL_GRACE for it to go, then
    KILL. Zombies do not count as alive (a PID 1 that does not reap them is common in containers);
    without ps, `kill -0` has to do. dash's kill knows no `--`, hence `-TERM -PGID`."""
    p, steps = int(pgid), max(1, int(KILL_GRACE / 0.05))
    return (
        f"kill -TERM -{p} 2>/dev/null || exit 0; "
        f"alive() {{ if command -v ps >/dev/null 2>&1; then ps -e -o pgid= -o stat= | "
        f"awk '$1 == {p} && $2 !~ /^Z/ {{ found = 1 }} END {{ exit !found }}'; else kill -0 -{p} 2>/dev/null; fi; }}; "
        f"i=0; while alive; do if [ $i -ge {steps} ]; then kill -KILL -{p} 2>/dev/null; break; fi; sleep 0.05; i=$((i+1)); done; true"
    )


class Output:
    """A command's stdout as it arrives: lines can be looked for at the start, and whatever
    follows the line found is kept as bytes (it may be a tar stream)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.consumed = 0

    def feed(self, chunk: bytes) -> None:
        self.data += chunk

    def take(self, startswith: str) -> str | None:
        prefix = startswith.encode()
        position = self.consumed
        while (end := self.data.find(b"\n", position)) != -1:
            line = bytes(self.data[position:end])
            position = end + 1
            if line.startswith(prefix):
                self.consumed = position
                return line.decode(errors="replace")
        return None

    def rest(self) -> bytes:
        return bytes(self.data[self.consumed:])


class GroupProcess:
    """A command started on a host, alone in its process group, with the verbs every kind of
    host shares: read stdout up to a line or to its end, then the exit status; and, if it has not
    ended by the time we stop caring (timeout, interrupt, close, lost connection), kill its whole
    group so that nothing of ours outlives the run. Each kind provides the few methods below the
    line "What each kind provides"; the one read loop is `_keep_reading`."""

    host: str
    command: str
    pgid: int | None

    def __init__(self, host: str, command: str, keep_stderr: bool) -> None:
        self.host, self.command, self.started = host, command, time.monotonic()
        self.output = Output()
        self.errors = bytearray()
        self.keep_stderr = keep_stderr
        self.eof = False
        self.ended = False  # exit status seen, or the group killed: nothing left to kill
        self.killed = False  # by us, just now: a signal exit is then no sign of a lost connection

    # What each kind provides.
    def _wait_output(self, timeout: float) -> None:
        """Wait up to `timeout` for output and take what came: stdout through `_got_stdout`
        (b"" at its end), stderr into `errors`."""
        raise NotImplementedError

    def _exit_status(self, deadline: float) -> int | None:
        """The exit status once stdout has ended, or None at the deadline."""
        raise NotImplementedError

    def _kill_group(self) -> str | None:
        """End the process group: None once done, "" when its shell had already ended, else a
        note for the user naming what may still run."""
        raise NotImplementedError

    def _write(self, data: bytes, timeout: float = 60.0) -> None:
        """Give the command `data` as its whole stdin."""
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError

    # Shared.
    def _got_stdout(self, chunk: bytes) -> None:
        if chunk:
            self.output.feed(chunk)
        else:
            self.eof = True

    def _keep_reading(self, deadline: float) -> bool:
        """Read one chunk of output (or wait for one until a poll step ends). True while stdout
        is open and the deadline has not passed, so more may come; False once stdout has ended or
        the deadline has passed."""
        remaining = deadline - time.monotonic()
        if self.eof or remaining <= 0:
            return False
        self._wait_output(remaining)
        return not self.eof

    def send_line(self, line: str) -> None:
        self._write(line.encode() + b"\n")

    def read_line(self, startswith: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while (line := self.output.take(startswith)) is None:
            if not self._keep_reading(deadline):
                return self.output.take(startswith)
        return line

    def finish(self, timeout: float) -> tuple[int | None, bytes]:
        deadline = time.monotonic() + timeout
        while self._keep_reading(deadline):
            pass
        code = self._exit_status(deadline)
        if code is None:
            return None, self.output.rest()
        self.ended = True
        log_command(self.host, self.command, code, self.started)
        return code, self.output.rest()

    def stderr(self) -> str:
        return self.errors.decode(errors="replace")

    def group(self, timeout: float) -> int | None:
        """The command's process group id, waiting up to `timeout` for a remote one to be reported."""
        return self.pgid

    def kill(self) -> str | None:
        """End the command's process group unless it has ended; never raises. Returns a note
        naming what may still run when the host could not be reached."""
        if self.ended:
            return None
        self.ended = True
        try:
            note = self._kill_group()
        except Exception as exc:  # noqa: BLE001 - killing is best effort and must not mask the cause
            note = f"{self.host} may still run our process group {self.pgid}: {exc}"
        if note:
            # The whole command only here: a note the user reads names the host and the group.
            log.warning("%s $ %s", note, self.command)
        elif note is None:
            self.killed = True
            log.info("%s killed process group %s $ %s", self.host, self.pgid, self.command)
        return note or None

    def close(self) -> None:
        try:
            self.kill()
        finally:
            self._release()


def run_to_end(process: GroupProcess, timeout: float, stdin: bytes | None) -> tuple[int | None, bytes, str | None]:
    """Give `process` its stdin, read it to its end and close it: (exit status, stdout, None).
    At the timeout its group is killed first and the exit status is None; the third value is
    then a note naming what may still run, if the kill could not be done."""
    try:
        process._write(stdin or b"", timeout)
        code, stdout = process.finish(max(0.0, process.started + timeout - time.monotonic()))
        if code is None:
            note = process.kill()
            log_command(process.host, process.command, "timeout", process.started)
            return None, stdout, note
        return code, stdout, None
    finally:
        process.close()


class LocalProcess(GroupProcess):
    """A command on this machine, in a session (so a process group) of its own, as sshd gives an
    SSH command."""

    def __init__(self, argv: Sequence[str], host: str, keep_stderr: bool = False, command: str | None = None) -> None:
        super().__init__(host, command if command is not None else shlex.join(argv), keep_stderr)
        self.popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pgid = self.popen.pid
        self.selector = selectors.DefaultSelector()
        assert self.popen.stdout is not None
        self.selector.register(self.popen.stdout, selectors.EVENT_READ, "out")
        if self.popen.stderr is not None:
            self.selector.register(self.popen.stderr, selectors.EVENT_READ, "err")

    def _wait_output(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            chunk = os.read(key.fileobj.fileno(), 1 << 16)  # type: ignore[union-attr]
            if not chunk:
                self.selector.unregister(key.fileobj)
            if key.data == "out":
                self._got_stdout(chunk)
            else:
                self.errors += chunk

    def _exit_status(self, deadline: float) -> int | None:
        try:
            code = self.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None
        # The rest of stderr; briefly, as a background child may hold it open.
        stderr_deadline = min(deadline, time.monotonic() + 1.0)
        while self.selector.get_map() and (remaining := stderr_deadline - time.monotonic()) > 0:
            self._wait_output(remaining)
        return code

    def _write(self, data: bytes, timeout: float = 60.0) -> None:
        # All at once: only a command of ours that reads all its stdin first is given any.
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(data)
            self.popen.stdin.close()
        except (BrokenPipeError, ValueError):  # it ended, or its stdin is already closed
            pass

    def _kill_group(self) -> str | None:
        if self.popen.poll() is not None:
            return ""  # its shell has ended (and is reaped now: the group id may be reused)
        subprocess.run(["sh", "-c", kill_group_script(self.popen.pid)], timeout=KILL_GRACE + 10, check=False)
        self.popen.wait(5)
        return None

    def _release(self) -> None:
        self.selector.close()
        for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass


@dataclass(frozen=True)
class LocalResult:
    """A finished local command; `exit_code` None: it timed out and its group was killed."""

    exit_code: int | None
    stdout: bytes
    stderr: str
    note: str | None = None  # what may still run, when a timed-out group could not be killed


def run_local(argv: Sequence[str], timeout: float, stdin: bytes | None = None, *,
              host: str = "local", command: str | None = None) -> LocalResult:  # fmt: skip
    """Run `argv` on this machine to its end, within `timeout` seconds, stdout and stderr kept."""
    process = LocalProcess(argv, host, keep_stderr=True, command=command)
    code, stdout, note = run_to_end(process, timeout, stdin)
    return LocalResult(code, stdout, process.stderr(), note)
