"""What changed between two runs' hosts and configs, ranked by how much each change matters to a
study of data copies on the socket path; identity noise (where the runs ran, not what on) apart.

The analysis only: compare.py words it for compare.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..roles import ROLES
from .runfolder import flatten

UNKNOWN = "unknown"  # the host facts' key for the facts a host could not read (remote/facts.py writes it)
_BLANK = ("", "—")  # what flatten makes of a fact a run recorded as empty or null
# Facts whose null is a value, not a gap, where the fact beside it was read: a root qdisc that limits
# no rate. (Runs from before qdiscs were recorded have neither.)
_NULL_MEANS = {"nic.qdisc_rate_mbit": ("nic.qdisc", "none")}

# Offloads that change how TCP is cut into segments, and so the per-packet and per-byte costs measured.
SEGMENTATION_OFFLOADS = ("tcp-segmentation-offload", "tx-tcp-segmentation", "tx-tcp6-segmentation",
                         "generic-segmentation-offload", "generic-receive-offload", "large-receive-offload",
                         "rx-gro-hw", "rx-gro-list", "scatter-gather")

# The groups, most important first, and each group's facts in the order a reader wants them.
# A pattern ends in "." to take every fact under it.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Link", ("nic.speed", "nic.speed_mbit", "nic.mtu", "nic.qdisc_rate_mbit", "nic.qdisc", "nic.kind",
              "nic.driver", "nic.driver_version", "nic.firmware", "nic.duplex",
              *(f"nic.offloads.{name}" for name in SEGMENTATION_OFFLOADS))),
    ("CPU", ("cpu_model", "architecture", "cores", "threads_per_core", "cpu_freq_driver", "cpu_governor",
             "numa_nodes", "numa.", "caches.", "memory_bytes")),
    ("Kernel and sysctls", ("kernel", "sysctls.")),
    ("How perf counted", ("perf_access", "perf_version", "perf_events_supported.", "perf_check.counts.",
                          "perf_check.perf_access", "perf_check.perf_event_paranoid",
                          "perf_check.narrowed_to_user_space", "perf_check.problem")),
    ("Account", ("account", "perf_check.uid")),
    ("Versions of the agent and orchestrate", ("orchestrate_version", "agent_hash", "agent_build.compiler",
                                               "agent_build.static", "agent_build.arch", "compiler")),
    ("Other NIC offloads", ("nic.offloads.",)),
)
OTHER = "Other host facts"
CONFIG = "The experiment's settings"
# Facts that say where a run ran, not what it ran on: they differ between any two hosts. Where the
# agent was built (on the host, or a cached build reused) and its binary's hash say how it got there;
# its source (`agent_hash`) and compiler say what it is.
IDENTITY = ("hostname", "ssh_target", "data_address", "nic.addresses", "nic.interface", "nic.bus", "agent_path",
            "agent_build.sha256", "agent_build.where", "agent_build.origin", "role")
_PATHLIKE = re.compile(r"(^|\.)(workdir|\w+_path|\w+_dir|\w+_sha256|\w+_hash)$")


@dataclass(frozen=True)
class Change:
    group: str  # one of GROUPS' names, OTHER or CONFIG
    fact: str  # without its role: `nic.mtu`
    roles: tuple[str, ...]  # the roles whose fact changed this way (empty: a config setting)
    a: str | None  # None: not recorded on that side
    b: str | None

    def text(self) -> str:
        where = f" ({' and '.join(self.roles)})" if self.roles else ""
        if self.a is None:
            return f"{self.fact}{where}: only in B ({self.b})"
        if self.b is None:
            return f"{self.fact}{where}: only in A ({self.a})"
        return f"{self.fact}{where}: A {self.a}, B {self.b}"


def is_identity(fact: str) -> bool:
    """Whether a host fact (named without its role) names where a run ran: a host, address, path or hash."""
    return fact in IDENTITY or bool(_PATHLIKE.search(fact)) and fact != "agent_hash"


def _rank(fact: str) -> tuple[int, int]:
    for group_index, (_, patterns) in enumerate(GROUPS):
        for index, pattern in enumerate(patterns):
            if fact == pattern or (pattern.endswith(".") and fact.startswith(pattern)):
                return group_index, index
    return len(GROUPS), 0


def group_of(fact: str) -> str:
    index, _ = _rank(fact)
    return GROUPS[index][0] if index < len(GROUPS) else OTHER


def _account(facts: dict) -> dict:
    """The login account, from the ssh target (`user@host:port`), as a fact of its own: the target
    itself is identity noise, the account it logs in as is not."""
    target = facts.get("ssh_target")
    if isinstance(target, str) and "@" in target:
        return {**facts, "account": target.split("@", 1)[0]}
    return facts


def _flat(facts: dict) -> tuple[dict[str, str], dict[str, str]]:
    """A role's facts as dotted keys, and the facts it could not read with why."""
    why = facts.get(UNKNOWN) if isinstance(facts.get(UNKNOWN), dict) else {}
    flat = {k: v for k, v in flatten(_account(facts)).items() if not k.startswith(f"{UNKNOWN}.") and k != UNKNOWN}
    flat.update({k: none for k, (beside, none) in _NULL_MEANS.items()
                 if flat.get(k) == "—" and k not in why and flat.get(beside) not in (None, *_BLANK)})
    return flat, {str(k): str(v) for k, v in why.items()}


