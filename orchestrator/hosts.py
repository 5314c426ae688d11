"""The hosts a run talks to: this machine, or a machine over one long-lived SSH connection.

Both kinds offer the same few verbs: run a command with a timeout, start a long-running
command and read its output lines, and move a folder in or out as one tar stream. A folder
moves in one round trip, which keeps the per-cell overhead of a run low.
"""

from __future__ import annotations

import io
import logging
import os
import re
import selectors
import shlex
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import fabric
import paramiko

from . import sshconnect
from .errors import HostError
from .inventory import HostSpec

log = logging.getLogger("orchestrator.remote")


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Process(Protocol):
    def send_line(self, line: str) -> None: ...
    def read_line(self, startswith: str, timeout: float) -> str | None: ...
    def finish(self, timeout: float) -> tuple[int | None, bytes]: ...
    def group(self, timeout: float) -> int | None: ...
    def kill(self) -> str | None: ...
    def close(self) -> None: ...


class Host(Protocol):
    role: str
    spec: HostSpec

    @property
    def name(self) -> str: ...
    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult: ...
    def start(self, command: str) -> Process: ...
    def push_dir(self, local: Path, remote: str, timeout: float) -> None: ...
    def fetch_dir(self, remote: str, local: Path, timeout: float) -> None: ...
    def close(self) -> None: ...


def q(value: object) -> str:
    return shlex.quote(str(value))


def _log(host: str, command: str, exit_code: object, started: float) -> None:
    log.info("%s rc=%s %.3fs $ %s", host, exit_code, time.monotonic() - started, command)


def extract_tar(tar_bytes: bytes, local: Path) -> None:
    local.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        archive.extractall(local, filter="data")


