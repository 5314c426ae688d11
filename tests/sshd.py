"""A throwaway sshd on loopback with generated host and user keys: a real SSH peer for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .conftest import require, require_root, require_tool


@dataclass
class Sshd:
    port: int
    key: Path
    known_hosts: Path
    process: subprocess.Popen
    directory: Path

    def inventory_entry(self, workdir: str, data_address: str = "127.0.0.1") -> dict:
        return {
            "host": "127.0.0.1",
            "user": "root",
            "port": self.port,
            "key": str(self.key),
            "known_hosts": str(self.known_hosts),
            "data_address": data_address,
            "workdir": workdir,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(directory: Path, extra_config: str = "") -> Sshd:
    """`extra_config`: more sshd_config lines, e.g. `PermitOpen 127.0.0.1:2222` for a bastion."""
    require_root()
    sshd = require_tool("sshd") if shutil.which("sshd") else shutil.which("/usr/sbin/sshd")
    require(sshd is not None, "sshd is not installed (package openssh-server)")
    require_tool("ssh-keygen")
    directory.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    host_key, user_key = directory / "host_ed25519", directory / "id_ed25519"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (directory / "authorized_keys").write_text((directory / "id_ed25519.pub").read_text())
    port = _free_port()
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {(directory / 'host_ed25519.pub').read_text()}")
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {host_key}\nAuthorizedKeysFile {directory / 'authorized_keys'}\n"
        f"PidFile {directory / 'sshd.pid'}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nMaxSessions 50\nMaxStartups 50\n"
        "Subsystem sftp internal-sftp\n" + extra_config
    )
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stderr=open(directory / "sshd.log", "w"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError(f"sshd did not start: {(directory / 'sshd.log').read_text()}")
    return Sshd(port, user_key, directory / "known_hosts", process, directory)
