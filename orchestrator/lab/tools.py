"""The system tools the lab is built with (ip, tc, sshd, ssh-keygen, ...): found, run under a
timeout, and their failures turned into ``LabError``; and the kernel's view read back from
``ip -j`` and ``tc -j``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from ..errors import LabError
from ..processes import run_local

_TOOLS = {
    "ip": "iproute2",
    "tc": "iproute2",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
}
# Needed only by some options; checked when the option is asked for.
_OPTION_TOOLS = {
    "useradd": "passwd",
    "userdel": "passwd",
    "usermod": "passwd",
    "visudo": "sudo",
    "sudo": "sudo",
    "perf": "linux-perf",
    "unshare": "util-linux",
    "mount": "mount",
}
# sshd is often outside a non-root PATH; it must be run by absolute path anyway (it re-execs).
TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


def tool(name: str) -> str:
    path = shutil.which(name, path=TOOL_PATH)
    if path is None:
        package = _TOOLS.get(name) or _OPTION_TOOLS[name]
        raise LabError(f"`{name}` was not found; install the Debian package {package}")
    return path


def preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veth links, sshd); run it with sudo")
    missing = [name for name in _TOOLS if shutil.which(name, path=TOOL_PATH) is None]
    if missing:
        packages = sorted({_TOOLS[m] for m in missing})
        raise LabError(f"missing {', '.join(missing)}; install: apt-get install {' '.join(packages)}")


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    done = run_local(argv, timeout, host="lab")  # alone in its process group, killed whole at the timeout
    if done.exit_code is None:
        raise LabError(f"`{shlex.join(argv)}` did not finish within {timeout:g} s" + (f" ({done.note})" if done.note else ""))
    proc = subprocess.CompletedProcess(list(argv), done.exit_code, done.stdout.decode(errors="replace"), done.stderr)
    if check and proc.returncode != 0:
        raise LabError(f"`{shlex.join(argv)}` failed: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
    return proc


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([tool("ip"), *(["-n", netns] if netns else []), *args], check=check)


def ip_json(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
    proc = run([tool("ip"), "-j", *(["-n", netns] if netns else []), *args], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return json.loads(proc.stdout)


def tc(*args: str, netns: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([tool("tc"), "-n", netns, *args], check=check)


def netns_names() -> set[str]:
    return {entry["name"] for entry in ip_json("netns", "list")}


def link_info(ifname: str, netns: str | None = None) -> dict[str, Any] | None:
    links = ip_json("addr", "show", "dev", ifname, netns=netns)
    return links[0] if links else None


def inet(link: dict[str, Any]) -> set[ipaddress.IPv4Interface]:
    return {
        ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    }


def root_qdisc(ifname: str, netns: str) -> dict[str, Any] | None:
    proc = tc("-j", "qdisc", "show", "dev", ifname, netns=netns, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    for q in json.loads(proc.stdout):
        if q.get("root"):
            return q
    return None
