"""The hosts a run talks to: this machine, or a machine over one long-lived SSH connection.

Both kinds offer the same few verbs: run a command with a timeout, start a long-running
command and read its output lines, and move a folder in or out as one tar stream. A folder
moves in one round trip, which keeps the per-cell overhead of a run low. How a started command
is read and killed is processes.py's, for both kinds.
"""

from __future__ import annotations

import io
import re
import shutil
import socket
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, Protocol

import fabric
import paramiko

from . import sshconnect
from ..errors import HostError
from ..experiment.inventory import HostSpec
from ..processes import COMMAND_PREAMBLE, KILL_GRACE, GroupProcess, LocalProcess, kill_group_script, log, log_command, run_local, run_to_end, shell_quote


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
    shell_output: dict[str, bytes]  # what the login shell printed before our commands, per stream
    shell_startup: float  # seconds from asking for a command's session to our command running (the slowest seen)

    @property
    def name(self) -> str: ...
    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult: ...
    def start(self, command: str) -> Process: ...
    def push_dir(self, local: Path, remote: str, timeout: float) -> None: ...
    def fetch_dir(self, remote: str, local: Path, timeout: float) -> None: ...
    def close(self) -> None: ...


def extract_tar(tar_bytes: bytes, local: Path) -> None:
    local.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        archive.extractall(local, filter="data")


