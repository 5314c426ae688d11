"""Namespaces and the links between them: the management veths to the root namespace, the
jump veths behind a bastion, the data link with its MTU and shaping, and the bastion's route.
Each ``ensure_*`` makes its part, or brings an existing one in line, so that ``up`` can run again.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..errors import LabError
from ..roles import ROLES
from .options import MAX_MGMT_INDEX, LabOptions
from .tools import inet, ip, ip_json, link_info, netns_names, root_qdisc, tc
from .topology import DATA_IF, JUMP_IF, LAB_RANGE, MGMT_IF, MGMT_RANGE, Host, mgmt_networks, root_ifs


def _used_root_addresses(exclude: set[str]) -> set[ipaddress.IPv4Interface]:
    used: set[ipaddress.IPv4Interface] = set()
    for link in ip_json("-4", "addr", "show"):
        if link.get("ifname") not in exclude:
            used |= inet(link)
    return used


def choose_index(opts: LabOptions, state: dict[str, Any] | None) -> int:
    used = _used_root_addresses(set(root_ifs(opts.prefix)))

    def free(index: int) -> bool:
        nets = mgmt_networks(index).values()
        return not any(addr.network.overlaps(net) for addr in used for net in nets)

    if opts.mgmt_index is not None:
        index = opts.mgmt_index
        if not free(index):
            raise LabError(
                f"management index {index} ({', '.join(map(str, mgmt_networks(index).values()))}) is "
                "already in use in the root namespace (another lab?); choose another index"
            )
        return index
    if state is not None and free(int(state["mgmt_index"])):
        return int(state["mgmt_index"])
    for index in range(MAX_MGMT_INDEX + 1):
        if free(index):
            return index
    raise LabError(f"no free management subnets left in {MGMT_RANGE}")


def ensure_netns(host: Host) -> None:
    if host.netns not in netns_names():
        ip("netns", "add", host.netns)
    ip("link", "set", "lo", "up", netns=host.netns)


def _ensure_addr(ifname: str, want: ipaddress.IPv4Interface, netns: str | None) -> None:
    link = link_info(ifname, netns)
    if link is not None and inet(link) == {want}:
        return
    ip("addr", "flush", "dev", ifname, netns=netns)
    ip("addr", "add", str(want), "dev", ifname, netns=netns)


def _ensure_veth(a: tuple[str, str | None], b: tuple[str, str | None]) -> None:
    """A veth pair between (ifname, netns) a and b, where netns None is the root namespace."""
    ends = [link_info(name, ns) for name, ns in (a, b)]
    if None not in ends:
        return
    # A lone end means a half-built pair; rebuild the pair rather than guess.
    for (name, ns), end in zip((a, b), ends):
        if end is not None:
            ip("link", "del", name, netns=ns)
    (a_name, a_ns), (b_name, b_ns) = a, b
    ip("link", "add", a_name, *(["netns", a_ns] if a_ns else []),
        "type", "veth", "peer", "name", b_name, *(["netns", b_ns] if b_ns else []))


def ensure_data_link(hosts: dict[str, Host], mtu: int) -> None:
    s, c = hosts["server"], hosts["client"]
    _ensure_veth((DATA_IF, s.netns), (DATA_IF, c.netns))
    for host in (s, c):
        assert host.data is not None
        ip("link", "set", DATA_IF, "mtu", str(mtu), netns=host.netns)
        _ensure_addr(DATA_IF, host.data, host.netns)
        ip("link", "set", DATA_IF, "up", netns=host.netns)


def ensure_mgmt_link(host: Host) -> None:
    assert host.root_if is not None and host.mgmt_root is not None
    _ensure_veth((host.root_if, None), (MGMT_IF, host.netns))
    _ensure_addr(host.root_if, host.mgmt_root, None)
    _ensure_addr(MGMT_IF, host.ssh, host.netns)
    ip("link", "set", host.root_if, "up")
    ip("link", "set", MGMT_IF, "up", netns=host.netns)


def ensure_jump_link(host: Host) -> None:
    assert host.via is not None and host.peer_if is not None and host.peer is not None
    _ensure_veth((host.peer_if, host.via), (JUMP_IF, host.netns))
    _ensure_addr(host.peer_if, host.peer, host.via)
    _ensure_addr(JUMP_IF, host.ssh, host.netns)
    ip("link", "set", host.peer_if, "up", netns=host.via)
    ip("link", "set", JUMP_IF, "up", netns=host.netns)


def has_route(metric: int) -> bool:
    routes = ip_json("-4", "route", "show", "type", "unreachable", str(LAB_RANGE))
    return any(r.get("metric") == metric for r in routes)


def ensure_route(metric: int) -> None:
    if not has_route(metric):
        ip("route", "replace", "unreachable", str(LAB_RANGE), "metric", str(metric))


def remove_route(metric: int) -> bool:
    if not has_route(metric):
        return False
    ip("route", "del", "unreachable", str(LAB_RANGE), "metric", str(metric), check=False)
    return True


def _shaping_args(opts: LabOptions) -> list[str] | None:
    """The root qdisc for the data link: netem when there is a delay, tbf for a rate alone."""
    if opts.delay_ms is not None:
        args = ["netem", "delay", f"{opts.delay_ms:g}ms"]
        if opts.rate_mbit is not None:
            args += ["rate", f"{round(opts.rate_mbit * 1000)}kbit"]
        return args
    if opts.rate_mbit is not None:
        rate_bytes = opts.rate_mbit * 1e6 / 8
        # The bucket must hold a whole GSO super-packet (64 KiB) and at least one timer tick
        # (at HZ=100) of traffic, or tbf drops instead of shaping.
        burst = max(128 * 1024, int(rate_bytes / 100))
        return ["tbf", "rate", f"{round(opts.rate_mbit * 1000)}kbit", "burst", str(burst), "latency", "50ms"]
    return None


def expected_qdisc(opts: LabOptions) -> str | None:
    args = _shaping_args(opts)
    return args[0] if args else None


def ensure_shaping(hosts: dict[str, Host], opts: LabOptions) -> None:
    args = _shaping_args(opts)
    for role in ROLES:
        host = hosts[role]
        current = root_qdisc(DATA_IF, host.netns)
        if args is None:
            if current is not None and current.get("kind") in ("netem", "tbf"):
                tc("qdisc", "del", "dev", DATA_IF, "root", netns=host.netns)
            continue
        proc = tc("qdisc", "replace", "dev", DATA_IF, "root", *args, netns=host.netns, check=False)
        if proc.returncode != 0:
            if "unknown" in proc.stderr.lower() and args[0] == "netem":
                raise LabError(
                    "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM, module sch_netem), so the "
                    "lab cannot add a delay; a rate alone works (it uses tbf)"
                )
            raise LabError(f"tc could not shape {DATA_IF} in {host.netns}: {proc.stderr.strip()}")
