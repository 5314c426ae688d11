"""A lab's names and addresses: which namespaces it has, which links join them, and where each
sshd listens. Pure: it computes the plan that the other modules build and check.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..roles import ROLES
from .options import LabOptions

BASTION = "bastion"
# The data link lives entirely inside the two namespaces, so every lab can use the same
# addresses; the inventory format promises these.
DATA_ADDRESSES = {
    "server": ipaddress.IPv4Interface("198.18.0.1/24"),
    "client": ipaddress.IPv4Interface("198.18.0.2/24"),
}
# Behind a bastion, each host's sshd listens only on a veth to the bastion. Like the data link,
# these /30s exist only inside the lab's namespaces, so every lab uses the same ones.
JUMP_NETWORKS = {
    "server": ipaddress.IPv4Network("198.18.1.0/30"),
    "client": ipaddress.IPv4Network("198.18.2.0/30"),
}
LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
# A lab of several pairs gives pair i (1..MAX_PAIRS) an address block of its own, four /24s
# from 198.18.4i.0: the data link, then the two jump /30s. Block 0 is the one-pair lab's
# (the addresses above), so no two pairs' addresses overlap and a run can tell them apart.
# A bastion lab puts an `unreachable` route for LAB_RANGE in the root namespace, so that a
# packet to a host behind the bastion fails at once instead of leaving by the default route.
# Each lab's route has its own metric (base + management index), so labs never share one.
ROUTE_METRIC_BASE = 3000
# Management links end in the root namespace, where two labs would collide, so each lab
# takes a pair of /30s from this range by index (index 0: 198.19.1.0/30 and 198.19.2.0/30).
# A bastion lab uses only the first of its pair, for the bastion.
MGMT_RANGE = ipaddress.IPv4Network("198.19.0.0/16")
DATA_IF = "data0"
MGMT_IF = "mgmt0"
JUMP_IF = "jump0"
SSH_PORT = 22


@dataclass(frozen=True)
class Host:
    """Names and addresses of one namespace: a role's host, or the bastion."""

    role: str
    netns: str
    dir: Path
    ssh: ipaddress.IPv4Interface  # where its sshd listens
    workdir: str = ""
    data: ipaddress.IPv4Interface | None = None
    # Reached from the root namespace over a management veth ...
    root_if: str | None = None
    mgmt_root: ipaddress.IPv4Interface | None = None
    # ... or from the bastion's namespace over a jump veth (bastion end: peer_if, peer).
    via: str | None = None
    peer_if: str | None = None
    peer: ipaddress.IPv4Interface | None = None

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def pidfile(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"


@dataclass(frozen=True)
class Shape:
    """The recorded shape of a lab: what status checks against, and what up builds."""

    bastion: bool
    user: str | None
    sudo_perf: bool
    no_compiler: tuple[str, ...]


def recorded_shape(state: dict[str, Any]) -> Shape:
    user = state.get("user") or {}
    return Shape(
        bastion=bool(state.get("bastion", False)),
        user=user.get("name"),
        sudo_perf=bool(state.get("sudoers")),
        no_compiler=tuple(state.get("no_compiler", [])),
    )


def wanted_shape(opts: LabOptions) -> Shape:
    return Shape(bastion=opts.bastion, user=opts.user, sudo_perf=opts.sudo_perf, no_compiler=opts.no_compiler)


def data_addresses(block: int) -> dict[str, ipaddress.IPv4Interface]:
    if block == 0:
        return DATA_ADDRESSES
    base = ipaddress.IPv4Address(int(LAB_RANGE.network_address) + (4 * block << 8))
    return {role: ipaddress.IPv4Interface(f"{base + 1 + i}/24") for i, role in enumerate(ROLES)}


def jump_networks(block: int) -> dict[str, ipaddress.IPv4Network]:
    if block == 0:
        return JUMP_NETWORKS
    base = int(LAB_RANGE.network_address) + (4 * block << 8)
    return {role: ipaddress.IPv4Network((base + ((1 + i) << 8), 30)) for i, role in enumerate(ROLES)}


def mgmt_networks(index: int) -> dict[str, ipaddress.IPv4Network]:
    base = int(MGMT_RANGE.network_address)
    return {
        role: ipaddress.IPv4Network((base + ((2 * index + 1 + i) << 8), 30))
        for i, role in enumerate(ROLES)
    }


def root_ifs(prefix: str) -> list[str]:
    return [f"{prefix}-m{name[0]}" for name in (BASTION, *ROLES)]


def route_metric(index: int) -> int:
    return ROUTE_METRIC_BASE + index


def role_workdir(opts: LabOptions, role: str, user: str | None) -> str:
    # The namespaces share one filesystem (and /home), so each role needs a workdir of its own.
    if user is not None:
        return f"~/.cache/orchestrate-{opts.prefix}-{role}"
    return str(Path(opts.workdir_root) / opts.prefix / role)


def lab_hosts(opts: LabOptions, index: int, shape: Shape) -> dict[str, Host]:
    """The namespaces of a lab of this shape: the bastion first if there is one, then the roles."""
    nets = mgmt_networks(index)
    state_dir = opts.resolved_state_dir
    hosts: dict[str, Host] = {}
    if shape.bastion:
        first, second = list(nets[ROLES[0]].hosts())
        hosts[BASTION] = Host(
            role=BASTION,
            netns=f"{opts.prefix}-{BASTION}",
            dir=state_dir / BASTION,
            ssh=ipaddress.IPv4Interface(f"{second}/30"),
            root_if=f"{opts.prefix}-mb",
            mgmt_root=ipaddress.IPv4Interface(f"{first}/30"),
        )
    for role in ROLES:
        common = dict(
            role=role,
            netns=f"{opts.prefix}-{role}",
            dir=state_dir / role,
            workdir=role_workdir(opts, role, shape.user),
            data=data_addresses(opts.address_block)[role],
        )
        if shape.bastion:
            near, far = list(jump_networks(opts.address_block)[role].hosts())
            hosts[role] = Host(
                **common,
                ssh=ipaddress.IPv4Interface(f"{far}/30"),
                via=hosts[BASTION].netns,
                peer_if=f"to-{role}",
                peer=ipaddress.IPv4Interface(f"{near}/30"),
            )
        else:
            first, second = list(nets[role].hosts())
            hosts[role] = Host(
                **common,
                ssh=ipaddress.IPv4Interface(f"{second}/30"),
                root_if=f"{opts.prefix}-m{role[0]}",
                mgmt_root=ipaddress.IPv4Interface(f"{first}/30"),
            )
    return hosts
