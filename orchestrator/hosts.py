"""The hosts a run talks to: this machine, or a machine over one long-lived SSH connection.

Both kinds offer the same few verbs: run a command with a timeout, start a long-running
command and read its output lines, and move a folder in or out as one tar stream. A folder
moves in one round trip, which keeps the per-cell overhead of a run low.
"""

from __future__ import annotations

import io
import logging
import os
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import fabric
import paramiko

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


# ---------------------------------------------------------------------------- this machine


class _StreamingProcess:
    """What both kinds of process share: reading stdout up to a line, or to its end."""

    output: _Output
    eof: bool

    def _receive(self, deadline: float) -> bool:
        """Take one chunk of stdout; False at the deadline or at the end of output."""
        raise NotImplementedError

    def read_line(self, startswith: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while (line := self.output.take(startswith)) is None:
            if not self._receive(deadline):
                return self.output.take(startswith)
        return line

    def _drain(self, deadline: float) -> None:
        while self._receive(deadline):
            pass


class LocalProcess(_StreamingProcess):
    def __init__(self, command: str, host: str) -> None:
        self.command, self.host, self.started = command, host, time.monotonic()
        self.popen = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.output = _Output()
        self.eof = False
        self.selector = selectors.DefaultSelector()
        assert self.popen.stdout is not None
        self.selector.register(self.popen.stdout, selectors.EVENT_READ)

    def _receive(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.eof:
            return False
        if not self.selector.select(remaining):
            return False
        assert self.popen.stdout is not None
        chunk = os.read(self.popen.stdout.fileno(), 1 << 16)
        if not chunk:
            self.eof = True
            return False
        self.output.feed(chunk)
        return True

    def send_line(self, line: str) -> None:
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(line.encode() + b"\n")
            self.popen.stdin.close()
        except BrokenPipeError:
            pass

    def finish(self, timeout: float) -> tuple[int | None, bytes]:
        deadline = time.monotonic() + timeout
        self._drain(deadline)
        try:
            code = self.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return None, self.output.rest()
        _log(self.host, self.command, code, self.started)
        return code, self.output.rest()

    def close(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait()
        self.selector.close()
        if self.popen.stdin and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass
        if self.popen.stdout:
            self.popen.stdout.close()


class LocalHost:
    def __init__(self, role: str, spec: HostSpec) -> None:
        self.role, self.spec = role, spec

    @property
    def name(self) -> str:
        return f"{self.role} (local)"

    def run(self, command: str, timeout: float, stdin: bytes | None = None) -> CommandResult:
        started = time.monotonic()
        with subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        ) as process:
            try:
                stdout, stderr = process.communicate(stdin or b"", timeout=timeout)
            except subprocess.TimeoutExpired:
                # The whole process group: a hung compiler or perf under the shell goes too.
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                _log(self.name, command, "timeout", started)
                raise HostError(self.name, f"command timed out after {timeout:g}s: {command}") from None
        _log(self.name, command, process.returncode, started)
        return CommandResult(command, process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

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


class SshProcess(_StreamingProcess):
    """A command on an SSH channel of the host's one connection."""

    def __init__(self, channel: paramiko.Channel, command: str, host: str) -> None:
        self.channel, self.command, self.host, self.started = channel, command, host, time.monotonic()
        self.output = _Output()
        self.eof = False
        channel.exec_command(command)

    def send_line(self, line: str) -> None:
        try:
            self.channel.sendall(line.encode() + b"\n")
            self.channel.shutdown_write()
        except (OSError, paramiko.SSHException) as exc:
            raise HostError(self.host, f"connection lost: {exc}") from None

    def _receive(self, deadline: float) -> bool:
        """One chunk of stdout, or False at the deadline or the end of output."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.eof:
            return False
        self.channel.settimeout(min(remaining, 1.0))
        try:
            chunk = self.channel.recv(1 << 16)
        except socket.timeout:
            return True
        if not chunk:
            self.eof = True
            return False
        self.output.feed(chunk)
        return True

    def finish(self, timeout: float) -> tuple[int | None, bytes]:
        deadline = time.monotonic() + timeout
        self._drain(deadline)
        if not self.channel.status_event.wait(max(0.0, deadline - time.monotonic())):
            return None, self.output.rest()
        code = self.channel.recv_exit_status()
        _log(self.host, self.command, code, self.started)
        if code == -1 and self._connection_lost():
            raise HostError(self.host, "connection lost while a command ran")
        # -1 on a live connection: sshd sent exit-signal (paramiko keeps no number for it).
        return code, self.output.rest()

    def _connection_lost(self) -> bool:
        """A channel closes without an exit status both when its process dies of a signal and
        when the connection dies; in the second case the transport stops soon after."""
        transport = self.channel.get_transport()
        deadline = time.monotonic() + 1.0
        while transport is not None and transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.05)
        return transport is None or not transport.is_active()

    def close(self) -> None:
        self.channel.close()


class SshHost:
    def __init__(self, role: str, spec: HostSpec, connect_timeout: float) -> None:
        self.role, self.spec = role, spec
        self.connect_timeout = connect_timeout
        self._connection: fabric.Connection | None = None

    @property
    def name(self) -> str:
        return f"{self.role} ({self.spec.label})"

    def _connect(self) -> fabric.Connection:
        if self._connection is not None and self._connection.is_connected:
            return self._connection
        spec = self.spec
        connect_kwargs: dict[str, object] = {"banner_timeout": self.connect_timeout, "auth_timeout": self.connect_timeout}
        if spec.key:
            connect_kwargs["key_filename"] = [spec.key]
            connect_kwargs["look_for_keys"] = False
            connect_kwargs["allow_agent"] = False
        connection = fabric.Connection(
            spec.host, user=spec.user, port=spec.port, connect_timeout=self.connect_timeout,
            connect_kwargs=connect_kwargs,
        )
        # Fabric accepts unknown host keys by default; a benchmark host must be the one we think.
        connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            if spec.known_hosts:
                connection.client.load_host_keys(spec.known_hosts)
            else:
                connection.client.load_system_host_keys()
            connection.open()
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                where = spec.known_hosts or "~/.ssh/known_hosts"
                raise HostError(self.name, f"unknown host key (not in {where}); verify the host and add its key, e.g. ssh-keyscan") from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise HostError(self.name, f"SSH authentication failed: {exc}") from None
            raise HostError(self.name, f"SSH failed: {exc}") from None
        except (OSError, EOFError) as exc:
            raise HostError(self.name, f"cannot connect: {exc}") from None
        transport = connection.client.get_transport()
        assert transport is not None
        # Keepalives turn a dead host into an error instead of a hang.
        transport.set_keepalive(5)
        # Each channel open is a small request and reply; Nagle would add a delayed ACK's 40 ms.
        transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connection = connection
        return connection

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
        """A command on its own channel, with a deadline of our own: invoke's timeout, under
        load, sometimes lets a command outlive it."""
        started = time.monotonic()
        channel = self._channel()
        deadline = started + timeout
        out, err = bytearray(), bytearray()
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout()
                channel.settimeout(min(1.0, remaining))
                try:
                    chunk = channel.recv(1 << 16)
                except socket.timeout:
                    chunk = None
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(1 << 16)
                if chunk:
                    out += chunk
                elif chunk == b"":  # end of stdout: what is left is the exit status
                    if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                        raise socket.timeout()
                    while channel.recv_stderr_ready():
                        err += channel.recv_stderr(1 << 16)
                    break
            code = channel.recv_exit_status()
            transport = channel.get_transport()
            if code == -1 and (transport is None or not transport.is_active()):
                raise EOFError("the connection closed before the command's exit status came")
        except socket.timeout:
            _log(self.name, command, "timeout", started)
            raise HostError(self.name, f"command timed out after {timeout:g}s: {command}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            _log(self.name, command, "lost", started)
            raise HostError(self.name, f"connection lost: {exc}") from None
        finally:
            channel.close()
        _log(self.name, command, code, started)
        return CommandResult(command, code, "", err.decode(errors="replace")), bytes(out)

    def start(self, command: str) -> SshProcess:
        channel = self._channel()
        try:
            return SshProcess(channel, command, self.name)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            raise HostError(self.name, f"connection lost: {exc}") from None

    def push_dir(self, local: Path, remote: str, timeout: float) -> None:
        result, _ = self._run_binary(f"mkdir -p {q(remote)} && tar -C {q(remote)} -xf -", timeout, _tar_of(local))
        if not result.ok:
            raise HostError(self.name, f"could not unpack into {remote}: {result.stderr.strip()}")

    def fetch_dir(self, remote: str, local: Path, timeout: float) -> None:
        result, data = self._run_binary(f"tar -C {q(remote)} -cf - .", timeout, None)
        if not result.ok:
            raise HostError(self.name, f"could not fetch {remote}: {result.stderr.strip()}")
        extract_tar(data, local)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def connect(role: str, spec: HostSpec, connect_timeout: float) -> Host:
    if spec.is_local:
        return LocalHost(role, spec)
    host = SshHost(role, spec, connect_timeout)
    host._connect()
    return host
