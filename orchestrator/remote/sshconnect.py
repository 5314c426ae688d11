"""One SSH connection to a host, opened hop by hop: through the inventory's `jump:` bastion, or
the ProxyJump / ProxyCommand its ssh_config gives, with every hop's host key checked.

Fabric's own gateway handling is not used as is: it accepts unknown keys on gateways
(AutoAddPolicy), visits a ProxyJump chain `a,b` in reverse, rounds a connect timeout down to
whole seconds (0.5 s becomes no timeout) and opens the gateway channel with a 1 h timeout.
Here each hop is a Fabric Connection of its own, opened in order, so a failure names its hop.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from select import select

import fabric
import paramiko

from ..errors import ConfigError, HostError
from ..experiment.inventory import HostSpec, JumpSpec

KEEPALIVE_SECONDS = 5  # a dead hop becomes an error instead of a hang
USER_KNOWN_HOSTS = "~/.ssh/known_hosts"
MAX_HOPS = 8  # a ProxyJump loop in an ssh_config ends here instead of recursing forever
_JUMP_ENTRY = re.compile(r"^(?:ssh://)?(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:\s]+)(?::(?P<port>\d+))?$")
STDERR_KEPT = 4096  # bytes of a ProxyCommand's stderr kept (the last ones): a chatty `ssh -v` costs no more
STDERR_QUOTED = 600  # characters of it that an error message quotes (the last ones: where ssh says why)
PROXY_EXIT_WAIT = 2.0  # seconds a ProxyCommand whose output ended is given to exit and finish its stderr
PROXY_ENDED_WAIT = 0.5  # seconds, after a failed connect, for its ProxyCommand to exit if it is the cause


def proxy_failure(command: str, status: int | None, stderr: str) -> str:
    """What a ProxyCommand that failed did, for the error of the hop behind it: its exit status and
    the end of what it printed on stderr (where OpenSSH says why it gave up), on one line."""
    return f"`{command}` {_outcome(status, stderr)}"


def _outcome(status: int | None, stderr: str) -> str:
    said = _one_line(stderr)
    if status is None:
        how = "is still running"
    elif status < 0:
        how = f"was killed by {_signal_name(-status)}"
    else:
        how = f"exited with status {status}"
    return how + (f' and said: "{said}"' if said else ", saying nothing on stderr")


def _one_line(stderr: str) -> str:
    """The end of a child's stderr as one line of printable text, at most STDERR_QUOTED characters."""
    said = " ".join(line.strip() for line in stderr.splitlines() if line.strip())
    said = "".join(c if c.isprintable() else "?" for c in said)  # no terminal escapes from a remote banner
    return "…" + said[-(STDERR_QUOTED - 1):] if len(said) > STDERR_QUOTED else said


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _ProxyCommand(paramiko.ProxyCommand):
    """paramiko's ProxyCommand, keeping the end of the child's stderr for the error message, and
    ending when the child's output ends (paramiko's recv spins until the banner timeout instead)."""

    def __init__(self, command_line: str):
        super().__init__(command_line)
        self.command = command_line
        self.stopped = False  # ended by close(), not on its own
        self._stderr = bytearray()
        self._lock = threading.Lock()
        # Hand-written: paramiko pipes the child's stderr but never reads it, so a chatty child would block on a full pipe.
        self._reader = threading.Thread(target=self._drain, name="proxycommand-stderr", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        stream = self.process.stderr
        try:
            while chunk := os.read(stream.fileno(), 4096):
                with self._lock:
                    self._stderr += chunk
                    del self._stderr[:-STDERR_KEPT]
        except (OSError, ValueError):
            pass
        finally:
            stream.close()

    @property
    def stderr(self) -> str:
        with self._lock:
            return self._stderr.decode("utf-8", "replace")

    def ended(self, wait: float = 0) -> int | None:
        """The child's exit status once it has exited (its stderr then read to the end), else None;
        `wait`: seconds it may take to exit first."""
        try:
            status = self.process.wait(wait) if wait else self.process.poll()
        except subprocess.TimeoutExpired:
            status = None
        if status is not None:
            self._reader.join(PROXY_EXIT_WAIT)
        return status

    def failure(self) -> str:
        return proxy_failure(self.command, self.ended(), self.stderr)

    def recv(self, size: int) -> bytes:
        try:
            ready, _, _ = select([self.process.stdout], [], [], self.timeout)
            if not ready:
                raise socket.timeout()
            data = os.read(self.process.stdout.fileno(), size)
        except socket.timeout:
            raise
        except (OSError, ValueError) as exc:
            raise paramiko.ProxyCommandFailure(self.command, str(exc)) from None
        if not data:
            try:
                self.process.wait(PROXY_EXIT_WAIT)
            except subprocess.TimeoutExpired:
                pass
            raise paramiko.ProxyCommandFailure(self.command, f"its output ended: it {_outcome(self.ended(), self.stderr)}")
        return data

    def close(self) -> None:
        """Never raises: paramiko's transport thread closes its socket last, and an error there
        would be printed by the thread (paramiko's own kills a pid that may be reaped already)."""
        try:
            if self.process.poll() is None:
                self.stopped = True
                self.process.terminate()
                try:
                    self.process.wait(PROXY_EXIT_WAIT)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(PROXY_EXIT_WAIT)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _Connection(fabric.Connection):
    """A Fabric connection whose gateway channel honours our connect timeout (Fabric's waits up to 1 h)."""

    proxy: _ProxyCommand | None = None  # a class attribute, so Fabric keeps it off its config

    def open_gateway(self):
        if isinstance(self.gateway, fabric.Connection):
            return self.gateway.transport.open_channel(
                "direct-tcpip", (self.host, int(self.port)), ("", 0), timeout=self.connect_timeout
            )
        self.proxy = _ProxyCommand(self.gateway)
        return self.proxy


@dataclass
class Hop:
    """One SSH connection of a route: a bastion, or the host itself (the last hop)."""

    label: str  # how messages name it
    connection: _Connection
    known_hosts: list[str]  # files its host key must be in
    via: str | None = None  # the hop or ProxyCommand in front of it, for messages


@dataclass
class Route:
    hops: list[Hop] = field(default_factory=list)

    @property
    def target(self) -> _Connection:
        return self.hops[-1].connection

    def close(self) -> None:
        for hop in reversed(self.hops):
            try:
                hop.connection.close()
            except Exception:  # closing is best effort; a dead hop has nothing left to close
                pass
            if hop.connection.proxy is not None:  # a hop that never got its SSH session still has its child
                hop.connection.proxy.close()


def fabric_config(ssh_config: str | None) -> fabric.Config:
    """The inventory's ssh_config file instead of ~/.ssh/config, as `ssh -F` does; else ssh's own files."""
    path = Path(ssh_config).expanduser() if ssh_config else None
    if path is not None and not path.is_file():
        raise ConfigError(f"ssh_config {path}: no such file")
    try:
        return fabric.Config(runtime_ssh_path=str(path)) if path else fabric.Config()
    except (OSError, ValueError) as exc:  # paramiko's parser raises ValueError on a malformed line
        raise ConfigError(f"ssh_config {path or '~/.ssh/config'}: {exc}") from None


def _known_hosts_files(value: str | None) -> list[str]:
    """UserKnownHostsFile may name several files; ~ is not expanded by paramiko's parser."""
    return [os.path.expanduser(p) for p in (value or "").split()]


def _connection(host: str, user: str | None, port: int | None, key: str | None, config: fabric.Config,
                timeout: float) -> _Connection:
    """One hop, not yet open, with no gateway of its own yet (Fabric's would come from its lookup)."""
    kwargs: dict[str, object] = {"banner_timeout": timeout, "auth_timeout": timeout, "channel_timeout": timeout}
    if key:  # the only key offered, as `ssh -i key -o IdentitiesOnly=yes`
        kwargs.update(key_filename=[key], look_for_keys=False, allow_agent=False)
    try:
        connection = _Connection(host, user=user, port=port, config=config, gateway=False, connect_kwargs=kwargs)
    except ValueError as exc:  # e.g. a Port that is not a number in the ssh_config
        raise ConfigError(f"ssh_config entry for {host}: {exc}") from None
    # Set after construction: Fabric's constructor int()s it, and 0.5 s would become no timeout.
    connection.connect_timeout = timeout
    return connection


def _with_port(host: str, port: int) -> str:
    return f"{host}:{port}" if port != 22 else host


def build_route(spec: HostSpec, ssh_config: str | None, timeout: float) -> Route:
    """The hops to `spec`, unopened: its `jump:`, else its ssh_config ProxyJump / ProxyCommand."""
    config = fabric_config(ssh_config)
    target = _connection(spec.host, spec.user, spec.port, spec.key, config, timeout)
    host_known = [spec.known_hosts] if spec.known_hosts else _known_hosts_files(target.ssh_config.get("userknownhostsfile"))
    route = Route()
    via: str | None = None
    if spec.jump is not None:
        route.hops.append(_jump_hop(spec.jump, config, host_known, timeout))
    elif (jumps := target.ssh_config.get("proxyjump")) and jumps.lower() != "none":
        route.hops.extend(_proxy_jump_hops(jumps, config, host_known, timeout, depth=1))
    elif command := target.ssh_config.get("proxycommand"):
        # paramiko expanded its %h %p %r from the ssh_config entry: an inventory `port:` or `user:`
        # does not reach them (set Port and User in the ssh_config instead).
        target.gateway = command
        via = f"ProxyCommand `{command}`"
    if route.hops:
        target.gateway = route.hops[-1].connection
        via = f"bastion {route.hops[-1].label}"
    route.hops.append(Hop(spec.label, target, host_known or [USER_KNOWN_HOSTS], via))
    return route


def endpoint(spec: HostSpec, ssh_config: str | None) -> str:
    """Where an SSH connection to `spec` ends up, as the connection itself resolves it (ssh_config's
    HostName and Port, and the hops before it): two aliases of one machine are one endpoint, and
    one private address behind two bastions is two. Nothing is opened."""
    route = build_route(spec, ssh_config, timeout=1.0)
    proxy = route.hops[-1].connection.gateway
    hops = [f"{hop.connection.host}:{hop.connection.port}" for hop in route.hops]
    return " via ".join(reversed(hops)) + (f" via ProxyCommand `{proxy}`" if isinstance(proxy, str) else "")


def _jump_hop(jump: JumpSpec, config: fabric.Config, host_known: list[str], timeout: float) -> Hop:
    connection = _connection(jump.host, jump.user, jump.port, jump.key, config, timeout)
    # Its own file, else its alias's UserKnownHostsFile, else the host's.
    own = [jump.known_hosts] if jump.known_hosts else _known_hosts_files(connection.ssh_config.get("userknownhostsfile"))
    known = own or host_known
    return Hop(jump.label, connection, known or [USER_KNOWN_HOSTS])


def _proxy_jump_hops(jumps: str, config: fabric.Config, host_known: list[str], timeout: float, depth: int) -> list[Hop]:
    """`ProxyJump a,b`: a first, then b through a (Fabric's own chain visits them in reverse)."""
    hops: list[Hop] = []
    for entry in (e.strip() for e in jumps.split(",")):
        match = _JUMP_ENTRY.match(entry)
        if not match:
            raise ConfigError(f"ssh_config: cannot read ProxyJump entry {entry!r}")
        port = int(match["port"]) if match["port"] else None
        connection = _connection(match["host"].strip("[]"), match["user"], port, None, config, timeout)
        label = f"{entry} ({connection.user}@{_with_port(connection.host, connection.port)})"
        via = None
        if hops:
            connection.gateway = hops[-1].connection
            via = f"bastion {hops[-1].label}"
        elif (own := _own_jump(connection, match["host"])):
            # The first hop is reached the way ssh would reach it on its own.
            if depth >= MAX_HOPS:
                raise ConfigError(f"ssh_config: ProxyJump chain through {entry} is longer than {MAX_HOPS} hops (a loop?)")
            hops.extend(_proxy_jump_hops(own, config, host_known, timeout, depth + 1))
            connection.gateway = hops[-1].connection
            via = f"bastion {hops[-1].label}"
        elif command := connection.ssh_config.get("proxycommand"):
            connection.gateway = command
            via = f"ProxyCommand `{command}`"
        known = _known_hosts_files(connection.ssh_config.get("userknownhostsfile")) or host_known
        hops.append(Hop(label, connection, known or [USER_KNOWN_HOSTS], via))
    return hops


def _own_jump(connection: _Connection, alias: str) -> str | None:
    """A first hop's own ProxyJump, unless it names that hop itself (a `Host *` block's, say)."""
    own = connection.ssh_config.get("proxyjump")
    if not own or own.lower() == "none":
        return None
    first = _JUMP_ENTRY.match(own.split(",")[0].strip())
    return None if first and first["host"].strip("[]") in (alias, connection.host) else own


def open_route(route: Route, name: str) -> Route:
    """Open every hop in order, host keys checked against each hop's own known_hosts.
    `name` is how the host behind the route is named in errors."""
    try:
        for index, hop in enumerate(route.hops):
            who = name if index == len(route.hops) - 1 else f"bastion {hop.label} (in front of {name})"
            _open_hop(hop, who)
    except BaseException:
        route.close()
        raise
    first = route.hops[0].connection.transport
    # Each channel open is a small request and reply; Nagle would add a delayed ACK's 40 ms.
    # Only the first hop has a TCP socket of ours (later hops ride on its channels; a
    # ProxyCommand is a pipe).
    if first is not None and isinstance(first.sock, socket.socket):
        first.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return route


def _open_hop(hop: Hop, who: str) -> None:
    client = hop.connection.client
    # Fabric accepts unknown host keys by default; every hop must be the machine we think.
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    where = ", ".join(hop.known_hosts)
    for path in hop.known_hosts:
        if path == USER_KNOWN_HOSTS:
            client.load_system_host_keys()
            continue
        try:
            client.load_host_keys(path)
        except FileNotFoundError:
            raise HostError(who, f"known_hosts file {path} does not exist") from None
        except OSError as exc:
            raise HostError(who, f"cannot read known_hosts file {path}: {exc}") from None
    try:
        _open_connection(hop, who, where)
    except HostError as exc:
        proxy = hop.connection.proxy
        if proxy is None:
            raise
        # `stopped` read after the wait: paramiko's thread may be closing it (ending it) meanwhile.
        if proxy.ended(wait=PROXY_ENDED_WAIT) is not None and not proxy.stopped:
            # It ended on its own: the ProxyCommand is the hop that failed, and what it said is
            # the cause, not paramiko's "Error reading SSH protocol banner" or "No existing session".
            raise HostError(who, f"cannot connect through its ProxyCommand: {proxy.failure()}") from None
        if said := _one_line(proxy.stderr):
            raise HostError(who, f'{exc.detail}; the ProxyCommand said: "{said}"') from None
        raise
    transport = hop.connection.client.get_transport()
    assert transport is not None
    transport.set_keepalive(KEEPALIVE_SECONDS)


def _open_connection(hop: Hop, who: str, where: str) -> None:
    through = f" through {hop.via}" if hop.via else ""
    try:
        hop.connection.open()
    except paramiko.BadHostKeyException:
        raise HostError(who, f"host key does not match the one in {where}: a different machine, "
                             "or a reinstalled one; verify it before you update known_hosts") from None
    except paramiko.AuthenticationException as exc:
        raise HostError(who, f"SSH authentication failed: {exc}") from None
    except paramiko.ChannelException as exc:
        raise HostError(who, f"cannot connect{through}: {exc.text or exc}") from None
    except paramiko.ProxyCommandFailure as exc:
        raise HostError(who, f"cannot connect{through}: {exc}") from None
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc):
            raise HostError(who, f"unknown host key (not in {where}); verify the host and add its key, "
                                 "e.g. ssh-keyscan") from None
        if str(exc) == "No existing session":  # paramiko's word for a handshake the connect timeout cut short
            raise HostError(who, f"SSH failed{through}: no SSH handshake within {hop.connection.connect_timeout:g}s "
                                 f"({exc})") from None
        raise HostError(who, f"SSH failed{through}: {exc}") from None
    except TimeoutError:
        raise HostError(who, f"cannot connect{through}: timed out after {hop.connection.connect_timeout:g}s") from None
    except (OSError, EOFError) as exc:
        raise HostError(who, f"cannot connect{through}: {exc or type(exc).__name__}") from None


def connect(spec: HostSpec, ssh_config: str | None, timeout: float, name: str) -> Route:
    return open_route(build_route(spec, ssh_config, timeout), name)