def _tar_of(local: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(local, arcname=".")
    return buffer.getvalue()


# ---------------------------------------------------------------------------- SSH command lines

# An SSH command runs under the account's login shell, whose start-up files (.bashrc, conda,
# modules) may print anything on stdout and stderr before our command starts. So our sh first
# writes a marker on each: on stderr its pid, which is its process group's id too (sshd setsid()s
# the shell it starts for a session); on stdout a plain marker line. Whatever comes before a
# marker is the login shell's, never the command's, and is set aside (SshHost.shell_output);
# what follows is byte for byte what the command wrote (cells read a tar stream from it).
PGID_MARKER = "@@orchestrate-pgid"
_PGID_LINE = re.compile(r"^@@orchestrate-pgid (\d+)$")
STDOUT_MARKER = b"@@orchestrate-stdout\n"
# What the login shell may print before the marker; more than this, and it is no start-up banner.
SHELL_OUTPUT_LIMIT = 1 << 20
SHELL_OUTPUT_KEPT = 4096  # of it, kept to tell the user
# Bytes that stay as they are inside the login shell's single quotes (sh, bash, fish, csh all
# agree on these) and inside sh's double quotes and printf's format; every other byte is sent
# as a printf octal escape.
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _./,:=+-@#&|;<>(){}[]*?^~")


def _escaped(text: str) -> str:
    """`text` for printf's format with its last letter as an octal escape: a login shell that
    echoes the command line it runs (`set -x` or `set -v` in a .bashrc, csh's `echo`) then never
    prints the marker itself, only our command does."""
    return text[:-1] + f"\\{ord(text[-1]):03o}"


def framed(command: str) -> str:
    """`command` behind our markers (see PGID_MARKER), under COMMAND_PREAMBLE."""
    return (f"printf '{_escaped(PGID_MARKER)} %s\\n' $$ >&2; printf '{_escaped(STDOUT_MARKER.decode().strip())}\\n'; "
            f"{COMMAND_PREAMBLE}; {command}")


def login_shell_command(script: str) -> str:
    """`script` as a command line any login shell (sh, bash, fish, csh) runs the same way: it
    only execs /bin/sh, which keeps the shell's pid, so pid = process group = session still
    holds. The script travels printf-encoded (fish and csh read backslashes, quotes, `!` and
    newlines inside quotes their own way), decoded and eval'd by sh itself."""
    encoded = "".join(chr(b) if b in _PLAIN else f"\\{b:03o}" for b in script.encode())
    return f"""exec /bin/sh -c 'eval "$(printf "{encoded}")"'"""


def _timed_out(host: str, command: str, timeout: float, note: str | None) -> NoReturn:
    raise HostError(host, f"command timed out after {timeout:g}s: {command}" + (f" ({note})" if note else ""))


# ---------------------------------------------------------------------------- this machine


class LocalHost:
    def __init__(self, role: str, spec: HostSpec) -> None:
        self.role, self.spec = role, spec
        self.shell_output: dict[str, bytes] = {}  # no login shell runs here
        self.shell_startup = 0.0

    @property
    def name(self) -> str:
        return f"{self.role} (local)"

    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult:
        done = run_local(["sh", "-c", f"{COMMAND_PREAMBLE}; {command}"], timeout, stdin, host=self.name, command=command)
        if done.exit_code is None:
            _timed_out(self.name, command, timeout, done.note)
        return CommandResult(command, done.exit_code, done.stdout.decode(errors="replace"), done.stderr)

    def start(self, command: str) -> LocalProcess:
        return LocalProcess(["sh", "-c", f"{COMMAND_PREAMBLE}; {command}"], self.name, command=command)

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


class SshProcess(GroupProcess):
    """A command on an SSH channel of the host's one connection. `own_group=False` is for our
    own short helpers (the kill script): they report no process group and are never killed."""

    def __init__(self, host: "SshHost", command: str, keep_stderr: bool = False, own_group: bool = True,
                 timed: bool = False) -> None:
        super().__init__(host.name, command, keep_stderr)
        # timed: read from its start (a short command), so the marker's arrival times the session's start-up;
        # a gated command's stderr waits unread until its cell comes.
        self.ssh_host, self.own_group, self.timed = host, own_group, timed
        self.pgid = None
        self.before = {"stdout": bytearray(), "stderr": bytearray()}  # the login shell's, until each marker
        self.framed = {"stdout": False, "stderr": False}
        self.channel = host._channel()
        try:
            self.channel.exec_command(login_shell_command(framed(command)))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.channel.close()
            raise HostError(self.host, f"connection lost: {exc}") from None
        if not own_group:
            self.ended = True

    def _take_stderr(self) -> None:
        while self.channel.recv_stderr_ready():
            self._feed_stderr(self.channel.recv_stderr(1 << 16))

    def _shell_said(self, stream: str, chunk: bytes) -> bytes | None:
        """`chunk` of `stream` while its marker has not come: the login shell's bytes are kept
        aside, and what follows the marker is returned (None while it has not come)."""
        before = self.before[stream]
        before += chunk
        marker = STDOUT_MARKER if stream == "stdout" else PGID_MARKER.encode() + b" "
        start = before.find(marker)
        if start == -1:
            if len(before) > SHELL_OUTPUT_LIMIT:
                self.ended = True  # our command never started: nothing of ours to kill
                raise HostError(self.host, f"the login shell printed over {SHELL_OUTPUT_LIMIT} bytes on {stream} "
                                           f"before our command started: {bytes(before[:120])!r}")
            return None
        self.framed[stream] = True
        self.ssh_host.heard_shell(stream, bytes(before[:start]))
        rest = bytes(before[start:])
        before.clear()
        if stream == "stdout":
            return rest[len(STDOUT_MARKER):]
        end = rest.find(b"\n")
        if end == -1:  # the pgid line is not whole yet: wait for the rest of it
            self.framed[stream] = False
            before += rest
            return None
        line = rest[:end].decode(errors="replace")
        found = _PGID_LINE.match(line)
        if not found:
            self.ended = True  # nothing we could name to kill
            raise HostError(self.host, f"the remote shell did not report its process group as expected "
                                       f"(it said {line[:120]!r}); is /bin/sh a POSIX shell there?")
        if self.own_group:
            self.pgid = int(found.group(1))
        if self.timed:
            self.ssh_host.shell_started(time.monotonic() - self.started)
        return rest[end + 1:]

    def _got_stdout(self, chunk: bytes) -> None:
        if chunk and not self.framed["stdout"]:
            chunk = self._shell_said("stdout", chunk) or b""
            if not chunk:
                return
        super()._got_stdout(chunk)

    def _feed_stderr(self, chunk: bytes) -> None:
        if not self.framed["stderr"]:
            chunk = self._shell_said("stderr", chunk) or b""
        if self.keep_stderr:
            self.errors += chunk

    def _wait_output(self, timeout: float) -> None:
        self.channel.settimeout(min(timeout, 0.5))
        try:
            chunk: bytes | None = self.channel.recv(1 << 16)
        except socket.timeout:
            chunk = None
        except (paramiko.SSHException, OSError, EOFError):
            chunk = b""  # a dead connection: the exit status tells us so
        self._take_stderr()
        if chunk is not None:
            self._got_stdout(chunk)

    def _exit_status(self, deadline: float) -> int | None:
        if not self.channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            return None
        self._take_stderr()
        code = self.channel.recv_exit_status()
        if code == -1 and not self.killed and self._connection_lost():
            note = self.kill()
            log_command(self.host, self.command, "lost", self.started)
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
            return f"{self.host} may still run our command (its process group is unknown)"
        return self.ssh_host.kill_group(self.pgid)

    def _release(self) -> None:
        self.channel.close()


class SshHost:
    def __init__(self, role: str, spec: HostSpec, connect_timeout: float, ssh_config: str | None = None) -> None:
        self.role, self.spec = role, spec
        self.connect_timeout = connect_timeout
        self.ssh_config = ssh_config
        self._route: sshconnect.Route | None = None
        self._lock = threading.Lock()  # a kill may reconnect while another thread uses the host
        # What the account's login shell printed before our commands, per stream (the first time).
        self.shell_output: dict[str, bytes] = {}
        self.shell_startup = 0.0  # the slowest start of a command's session seen: sshd, the login shell, its files

    def shell_started(self, seconds: float) -> None:
        self.shell_startup = max(self.shell_startup, seconds)

    def heard_shell(self, stream: str, data: bytes) -> None:
        if data and stream not in self.shell_output:
            self.shell_output[stream] = data[:SHELL_OUTPUT_KEPT]
            # Its size only: the run folder holds what we measured, never the site's banner.
            log.info("%s: the login shell printed %d bytes on %s before our command; set aside", self.name, len(data), stream)

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
        process = SshProcess(self, command, keep_stderr=True, timed=True)
        code, stdout, note = run_to_end(process, timeout, stdin)
        if code is None:
            _timed_out(self.name, command, timeout, note)
        return CommandResult(command, code, "", process.stderr()), stdout

    def start(self, command: str) -> SshProcess:
        return SshProcess(self, command)

    def kill_group(self, pgid: int) -> str | None:
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
        # The command is in run.log (GroupProcess.kill); the note is for the user's terminal.
        return f"{self.name} may still run our process group {pgid}: could not kill it: {problem}"

    def push_dir(self, local: Path, remote: str, timeout: float) -> None:
        result, _ = self._run_binary(f"mkdir -p {shell_quote(remote)} && tar -C {shell_quote(remote)} -xf -", timeout, _tar_of(local))
        if not result.ok:
            raise HostError(self.name, f"could not unpack into {remote}: {result.stderr.strip()}")

    def fetch_dir(self, remote: str, local: Path, timeout: float) -> None:
        result, data = self._run_binary(f"tar -C {shell_quote(remote)} -cf - .", timeout, None)
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
