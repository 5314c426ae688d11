"""What the lab hands its users: the inventory that ``orchestrate run`` reads, and an
ssh_config for plain ``ssh``. Each file is marked as the lab's, so it never overwrites or
removes a file it did not write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import LabError
from ..roles import ROLES
from .options import LabOptions
from .topology import BASTION, SSH_PORT, Host

_INVENTORY_MARK = "# orchestrate lab inventory, prefix={prefix}; `orchestrate lab down` removes this file\n"


def _endpoint(host: Host, login: str, key: Path, known_hosts: Path) -> dict[str, Any]:
    return {"host": str(host.ssh.ip), "user": login, "port": SSH_PORT, "key": str(key), "known_hosts": str(known_hosts)}


def inventory_text(opts: LabOptions, hosts: dict[str, Host], key: Path, known_hosts: Path) -> str:
    login = opts.user or "root"
    doc: dict[str, Any] = {}
    for role in ROLES:
        host = hosts[role]
        entry = _endpoint(host, login, key, known_hosts)
        if host.via is not None:
            entry["jump"] = _endpoint(hosts[BASTION], login, key, known_hosts)
        assert host.data is not None
        entry["data_address"] = str(host.data.ip)
        entry["workdir"] = host.workdir
        if opts.sudo_perf:
            entry["perf_access"] = "sudo"
        doc[role] = entry
    aliases = ", ".join(h.netns for h in hosts.values())
    header = (_INVENTORY_MARK.format(prefix=opts.prefix)
              + f"# ssh_config with the Host aliases {aliases}: {opts.ssh_config_path}\n")
    return header + yaml.safe_dump(doc, sort_keys=False)


def ssh_config_text(opts: LabOptions, hosts: dict[str, Host], key: Path, known_hosts: Path) -> str:
    login = opts.user or "root"
    lines = [f"# ssh_config of the orchestrate lab {opts.prefix}; written by `orchestrate lab up`, "
             "removed by `orchestrate lab down`", ""]
    for host in hosts.values():
        lines += [
            f"Host {host.netns}",
            f"    HostName {host.ssh.ip}",
            f"    User {login}",
            f"    Port {SSH_PORT}",
            f"    IdentityFile {key}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {known_hosts}",
            "    StrictHostKeyChecking yes",
        ]
        if host.via is not None:
            lines.append(f"    ProxyJump {host.via}")
        lines.append("")
    return "\n".join(lines)


def pairs_inventory_text(opts: LabOptions, subs: list[LabOptions]) -> str:
    """The inventory of a lab of several pairs: each pair's own inventory, under the pair's name."""
    doc: dict[str, Any] = {"pairs": {}}
    for name, sub in zip(opts.pair_names, subs):
        doc["pairs"][name] = yaml.safe_load(sub.resolved_inventory_path.read_text())
    aliases = ", ".join(f"{sub.prefix}-{role}" for sub in subs for role in ROLES)
    header = (_INVENTORY_MARK.format(prefix=opts.prefix)
              + f"# {opts.pairs} pairs that share no host; ssh_config with the Host aliases {aliases}: "
              + f"{opts.ssh_config_path}\n")
    return header + yaml.safe_dump(doc, sort_keys=False)


def pairs_ssh_config_text(subs: list[LabOptions]) -> str:
    return "".join(sub.ssh_config_path.read_text() for sub in subs)


def is_our_inventory(path: Path, prefix: str) -> bool:
    try:
        with path.open() as f:
            return f.readline() == _INVENTORY_MARK.format(prefix=prefix)
    except OSError:
        return False


def check_inventory_path(path: Path, prefix: str) -> None:
    if path.exists() and not is_our_inventory(path, prefix):
        raise LabError(f"{path} exists and was not written by this lab; remove it or give another inventory path")


def write_inventory(path: Path, text: str, prefix: str) -> None:
    check_inventory_path(path, prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
