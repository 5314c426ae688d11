"""``lab up``'s work: build a lab, or bring an existing one in line with new options, one pair
or several. Everything that can refuse does so before anything is built, and each part is
recorded in the state before it is made.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import LabError
from ..roles import ROLES
from .accounts import check_user, create_user, install_user_key, key_file_name, pair_account, remove_user, write_start_up_files
from .inventory import (check_inventory_path, inventory_text, is_our_inventory, pairs_inventory_text,
                        pairs_ssh_config_text, ssh_config_text, write_inventory)
from .links import (choose_index, ensure_data_link, ensure_jump_link, ensure_mgmt_link, ensure_netns, ensure_route,
                    ensure_shaping, remove_route)
from .nocompiler import check_overlay
from .options import STATE_ROOT, LabOptions
from .pids import stop_namespace, stop_pid
from .sshd import ensure_sshd, keygen, key_sources, our_sshd, public_key, sshd_text
from .state import read_state, write_state
from .sudoers import ensure_sudoers, is_our_sudoers, perf_path, remove_sudoers, sudoers_path, sudoers_text
from .tools import ip, netns_names, tool
from .topology import BASTION, JUMP_IF, MGMT_IF, lab_hosts, recorded_shape, route_metric, wanted_shape

# Paths that go into mount options, sshd_config and ssh_config are held to this alphabet.
_SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9_./+-]*$")


def _check_paths(opts: LabOptions) -> None:
    # The state dir ends up in mount options, sshd_config and ssh_config; keep it plain.
    if not _SAFE_PATH_RE.match(str(opts.resolved_state_dir.absolute())):
        raise LabError(f"lab state dir {opts.resolved_state_dir} must be a plain path (letters, digits, _ . / + -)")


def _check_sudoers(opts: LabOptions) -> str:
    """Before anything is built: the tools --sudo-perf needs, and no rule of another's in the way."""
    perf = perf_path()
    tool("visudo")
    tool("sudo")
    sudoers = sudoers_path(opts.prefix)
    if sudoers.exists() and not is_our_sudoers(sudoers, opts.prefix):
        raise LabError(f"{sudoers} exists and was not written by this lab; remove it or use another prefix")
    return perf


def _reshape(opts: LabOptions, state: dict[str, Any], index: int) -> None:
    """Take away the parts of a recorded lab that the new options no longer want."""
    old, new = recorded_shape(state), wanted_shape(opts)
    removed: list[str] = []
    if old.sudo_perf and (not new.sudo_perf or new.user != old.user):
        remove_sudoers(opts.prefix, removed)
        state["sudoers"] = None
    if old.user and old.user != new.user:
        for name in (BASTION, *ROLES):
            pid = our_sshd(opts.resolved_state_dir / name)
            if pid is not None:  # its config names the old account; it restarts below
                stop_pid(pid)
        remove_user(opts.prefix, state, removed)
        state["user"] = None
    if old.bastion and not new.bastion:
        netns = f"{opts.prefix}-{BASTION}"
        if netns in netns_names():
            stop_namespace(netns, removed)
            ip("netns", "del", netns)
        ip("link", "del", f"{opts.prefix}-mb", check=False)
        for role in ROLES:
            ip("link", "del", JUMP_IF, netns=f"{opts.prefix}-{role}", check=False)
        if state.get("route_metric") is not None:
            remove_route(int(state["route_metric"]))
        shutil.rmtree(opts.resolved_state_dir / BASTION, ignore_errors=True)
    if new.bastion and not old.bastion:
        for role in ROLES:  # the hosts lose their way in from the root namespace
            ip("link", "del", f"{opts.prefix}-m{role[0]}", check=False)
            ip("link", "del", MGMT_IF, netns=f"{opts.prefix}-{role}", check=False)
    write_state(opts, state)