@dataclass
class HostChanges:
    changes: list[Change]  # ranked: GROUPS' order, then OTHER
    identity: list[str]  # identity facts that differ, as text
    unknown: list[str]  # facts one side could not read, with why: never a change


def host_changes(hosts_a: dict[str, dict], hosts_b: dict[str, dict]) -> HostChanges:
    """The host facts that differ between two runs (per role, `hosts/<role>.json`), ranked; a fact
    one side lists as unknown, or left blank, is unknown there and never a change. A change both
    roles share is one entry naming both."""
    found: dict[tuple[str, str | None, str | None], list[str]] = {}
    identity, unknown = [], []
    for role in ROLES:
        (flat_a, why_a), (flat_b, why_b) = _flat(hosts_a.get(role, {}) or {}), _flat(hosts_b.get(role, {}) or {})
        why = {"A": why_a, "B": why_b}
        for key in dict.fromkeys([*flat_a, *flat_b, *why_a, *why_b]):
            va, vb = flat_a.get(key), flat_b.get(key)
            if va == vb:
                continue
            if is_identity(key):
                identity.append(Change(OTHER, key, (role,), va, vb).text())
                continue
            blind = [side for side, value in (("A", va), ("B", vb))
                     if key in why[side] or any(key.startswith(f"{w}.") for w in why[side]) or value in _BLANK]
            if blind:
                reasons = ", ".join(f"{side}: {why[side].get(key, 'not recorded')}" for side in blind)
                unknown.append(f"{role}.{key}: unknown ({reasons})")
                continue
            found.setdefault((key, va, vb), []).append(role)
    changes = [Change(group_of(key), key, tuple(roles), va, vb) for (key, va, vb), roles in found.items()]
    changes.sort(key=lambda c: _rank(c.fact))  # stable: within a fact, the order first seen
    return HostChanges(changes, identity, unknown)


def config_changes(config_a: dict, config_b: dict) -> list[Change]:
    flat_a, flat_b = flatten(config_a), flatten(config_b)
    return [Change(CONFIG, key, (), flat_a.get(key), flat_b.get(key))
            for key in dict.fromkeys([*flat_a, *flat_b]) if flat_a.get(key) != flat_b.get(key)]


def grouped(changes: list[Change]) -> list[tuple[str, list[Change]]]:
    """The changes by group, in rank order."""
    out: dict[str, list[Change]] = {}
    for change in changes:
        out.setdefault(change.group, []).append(change)
    return list(out.items())
