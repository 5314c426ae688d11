"""``lab status``: what of a lab exists and whether it works, one row per part."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .accounts import find_account, is_our_account
from .inventory import is_our_inventory
from .links import expected_qdisc, has_route
from .nocompiler import compiler_dirs, compilers_in, visible_compilers
from .options import LabOptions
from .sshd import ssh_banner, sshd_pid
from .state import pair_indices, read_state
from .sudoers import sudoers_path, sudoers_text
from .tools import inet, link_info, netns_names, preflight, root_qdisc
from .topology import (DATA_IF, JUMP_IF, LAB_RANGE, MGMT_IF, SSH_PORT, Host, lab_hosts, recorded_shape, route_metric,
                       wanted_shape)


@dataclass(frozen=True)
class LabRow:
    """One thing the lab is made of. ``state`` is ``ok``, ``missing`` or ``wrong``."""

    name: str
    kind: str
    state: str
    detail: str = ""


@dataclass(frozen=True)
class LabStatus:
    prefix: str
    state_dir: Path
    inventory_path: Path | None
    rows: list[LabRow] = field(default_factory=list)
    # The lab's ssh_config: Host aliases <prefix>-server, <prefix>-client (and <prefix>-bastion).
    ssh_config_path: Path | None = None

    @property
    def ok(self) -> bool:
        """The whole lab is there and working."""
        return bool(self.rows) and all(r.state == "ok" for r in self.rows)

    @property
    def exists(self) -> bool:
        """Anything at all of this lab is left."""
        return any(r.state != "missing" for r in self.rows)

    def row(self, name: str) -> LabRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)


def status(opts: LabOptions) -> LabStatus:
    """What of the lab exists and whether it works, one row per part."""
    preflight()
    state = read_state(opts)
    if (state and state.get("pairs")) or (state is None and opts.pairs > 1):
        return _pairs_status(opts, state)
    state_dir = opts.resolved_state_dir
    inventory = Path(state["inventory_path"]) if state else opts.resolved_inventory_path
    rows = [LabRow(str(state_dir), "state", "ok" if state else "missing", "")]
    expect_mtu = int(state["mtu"]) if state else opts.mtu
    expect_qdisc = (
        expected_qdisc(LabOptions(prefix=opts.prefix, delay_ms=state["delay_ms"], rate_mbit=state["rate_mbit"]))
        if state
        else expected_qdisc(opts)
    )
    shape = recorded_shape(state) if state else wanted_shape(opts)
    index = int(state["mgmt_index"]) if state else 0
    hosts = lab_hosts(opts, index, shape)
    namespaces = netns_names()

    for host in hosts.values():
        present = host.netns in namespaces
        rows.append(LabRow(host.netns, "namespace", "ok" if present else "missing"))
        if host.data is not None:
            rows.append(_data_row(host, present, expect_mtu, expect_qdisc))
        rows.append(_mgmt_row(host, present) if host.root_if else _jump_row(host, present, namespaces))
        rows.append(_sshd_row(host))
        if host.role in shape.no_compiler:
            rows.append(_compiler_row(host))
    if shape.bastion:
        metric = int(state.get("route_metric") or route_metric(index)) if state else route_metric(index)
        name = f"unreachable {LAB_RANGE} metric {metric}"
        rows.append(LabRow(name, "route", "ok" if has_route(metric) else "missing",
                           "the root namespace cannot reach the hosts behind the bastion"))
    # A pair of a lab of several: the account and the sudoers rule are that lab's rows, not the pair's.
    if opts.parent is None and not ((state or {}).get("user") or {}).get("owner"):
        rows += _account_rows(opts.prefix, shape.user, shape.sudo_perf, state)

    ssh_config = opts.ssh_config_path
    rows.append(LabRow(str(ssh_config), "ssh_config", "ok" if ssh_config.exists() else "missing",
                       f"Host {' '.join(h.netns for h in hosts.values())}" if ssh_config.exists() else ""))
    if inventory.exists():
        rows.append(LabRow(str(inventory), "inventory", "ok" if is_our_inventory(inventory, opts.prefix) else "wrong",
                           "" if is_our_inventory(inventory, opts.prefix) else "not written by this lab"))
    else:
        rows.append(LabRow(str(inventory), "inventory", "missing"))
    return LabStatus(prefix=opts.prefix, state_dir=state_dir, inventory_path=inventory, rows=rows,
                     ssh_config_path=ssh_config)


def _pairs_status(opts: LabOptions, state: dict[str, Any] | None) -> LabStatus:
    state_dir = opts.resolved_state_dir
    inventory = Path(state["inventory_path"]) if state else opts.resolved_inventory_path
    rows = [LabRow(str(state_dir), "state", "ok" if state else "missing",
                   f"pairs {', '.join(state['pairs'])}" if state else "")]
    for i in pair_indices(opts, state):
        sub = status(opts.pair_options(i))
        rows += [r for r in sub.rows if r.kind not in ("state", "inventory", "ssh_config")]
        # The pair's own state, inventory and ssh_config are parts of this lab's; named as such.
        rows += [dataclasses.replace(r, kind=f"p{i} {r.kind}") for r in sub.rows if r.kind in ("state", "inventory", "ssh_config")]
    # One account and one sudoers rule for every pair, as on a real site.
    user = ((state or {}).get("user") or {}).get("name") if state else opts.user
    sudo_perf = bool(state.get("sudoers")) if state else opts.sudo_perf
    rows += _account_rows(opts.prefix, user, sudo_perf, state)
    ssh_config = opts.ssh_config_path
    rows.append(LabRow(str(ssh_config), "ssh_config", "ok" if ssh_config.exists() else "missing"))
    if inventory.exists():
        ours = is_our_inventory(inventory, opts.prefix)
        rows.append(LabRow(str(inventory), "inventory", "ok" if ours else "wrong", "" if ours else "not written by this lab"))
    else:
        rows.append(LabRow(str(inventory), "inventory", "missing"))
    return LabStatus(prefix=opts.prefix, state_dir=state_dir, inventory_path=inventory, rows=rows,
                     ssh_config_path=ssh_config)


def _data_row(host: Host, present: bool, mtu: int, qdisc: str | None) -> LabRow:
    name = f"{host.netns}/{DATA_IF}"
    link = link_info(DATA_IF, host.netns) if present else None
    if link is None:
        return LabRow(name, "data link", "missing")
    root = root_qdisc(DATA_IF, host.netns)
    kind = root.get("kind") if root else None
    shaping = kind if kind in ("netem", "tbf") else None
    shaping_text = f"{kind} {json.dumps(root.get('options', {}), sort_keys=True)}" if shaping and root else "none"
    addrs = inet(link)
    problems = []
    if addrs != {host.data}:
        problems.append(f"addresses {sorted(map(str, addrs))}, expected {host.data}")
    if "UP" not in link.get("flags", []):
        problems.append("down")
    if link.get("mtu") != mtu:
        problems.append(f"mtu {link.get('mtu')}, expected {mtu}")
    if shaping != qdisc:
        problems.append(f"qdisc {shaping or 'none'}, expected {qdisc or 'none'}")
    detail = f"{', '.join(map(str, sorted(addrs)))} mtu {link.get('mtu')} qdisc {shaping_text}"
    return LabRow(name, "data link", "wrong" if problems else "ok", "; ".join(problems) or detail)


def _pair_row(name: str, kind: str, near: tuple[dict | None, ipaddress.IPv4Interface],
              far: tuple[dict | None, ipaddress.IPv4Interface]) -> LabRow:
    (near_end, near_want), (far_end, far_want) = near, far
    if near_end is None and far_end is None:
        return LabRow(name, kind, "missing")
    problems = []
    if near_end is None or inet(near_end) != {near_want}:
        problems.append(f"near end should be {near_want}")
    if far_end is None or inet(far_end) != {far_want}:
        problems.append(f"namespace end should be {far_want}")
    if near_end is not None and far_end is not None and not (
        "UP" in near_end.get("flags", []) and "UP" in far_end.get("flags", [])
    ):
        problems.append("down")
    return LabRow(name, kind, "wrong" if problems else "ok", "; ".join(problems) or f"{near_want} <-> {far_want}")


def _mgmt_row(host: Host, present: bool) -> LabRow:
    assert host.root_if is not None and host.mgmt_root is not None
    return _pair_row(f"{host.root_if}<->{host.netns}/{MGMT_IF}", "mgmt link",
                     (link_info(host.root_if), host.mgmt_root),
                     (link_info(MGMT_IF, host.netns) if present else None, host.ssh))


def _jump_row(host: Host, present: bool, namespaces: set[str]) -> LabRow:
    assert host.via is not None and host.peer_if is not None and host.peer is not None
    return _pair_row(f"{host.via}/{host.peer_if}<->{host.netns}/{JUMP_IF}", "jump link",
                     (link_info(host.peer_if, host.via) if host.via in namespaces else None, host.peer),
                     (link_info(JUMP_IF, host.netns) if present else None, host.ssh))


def _sshd_row(host: Host) -> LabRow:
    name = f"sshd {host.netns}"
    pid = sshd_pid(host)
    if pid is None:
        return LabRow(name, "sshd", "missing")
    banner = ssh_banner(host)
    where = f"{host.ssh.ip}:{SSH_PORT}" + (f" (from {host.via})" if host.via else "")
    if banner is None:
        return LabRow(name, "sshd", "wrong", f"pid {pid} does not answer on {where}")
    return LabRow(name, "sshd", "ok", f"pid {pid}, {where} answers {banner}")


def _compiler_row(host: Host) -> LabRow:
    name = f"compilers {host.netns}"
    pid = sshd_pid(host)
    if pid is None:
        return LabRow(name, "no compiler", "missing", "no sshd")
    visible = visible_compilers(pid)
    if visible:
        return LabRow(name, "no compiler", "wrong", f"sshd pid {pid} sees {', '.join(visible[:5])}")
    hidden = sum(len(compilers_in(d)) for d in compiler_dirs())
    return LabRow(name, "no compiler", "ok", f"{hidden} compiler names hidden from sshd pid {pid} and its sessions")


def _account_rows(prefix: str, user: str | None, sudo_perf: bool, state: dict[str, Any] | None) -> list[LabRow]:
    rows = []
    if user:
        rows.append(_user_row(prefix, user, state))
    if sudo_perf:
        rows.append(_sudoers_row(prefix, user, (state or {}).get("perf")))
    return rows


def _user_row(prefix: str, name: str, state: dict[str, Any] | None) -> LabRow:
    account = find_account(name)
    if account is None:
        return LabRow(f"user {name}", "user", "missing")
    if not is_our_account(name, prefix, state):
        return LabRow(f"user {name}", "user", "wrong", "exists but was not created by this lab")
    return LabRow(f"user {name}", "user", "ok", f"uid {account.pw_uid}, home {account.pw_dir}, shell {account.pw_shell}")


def _sudoers_row(prefix: str, user: str | None, perf: str | None) -> LabRow:
    path = sudoers_path(prefix)
    if not path.exists():
        return LabRow(str(path), "sudoers", "missing")
    expected = sudoers_text(prefix, user, perf) if user and perf else None
    try:
        good = path.read_text() == expected and stat.S_IMODE(path.stat().st_mode) == 0o440
    except OSError:
        good = False
    return LabRow(str(path), "sudoers", "ok" if good else "wrong",
                  f"{user} may run {perf} as root (NOPASSWD)" if good else "not the lab's rule, or not mode 0440")