def build_lab(opts: LabOptions, state: dict[str, Any] | None) -> None:
    index = choose_index(opts, state)
    shape = wanted_shape(opts)
    hosts = lab_hosts(opts, index, shape)
    state_dir = opts.resolved_state_dir
    inventory = opts.resolved_inventory_path
    recorded_inventory = state.get("inventory_path") if state else None
    # Everything that can refuse does so before anything is built.
    _check_paths(opts)
    check_inventory_path(inventory, opts.prefix)
    # A pair of a lab of several: that lab made the account and the sudoers rule (build_pairs).
    owns_account = opts.parent is None
    if owns_account:
        check_user(opts, state)
    perf = _check_sudoers(opts) if opts.sudo_perf and owns_account else None
    if opts.no_compiler:
        tool("unshare")
        tool("mount")
        check_overlay()

    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Record first, so that down can find everything even if the build stops half-way. What
    # the new options take away is recorded until it is gone; what they add, before it is made.
    old_workdirs = state.get("workdirs", []) if state else []
    new_workdirs = [h.workdir for r, h in hosts.items() if r in ROLES and opts.user is None]
    state = {
        "version": 2,
        "prefix": opts.prefix,
        "mgmt_index": index,
        # The link options are recorded as they were until the new ones have taken effect,
        # so a failed change shows up in status as a difference, not as success.
        "mtu": state["mtu"] if state else 1500,
        "delay_ms": state["delay_ms"] if state else None,
        "rate_mbit": state["rate_mbit"] if state else None,
        "inventory_path": str(inventory),
        "workdirs": sorted(set(old_workdirs) | set(new_workdirs)),
        "previous_inventory_path": recorded_inventory if recorded_inventory != str(inventory) else None,
        "bastion": bool(state.get("bastion")) if state else False,
        "route_metric": state.get("route_metric") if state else None,
        "user": state.get("user") if state else None,
        "sudoers": state.get("sudoers") if state else None,
        "perf": state.get("perf") if state else None,
        "no_compiler": state.get("no_compiler", []) if state else [],
    }
    write_state(opts, state)
    _reshape(opts, state, index)
    if recorded_inventory and recorded_inventory != str(inventory):
        # The inventory moved; the old one would describe a lab that no longer matches it.
        if is_our_inventory(Path(recorded_inventory), opts.prefix):
            Path(recorded_inventory).unlink()
    state.update(bastion=opts.bastion, route_metric=route_metric(index) if opts.bastion else None)
    state["no_compiler"] = list(opts.no_compiler)
    write_state(opts, state)

    for host in hosts.values():
        host.dir.mkdir(mode=0o700, exist_ok=True)
        ensure_netns(host)
    for host in hosts.values():
        if host.root_if is not None:
            ensure_mgmt_link(host)
        else:
            ensure_jump_link(host)
    ensure_data_link(hosts, opts.mtu)
    ensure_shaping(hosts, opts)
    if opts.bastion:
        ensure_route(route_metric(index))

    user_key = state_dir / "id_ed25519"
    keygen(user_key, f"orchestrate-lab-{opts.prefix}")
    key_line = f'from="{key_sources(shape, opts.address_block)}" {public_key(user_key)}\n'
    authorized_keys = state_dir / "authorized_keys"
    authorized_keys.write_text(key_line)
    user_keys = None
    if opts.user is not None:
        if owns_account:
            account = create_user(opts, state)
            write_start_up_files(account, opts.chatty)
        else:
            account = pair_account(opts)
            state["user"] = {"name": opts.user, "owner": opts.parent}
            write_state(opts, state)
        user_keys = install_user_key(account, key_line, key_file_name(opts))
    known_hosts = state_dir / "known_hosts"
    lines = []
    for host in hosts.values():
        keygen(host.host_key, f"orchestrate-lab-{host.netns}")
        lines.append(f"{host.ssh.ip},{host.netns} {public_key(host.host_key)}\n")
    known_hosts.write_text("".join(lines))
    for host in hosts.values():
        ensure_sshd(host, sshd_text(host, authorized_keys, shape, user_keys), host.role in opts.no_compiler)
        if host.role in ROLES and opts.user is None:
            Path(host.workdir).mkdir(parents=True, exist_ok=True)

    if opts.sudo_perf and owns_account:
        assert opts.user is not None and perf is not None
        state.update(sudoers=str(sudoers_path(opts.prefix)), perf=perf)
        write_state(opts, state)
        ensure_sudoers(opts.prefix, sudoers_text(opts.prefix, opts.user, perf))

    opts.ssh_config_path.write_text(ssh_config_text(opts, hosts, user_key, known_hosts))
    write_inventory(inventory, inventory_text(opts, hosts, user_key, known_hosts), opts.prefix)
    state.update(previous_inventory_path=None, mtu=opts.mtu, delay_ms=opts.delay_ms, rate_mbit=opts.rate_mbit)
    write_state(opts, state)


def build_pairs(opts: LabOptions) -> None:
    """N one-pair labs side by side, each with its own addresses, and one inventory for them all."""
    inventory = opts.resolved_inventory_path
    _check_paths(opts)
    check_inventory_path(inventory, opts.prefix)
    subs = [opts.pair_options(i) for i in range(1, opts.pairs + 1)]
    for sub in subs:
        # A one-pair lab of that name would share the namespaces; refuse rather than adopt it.
        if (STATE_ROOT / sub.prefix / "state.json").exists():
            raise LabError(f"a lab with the prefix {sub.prefix} exists; remove it or choose another prefix")
    old = read_state(opts) or {}
    # The account and the sudoers rule are this lab's, made once for all its pairs.
    check_user(opts, old)
    perf = _check_sudoers(opts) if opts.sudo_perf else None
    opts.resolved_state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Recorded first, so that down finds every pair (and the account) even if the build stops half-way.
    state = {"version": 2, "prefix": opts.prefix, "pairs": opts.pair_names, "inventory_path": str(inventory),
             "previous_inventory_path": old.get("inventory_path"),
             "user": old.get("user"), "sudoers": old.get("sudoers"), "perf": old.get("perf")}
    write_state(opts, state)
    previous = old.get("inventory_path")
    if previous and previous != str(inventory) and is_our_inventory(Path(previous), opts.prefix):
        Path(previous).unlink()
    # What the new options no longer want goes first; each pair then restarts its sshds without it.
    old_user = (old.get("user") or {}).get("name")
    removed: list[str] = []
    if old.get("sudoers") and (not opts.sudo_perf or opts.user != old_user):
        remove_sudoers(opts.prefix, removed)
        state["sudoers"] = None
        write_state(opts, state)
    if old_user and old_user != opts.user:
        remove_user(opts.prefix, state, removed)
        state["user"] = None
        write_state(opts, state)
    if opts.user is not None:
        write_start_up_files(create_user(opts, state), opts.chatty)  # recorded before it is made, like every part
    for sub in subs:
        build_lab(sub, read_state(sub))
    if opts.sudo_perf:
        assert opts.user is not None and perf is not None
        state.update(sudoers=str(sudoers_path(opts.prefix)), perf=perf)
        write_state(opts, state)
        ensure_sudoers(opts.prefix, sudoers_text(opts.prefix, opts.user, perf))
    opts.ssh_config_path.write_text(pairs_ssh_config_text(subs))
    write_inventory(inventory, pairs_inventory_text(opts, subs), opts.prefix)
    state["previous_inventory_path"] = None
    write_state(opts, state)
