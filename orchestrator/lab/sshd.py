"""An sshd per namespace: the lab's keys, each sshd's config, starting it in its namespace (in a
mount namespace without compilers where asked), and telling whether it is ours and answers.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import LabError
from .nocompiler import hide_script, visible_compilers
from .pids import alive, stop_pid
from .tools import ip, run, tool
from .topology import BASTION, MGMT_RANGE, SSH_PORT, Host, Shape, jump_networks


def keygen(path: Path, comment: str) -> None:
    if path.exists() and path.with_name(path.name + ".pub").exists():
        return
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    run([tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def public_key(path: Path) -> str:
    """``type base64`` of an OpenSSH public key file, without its comment."""
    key_type, blob, *_ = path.with_name(path.name + ".pub").read_text().split()
    return f"{key_type} {blob}"


def key_sources(shape: Shape, block: int) -> str:
    """Where a login may come from: the root namespace's management range, or the bastion."""
    sources = [str(MGMT_RANGE)]
    if shape.bastion:
        sources += [str(net) for net in jump_networks(block).values()]
    return ",".join(sources)


def sshd_text(host: Host, authorized_keys: Path, shape: Shape, user_keys: Path | None) -> str:
    lines = [
        f"# sshd for the orchestrate lab namespace {host.netns}; written by `orchestrate lab up`",
        f"ListenAddress {host.ssh.ip}:{SSH_PORT}",
        f"HostKey {host.host_key}",
        f"PidFile {host.pidfile}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        f"AllowUsers root{f' {shape.user}' if shape.user else ''}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        # No PAM: the lab must not depend on, or touch, the system's login configuration.
        "UsePAM no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        # The orchestrator opens a connection per role and per agent; allow plenty.
        "MaxStartups 64:30:128",
        "MaxSessions 64",
        "Subsystem sftp internal-sftp",
    ]
    if host.role == BASTION:
        # ProxyJump opens direct-tcpip channels through the bastion to the hosts' sshds.
        lines.append("AllowTcpForwarding yes")
    if host.role in shape.no_compiler:
        # Part of the config so that turning it on or off restarts sshd in the right mount namespace.
        lines.append("# compilers hidden: sshd runs in a private mount namespace (orchestrate lab --no-compiler)")
    if shape.user and user_keys is not None:
        # sshd reads a user's AuthorizedKeysFile as that user, and the lab's own file is in a
        # root-only directory; the user's key file is the user's own, in their home.
        lines += [f"Match User {shape.user}", f"    AuthorizedKeysFile {user_keys}"]
    return "\n".join(lines) + "\n"


def _netns_inode(netns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def our_sshd(host_dir: Path) -> int | None:
    """The pid in the pid file if that process is alive and is the sshd running our config."""
    try:
        pid = int((host_dir / "sshd.pid").read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == "sshd" and str(host_dir / "sshd_config").encode() in cmdline and alive(pid) else None


def sshd_pid(host: Host) -> int | None:
    """Our sshd, if it runs in the namespace (a namespace deleted under it leaves it orphaned)."""
    pid = our_sshd(host.dir)
    try:
        inside = pid is not None and os.stat(f"/proc/{pid}/ns/net").st_ino == _netns_inode(host.netns)
    except OSError:
        inside = False
    return pid if inside else None


_CLONE_NEWNET = 0x40000000


def _connect(address: str, timeout: float, netns: str | None) -> socket.socket:
    """A TCP connection to address:22, made from inside ``netns`` (None: this namespace)."""
    if netns is None:
        return socket.create_connection((address, SSH_PORT), timeout=timeout)
    # Python 3.11 has no os.setns. A network namespace is per thread, so a short-lived thread
    # enters the namespace, makes the socket (which stays in that namespace) and ends.
    result: dict[str, Any] = {}

    def inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{netns}", "rb") as ns:
                if libc.setns(ns.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            result["sock"] = socket.create_connection((address, SSH_PORT), timeout=timeout)
        except OSError as e:
            result["error"] = e

    thread = threading.Thread(target=inside, name=f"lab-netns-{netns}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def ssh_banner(host: Host, timeout: float = 2.0) -> str | None:
    try:
        with _connect(str(host.ssh.ip), timeout, host.via) as sock:
            sock.settimeout(timeout)
            line = sock.recv(256).split(b"\r\n", 1)[0]
    except OSError:
        return None
    return line.decode("ascii", "replace") if line.startswith(b"SSH-") else None


def ensure_sshd(host: Host, text: str, hide: bool) -> None:
    changed = not host.sshd_config.exists() or host.sshd_config.read_text() != text
    host.sshd_config.write_text(text)
    running = sshd_pid(host)
    if (running is not None and not changed and ssh_banner(host) is not None
            and not (hide and visible_compilers(running))):
        return
    pid = our_sshd(host.dir)
    sshd = tool("sshd")
    # Privilege separation needs this directory; systemd normally makes it for the system sshd.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    run([sshd, "-t", "-f", str(host.sshd_config)])
    if pid is not None:
        stop_pid(pid)
    host.pidfile.unlink(missing_ok=True)
    log = host.dir / "sshd.log"
    argv = [sshd, "-f", str(host.sshd_config), "-E", str(log)]
    if hide:
        # sshd, and so every session it starts, lives in a mount namespace of its own that
        # dies with the last of those processes.
        argv = [tool("unshare"), "--mount", "--propagation", "private", "sh", "-c", hide_script(host), *argv]
    ip("netns", "exec", host.netns, *argv)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sshd_pid(host) is not None and ssh_banner(host, timeout=0.5) is not None:
            return
        time.sleep(0.05)
    tail = log.read_text()[-500:] if log.exists() else ""
    raise LabError(f"sshd in {host.netns} did not answer on {host.ssh.ip}:{SSH_PORT} within 10 s; log: {tail}")