def _tar_of(local: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(local, arcname=".")
    return buffer.getvalue()


class _Output:
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


# ---------------------------------------------------------------------------- processes

# Between SIGTERM and SIGKILL to a process group: perf under `sudo -n` only hears of TERM (sudo
# relays it, but nothing can relay KILL), and perf needs a moment to write its counts.
KILL_GRACE = 1.0
# The first thing an SSH command says on stderr: its shell's pid, which is its process group's id
# too (sshd setsid()s the shell it starts for a session). Stderr, so stdout stays byte for byte
# what the command wrote (cells read a tar stream from it).
PGID_MARKER = "@@orchestrate-pgid"
_PGID_LINE = re.compile(r"^@@orchestrate-pgid (\d+)$")
# Bytes that stay as they are inside the login shell's single quotes (sh, bash, fish, csh all
# agree on these) and inside sh's double quotes and printf's format; every other byte is sent
# as a printf octal escape.
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _./,:=+-@#&|;<>(){}[]*?^~")


def login_shell_command(script: str) -> str:
    """`script` as a command line any login shell (sh, bash, fish, csh) runs the same way: it
    only execs /bin/sh, which keeps the shell's pid, so pid = process group = session still
    holds. The script travels printf-encoded (fish and csh read backslashes, quotes, `!` and
    newlines inside quotes their own way), decoded and eval'd by sh itself."""
    encoded = "".join(chr(b) if b in _PLAIN else f"\\{b:03o}" for b in script.encode())
    return f"""exec /bin/sh -c 'eval "$(printf "{encoded}")"'"""


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


class _Process:
    """A command started on a host, alone in its process group, with the verbs both kinds of
    host share: read stdout up to a line or to its end, then the exit status; and, if it has not
    ended by the time we stop caring (timeout, interrupt, close, lost connection), kill its whole
    group so that nothing of ours outlives the run."""

    host: str
    command: str
    pgid: int | None

    def __init__(self, host: str, command: str, keep_stderr: bool) -> None:
        self.host, self.command, self.started = host, command, time.monotonic()
        self.output = _Output()
        self.errors = bytearray()
        self.keep_stderr = keep_stderr
        self.eof = False
        self.ended = False  # exit status seen, or the group killed: nothing left to kill
        self.killed = False  # by us, just now: a signal exit is then no sign of a lost connection

    # What each kind of process provides.
    def _receive(self, deadline: float) -> bool:
        """Take one chunk of stdout (and any stderr); False at the deadline or the end of stdout."""
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
    def send_line(self, line: str) -> None:
        self._write(line.encode() + b"\n")

    def read_line(self, startswith: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while (line := self.output.take(startswith)) is None:
            if not self._receive(deadline):
                return self.output.take(startswith)
        return line

    def finish(self, timeout: float) -> tuple[int | None, bytes]:
        deadline = time.monotonic() + timeout
        while self._receive(deadline):
            pass
        code = self._exit_status(deadline)
        if code is None:
            return None, self.output.rest()
        self.ended = True
        _log(self.host, self.command, code, self.started)
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
            note = f"{self.host} may still run our process group {self.pgid} ({self.command}): {exc}"
        if note:
            log.warning("%s", note)
        elif note is None:
            self.killed = True
            log.info("%s killed process group %s $ %s", self.host, self.pgid, self.command)
        return note or None

    def close(self) -> None:
        try:
            self.kill()
        finally:
            self._release()


def _run_to_end(process: _Process, timeout: float, stdin: bytes | None) -> tuple[int, bytes]:
    """One command from start to exit status; on a timeout or an interrupt its group is killed."""
    try:
        process._write(stdin or b"", timeout)
        code, stdout = process.finish(max(0.0, process.started + timeout - time.monotonic()))
        if code is None:
            note = process.kill()
            _log(process.host, process.command, "timeout", process.started)
            raise HostError(process.host, f"command timed out after {timeout:g}s: {process.command}" + (f" ({note})" if note else ""))
        return code, stdout
    finally:
        process.close()


# ---------------------------------------------------------------------------- this machine


class LocalProcess(_Process):
    def __init__(self, command: str, host: str, keep_stderr: bool = False) -> None:
        super().__init__(host, command, keep_stderr)
        self.popen = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if keep_stderr else subprocess.DEVNULL,
            start_new_session=True,  # its own process group, as sshd gives an SSH command
        )
        self.pgid = self.popen.pid
        self.selector = selectors.DefaultSelector()
        assert self.popen.stdout is not None
        self.selector.register(self.popen.stdout, selectors.EVENT_READ, "out")
        if self.popen.stderr is not None:
            self.selector.register(self.popen.stderr, selectors.EVENT_READ, "err")

    def _read_ready(self, deadline: float) -> bool:
        """Read whatever is ready before the deadline; False at the deadline or with nothing open."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self.selector.get_map():
            return False
        events = self.selector.select(remaining)
        for key, _ in events:
            chunk = os.read(key.fileobj.fileno(), 1 << 16)  # type: ignore[union-attr]
            if not chunk:
                self.selector.unregister(key.fileobj)
                if key.data == "out":
                    self.eof = True
            elif key.data == "out":
                self.output.feed(chunk)
            else:
                self.errors += chunk
        return bool(events)

    def _receive(self, deadline: float) -> bool:
        return not self.eof and self._read_ready(deadline) and not self.eof

    def _exit_status(self, deadline: float) -> int | None:
        try:
            code = self.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None
        # The rest of stderr; briefly, as a background child may hold it open.
        stderr_deadline = min(deadline, time.monotonic() + 1.0)
        while self._read_ready(stderr_deadline):
            pass
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


class LocalHost:
    def __init__(self, role: str, spec: HostSpec) -> None:
        self.role, self.spec = role, spec

    @property
    def name(self) -> str:
        return f"{self.role} (local)"

    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult:
        process = LocalProcess(command, self.name, keep_stderr=True)
        code, stdout = _run_to_end(process, timeout, stdin)
        return CommandResult(command, code, stdout.decode(errors="replace"), process.stderr())

    def start(self, command: str) -> LocalProcess:
        return LocalProcess(command, self.name)

    def push_dir(self, local: Path, remote: str, timeout: float) -> None:
        try:
            shutil.copytree(local, remote, dirs_exist_ok=True)
        except OSError as exc:
            raise HostError(self.name, f"could not copy into {remote}: {exc}") from None

    def fetch_dir(self, remote: str, local: Path, timeout: float) -> None:
        try:
            if Path(remote).resolve() != local.resolve():
                shutil.copytree(remote, local, dirs_exist_ok=True)
        except OSError as exc:
            raise HostError(self.name, f"could not fetch {remote}: {exc}") from None

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------- over SSH


class SshProcess(_Process):
    """A command on an SSH channel of the host's one connection. `own_group=False` is for our
    own short helpers (the kill script): they report no process group and are never killed."""

    def __init__(self, host: "SshHost", command: str, keep_stderr: bool = False, own_group: bool = True) -> None:
        super().__init__(host.name, command, keep_stderr)
        self.ssh_host, self.own_group = host, own_group
        self.pgid = None
        self.channel = host._channel()
        try:
            self.channel.exec_command(login_shell_command(f"echo {PGID_MARKER} $$ >&2; {command}" if own_group else command))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.channel.close()
            raise HostError(self.host, f"connection lost: {exc}") from None
        if not own_group:
            self.ended = True

    def _take_stderr(self) -> None:
        while self.channel.recv_stderr_ready():
            self._feed_stderr(self.channel.recv_stderr(1 << 16))

    def _feed_stderr(self, chunk: bytes) -> None:
        if self.pgid is None and self.own_group:
            self.errors += chunk
            marker = PGID_MARKER.encode() + b" "
            start = self.errors.find(marker)
            end = self.errors.find(b"\n", start) if start != -1 else -1
            if end != -1:
                line = self.errors[start:end].decode(errors="replace")
                found = _PGID_LINE.match(line)
                if not found:
                    self.ended = True  # nothing we could name to kill
                    raise HostError(self.host, f"the remote shell did not report its process group as expected "
                                               f"(it said {line[:120]!r}); is /bin/sh a POSIX shell there?")
                self.pgid = int(found.group(1))
                del self.errors[start:end + 1]  # the marker line is ours, not the command's
        elif self.keep_stderr:
            self.errors += chunk
        if not self.keep_stderr and self.pgid is not None:
            self.errors.clear()

    def _receive(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.eof:
            return False
        self.channel.settimeout(min(remaining, 0.5))
        try:
            chunk = self.channel.recv(1 << 16)
        except socket.timeout:
            chunk = None
        except (paramiko.SSHException, OSError, EOFError):
            chunk = b""  # a dead connection: the exit status tells us so
        self._take_stderr()
        if chunk == b"":
            self.eof = True
            return False
        if chunk:
            self.output.feed(chunk)
        return True

    def _exit_status(self, deadline: float) -> int | None:
        if not self.channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            return None
        self._take_stderr()
        code = self.channel.recv_exit_status()
        if code == -1 and not self.killed and self._connection_lost():
            note = self.kill()
            _log(self.host, self.command, "lost", self.started)
            raise HostError(self.host, "connection lost while a command ran" + (f" ({note})" if note else ""))
        # -1 on a live connection: sshd sent exit-signal (paramiko keeps no number for it).
        return code

    def _connection_lost(self) -> bool:
        """A channel closes without an exit status both when its process dies of a signal and
        when the connection dies; in the second case the transport stops soon after."""
        transport = self.channel.get_transport()
        deadline = time.monotonic() + 1.0
        while transport is not None and transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.05)
        return transport is None or not transport.is_active()

    def _write(self, data: bytes, timeout: float = 60.0) -> None:
        try:
            self.channel.settimeout(timeout)
            if data:
                self.channel.sendall(data)
            self.channel.shutdown_write()
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(self.host, f"connection lost: {exc}") from None

    def _await_pgid(self, timeout: float) -> None:
        """The process group id comes first on stderr; it may still be on its way."""
        deadline = time.monotonic() + timeout
        while self.pgid is None and not self.channel.closed and time.monotonic() < deadline:
            self.channel.settimeout(min(0.2, max(0.01, deadline - time.monotonic())))
            try:
                chunk = self.channel.recv_stderr(1 << 16)
            except socket.timeout:
                continue
            except (paramiko.SSHException, OSError, EOFError):
                break
            if not chunk:
                break
            self._feed_stderr(chunk)
        self._take_stderr()

    def group(self, timeout: float) -> int | None:
        if self.pgid is None and self.own_group:
            self._await_pgid(timeout)
        return self.pgid

    def _kill_group(self) -> str | None:
        transport = self.channel.get_transport()
        if self.channel.exit_status_ready() and transport is not None and transport.is_active():
            return ""  # its shell has ended; its group id may be reused by now
        self._await_pgid(max(2.0, self.ssh_host.connect_timeout))
        if self.pgid is None:
            return f"{self.host} may still run our command (its process group is unknown): {self.command}"
        return self.ssh_host.kill_group(self.pgid, self.command)

    def _release(self) -> None:
        self.channel.close()


class SshHost:
    def __init__(self, role: str, spec: HostSpec, connect_timeout: float, ssh_config: str | None = None) -> None:
        self.role, self.spec = role, spec
        self.connect_timeout = connect_timeout
        self.ssh_config = ssh_config
        self._route: sshconnect.Route | None = None
        self._lock = threading.Lock()  # a kill may reconnect while another thread uses the host

    @property
    def name(self) -> str:
        return f"{self.role} ({self.spec.label})"

    def _connect(self) -> fabric.Connection:
        with self._lock:
            if self._route is not None and self._route.target.is_connected:
                return self._route.target
            self._drop()
            self._route = sshconnect.connect(self.spec, self.ssh_config, self.connect_timeout, self.name)
            return self._route.target

    def _channel(self) -> paramiko.Channel:
        transport = self._connect().client.get_transport()
        try:
            assert transport is not None
            return transport.open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostError(self.name, f"connection lost: {exc}") from None

    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult:
        result, stdout = self._run_binary(command, timeout, stdin)
        return CommandResult(command, result.exit_code, stdout.decode(errors="replace"), result.stderr)

    def _run_binary(self, command: str, timeout: float, stdin: bytes | None) -> tuple[CommandResult, bytes]:
        process = SshProcess(self, command, keep_stderr=True)
        code, stdout = _run_to_end(process, timeout, stdin)
        return CommandResult(command, code, "", process.stderr()), stdout

    def start(self, command: str) -> SshProcess:
        return SshProcess(self, command)

    def kill_group(self, pgid: int, command: str) -> str | None:
        """TERM then KILL to one of our process groups, over a fresh channel; reconnects once if the
        connection died. A note naming the host and group when that cannot be done."""
        problem = "no answer"
        for _ in range(2):
            try:
                killer = SshProcess(self, kill_group_script(pgid), own_group=False)
                try:
                    killer._write(b"")
                    code, _ = killer.finish(KILL_GRACE + self.connect_timeout + 5)
                finally:
                    killer.close()
                if code == 0:
                    return None
                problem = f"the kill command ended with {code}"
            except HostError as exc:
                problem = str(exc)
                self.close()  # a dead connection: the second attempt reconnects
        return f"{self.name} may still run our process group {pgid} ({command}): could not kill it: {problem}"

    def push_dir(self, local: Path, remote: str, timeout: float) -> None:
        result, _ = self._run_binary(f"mkdir -p {q(remote)} && tar -C {q(remote)} -xf -", timeout, _tar_of(local))
        if not result.ok:
            raise HostError(self.name, f"could not unpack into {remote}: {result.stderr.strip()}")

    def fetch_dir(self, remote: str, local: Path, timeout: float) -> None:
        result, data = self._run_binary(f"tar -C {q(remote)} -cf - .", timeout, None)
        if not result.ok:
            raise HostError(self.name, f"could not fetch {remote}: {result.stderr.strip()}")
        extract_tar(data, local)

    def _drop(self) -> None:
        if self._route is not None:
            self._route.close()
            self._route = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def connect(role: str, spec: HostSpec, connect_timeout: float, ssh_config: str | None = None) -> Host:
    """A host ready for commands; `ssh_config` replaces ~/.ssh/config (the inventory's `ssh_config:`)."""
    if spec.is_local:
        return LocalHost(role, spec)
    host = SshHost(role, spec, connect_timeout, ssh_config)
    host._connect()
    return host
