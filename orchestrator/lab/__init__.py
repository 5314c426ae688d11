"""A two-host lab on one machine: network namespaces, a data link, and an sshd in each.

The orchestrator reaches the namespaces over SSH exactly as it reaches real hosts, so a run in
the lab exercises the same code path as a run across two machines. Options make it look more
like a real site: a bastion in front of the hosts, an unprivileged login account, a sudo rule
for perf alone, and hosts without a C compiler. Everything the lab makes is named after its
prefix and recorded in one state directory, so ``down`` can remove it all, even after a
half-finished ``up``.

The package, from the bottom up:

- ``options``: what a lab should look like (``LabOptions``), checked;
- ``topology``: its namespaces, links and addresses, computed from the options;
- ``tools``: running ip, tc and the other system tools, and reading the kernel's view back;
- ``state``: the state directory, the record that lets ``down`` find everything, and the lock;
- ``links``: namespaces, veths, the data link's shaping and the bastion's route;
- ``pids``: finding and stopping the lab's processes;
- ``nocompiler``: hiding the compilers from a host's sshd;
- ``sshd``: the keys and an sshd per namespace;
- ``accounts`` and ``sudoers``: the login account and its sudo rule for perf;
- ``inventory``: the inventory and ssh_config the lab writes for its users;
- ``build``, ``teardown`` and ``health``: the work of ``up``, ``down`` and ``status``;
- ``updown``: ``up`` and ``down`` themselves, under the lab's lock.
"""

from __future__ import annotations

from .health import LabRow, LabStatus, status
from .options import DEFAULT_PREFIX, MAX_PAIRS, STATE_ROOT, WORKDIR_ROOT, LabOptions
from .topology import DATA_IF, LAB_RANGE
from .updown import down, up

__all__ = ["DATA_IF", "DEFAULT_PREFIX", "LAB_RANGE", "MAX_PAIRS", "STATE_ROOT", "WORKDIR_ROOT",
           "LabOptions", "LabRow", "LabStatus", "down", "status", "up"]
