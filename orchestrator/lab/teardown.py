"""``lab down``'s work: remove everything a prefix names, whatever shape the lab had or half
had, and only what the lab made (marked files, its own account, its recorded route).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from ..errors import LabError
from ..roles import ROLES
from .accounts import remove_user
from .inventory import is_our_inventory
from .links import remove_route
from .options import STATE_ROOT, WORKDIR_ROOT, LabOptions
from .pids import stop_namespace, stop_pid
from .sshd import our_sshd
from .state import pair_indices, read_state
from .sudoers import remove_sudoers
from .tools import ip, link_info, netns_names
from .topology import BASTION, LAB_RANGE, role_workdir, root_ifs


def teardown(opts: LabOptions) -> list[str]:
    removed: list[str] = []
    try:
        state = read_state(opts)
    except LabError:
        state = None  # an unreadable state must not stop the cleanup
    state_dir = opts.resolved_state_dir
    # The pairs of a lab of several: each a lab of its own, in a folder of the state dir.
    for i in pair_indices(opts, state):
        sub = opts.pair_options(i)
        removed += teardown(sub)
    # Whatever shape the lab had (or half had): every namespace and root link the prefix names.
    names = (BASTION, *ROLES)
    namespaces = netns_names()
    all_netns = [f"{opts.prefix}-{name}" for name in names]

    for netns in all_netns:
        if netns in namespaces:
            stop_namespace(netns, removed)
    for name in names:
        # An sshd whose namespace was deleted under it is in no named namespace any more.
        orphan = our_sshd(state_dir / name)
        if orphan is not None:
            stop_pid(orphan)
            removed.append(f"process {orphan} (sshd of {opts.prefix}-{name})")

    for netns, root_if in zip(all_netns, root_ifs(opts.prefix)):
        root_link_existed = link_info(root_if) is not None
        if netns in namespaces:
            ip("netns", "del", netns)
            removed.append(f"namespace {netns}")
        # Deleting the namespace destroys the veth ends in it and so their peers, but only once
        # the kernel has let go of the namespace; delete the root end explicitly to be sure.
        if link_info(root_if) is not None:
            ip("link", "del", root_if, check=False)
        if root_link_existed:
            removed.append(f"link {root_if}")
    # Only a metric the state records: without it, the route with that metric may be another lab's.
    metric = (state or {}).get("route_metric")
    if metric is not None and remove_route(int(metric)):
        removed.append(f"route unreachable {LAB_RANGE} metric {metric}")

    remove_sudoers(opts.prefix, removed)
    remove_user(opts.prefix, state, removed)

    inventories = {opts.resolved_inventory_path}
    if state:
        inventories |= {Path(p) for p in (state.get("inventory_path"), state.get("previous_inventory_path")) if p}
    for path in sorted(inventories):
        if path.exists() and is_our_inventory(path, opts.prefix):
            path.unlink()
            removed.append(f"file {path}")

    workdirs = {Path(role_workdir(opts, role, None)) for role in ROLES}
    if state:
        workdirs |= {Path(p) for p in state.get("workdirs", []) if p.startswith("/")}
    for path in sorted(workdirs):
        if path.exists():
            shutil.rmtree(path)
            removed.append(f"directory {path}")
    if state_dir.exists():
        shutil.rmtree(state_dir)
        removed.append(f"directory {state_dir}")
    # The per-lab workdir parent and the default shared roots go too once empty (rmdir refuses
    # a non-empty directory); a root the user chose is theirs to keep.
    for parent in [*sorted({p.parent for p in workdirs}), WORKDIR_ROOT, STATE_ROOT]:
        with contextlib.suppress(OSError):
            parent.rmdir()
    return removed
