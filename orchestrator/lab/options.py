"""What a lab should look like: ``LabOptions``, checked when it is made, and its defaults.

Every value here ends up in an interface name, a command line, sshd_config or sudoers, so each
is held to a narrow alphabet and range before anything is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import LabOptionsError
from ..roles import ROLES

DEFAULT_PREFIX = "orch"
STATE_ROOT = Path("/run/orchestrate-lab")
WORKDIR_ROOT = Path("/tmp/orchestrate-lab")
DEFAULT_INVENTORY = "lab-inventory.yml"
# Each pair of a lab of several takes an address block of its own (topology.py): 1..MAX_PAIRS.
MAX_PAIRS = 32
# Each lab takes a pair of management /30s by index (topology.py); 0..MAX_MGMT_INDEX fit the range.
MAX_MGMT_INDEX = 126
SHELLS = {"bash": "/bin/bash", "sh": "/bin/sh"}  # --shell: the lab account's login shell
IFNAMSIZ = 15  # the kernel's limit on interface names, without the NUL
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]*$")
# Stricter than the inventory's UserName: it goes into useradd, sshd_config and sudoers.
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")


@dataclass(frozen=True)
class LabOptions:
    """What the lab should look like. ``None`` paths take the documented defaults."""

    prefix: str = DEFAULT_PREFIX
    mtu: int = 1500
    delay_ms: float | None = None
    rate_mbit: float | None = None
    inventory_path: Path | None = None
    state_dir: Path | None = None
    # None keeps the index an existing lab has, or takes the first free one.
    mgmt_index: int | None = None
    workdir_root: Path = WORKDIR_ROOT
    # A third namespace, <prefix>-bastion; the hosts' sshds are reachable only through it.
    bastion: bool = False
    # An unprivileged account the lab creates and logs in as (instead of root).
    user: str | None = None
    # A sudoers drop-in that lets `user` run perf, and only perf, without a password.
    sudo_perf: bool = False
    # The account's login shell, as most sites give: bash, which reads ~/.bashrc even for the
    # commands sshd runs. "sh" gives dash, which reads nothing.
    shell: str = "bash"
    # The account's start-up files are a real site's: .bashrc and .profile print on stdout and
    # stderr (a banner, a non-UTF-8 byte), set umask 000 and a locale the machine lacks.
    chatty: bool = False
    # Roles whose sshd (and so every session) sees no C compiler.
    no_compiler: tuple[str, ...] = ()
    # More than one: that many independent pairs p1..pN, each a lab of its own named
    # <prefix>-p<i>, described by one inventory. mtus / rates_mbit give each pair its own
    # value (one per pair); empty means every pair takes mtu / rate_mbit.
    pairs: int = 1
    mtus: tuple[int, ...] = ()
    rates_mbit: tuple[float, ...] = ()
    # Which address block the data (and jump) links use: 0 for a one-pair lab, i for pair i.
    address_block: int = 0
    # Pair i of a lab of several: that lab's prefix. The lab of several owns the account
    # (--user) and the sudoers rule (--sudo-perf), made once for all its pairs, as a real
    # site has one account on every host; the pair only lets the account log in.
    parent: str | None = None

    def __post_init__(self) -> None:
        # Root-side management veths are named "<prefix>-ms" / "<prefix>-mc" / "<prefix>-mb".
        longest = IFNAMSIZ - len("-ms")
        if not _PREFIX_RE.match(self.prefix) or len(self.prefix) > longest:
            raise LabOptionsError(
                f"lab prefix {self.prefix!r} must be 1..{longest} characters of a-z, 0-9 and '-', "
                "starting with a letter (interface names are limited to 15 characters)"
            )
        if self.parent is not None and not _PREFIX_RE.match(self.parent):
            raise LabOptionsError(f"lab prefix {self.parent!r} must be letters a-z, digits and '-'")
        if not 68 <= self.mtu <= 65535:
            raise LabOptionsError(f"MTU {self.mtu} is out of range; use 68..65535")
        if self.delay_ms is not None and not 0 < self.delay_ms <= 10_000:
            raise LabOptionsError(f"delay {self.delay_ms} ms is out of range; use more than 0 and at most 10000")
        if self.rate_mbit is not None and not 0.01 <= self.rate_mbit <= 100_000:
            raise LabOptionsError(f"rate {self.rate_mbit} Mbit/s is out of range; use 0.01..100000")
        if self.mgmt_index is not None and not 0 <= self.mgmt_index <= MAX_MGMT_INDEX:
            raise LabOptionsError(f"management index {self.mgmt_index} is out of range; use 0..{MAX_MGMT_INDEX}")
        if self.user is not None and (not _USER_RE.match(self.user) or self.user == "root"):
            raise LabOptionsError(
                f"lab user {self.user!r} must be 1..31 characters of a-z, 0-9, '_' and '-', starting "
                "with a letter or '_', and not root"
            )
        if self.sudo_perf and self.user is None:
            raise LabOptionsError("--sudo-perf needs --user: root runs perf without sudo")
        if self.shell not in SHELLS:
            raise LabOptionsError(f"--shell takes {' or '.join(SHELLS)}, not {self.shell!r}")
        if self.chatty and self.user is None:
            raise LabOptionsError("--chatty needs --user: the lab never writes root's start-up files")
        roles = tuple(self.no_compiler)
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise LabOptionsError(f"--no-compiler takes {' or '.join(ROLES)}, not {', '.join(unknown)}")
        # One spelling for one meaning, so that two equal option sets compare equal.
        object.__setattr__(self, "no_compiler", tuple(r for r in ROLES if r in roles))
        if not 1 <= self.pairs <= MAX_PAIRS:
            raise LabOptionsError(f"--pairs {self.pairs} is out of range; use 1..{MAX_PAIRS}")
        if not 0 <= self.address_block <= MAX_PAIRS:
            raise LabOptionsError(f"address block {self.address_block} is out of range; use 0..{MAX_PAIRS}")
        for name, values in (("--mtu", self.mtus), ("--rate-mbit", self.rates_mbit)):
            if values and len(values) != self.pairs:
                raise LabOptionsError(f"{name} gives {len(values)} values for {self.pairs} pairs; give one, or one per pair")
        if self.pairs > 1:
            longest = IFNAMSIZ - len("-ms") - len(f"-p{self.pairs}")
            if len(self.prefix) > longest:
                raise LabOptionsError(f"with --pairs {self.pairs} the lab prefix may have at most {longest} characters "
                               f"(each pair's interfaces are named <prefix>-p<i>-m…)")
            for i in range(1, self.pairs + 1):
                self.pair_options(i)  # each pair's values are checked now, before anything is built

    @property
    def pair_names(self) -> list[str]:
        return [f"p{i}" for i in range(1, self.pairs + 1)]

    def pair_options(self, i: int) -> "LabOptions":
        """Pair i (1-based) of a lab of several pairs: a one-pair lab of its own."""
        return LabOptions(
            prefix=f"{self.prefix}-p{i}",
            mtu=self.mtus[i - 1] if self.mtus else self.mtu,
            delay_ms=self.delay_ms,
            rate_mbit=self.rates_mbit[i - 1] if self.rates_mbit else self.rate_mbit,
            inventory_path=self.resolved_state_dir / f"p{i}" / "inventory.yml",
            state_dir=self.resolved_state_dir / f"p{i}",
            workdir_root=self.workdir_root,
            bastion=self.bastion,
            user=self.user,
            sudo_perf=self.sudo_perf,
            shell=self.shell,
            chatty=self.chatty,
            no_compiler=self.no_compiler,
            address_block=i,
            parent=self.prefix,
        )

    @property
    def resolved_state_dir(self) -> Path:
        return Path(self.state_dir) if self.state_dir is not None else STATE_ROOT / self.prefix

    @property
    def resolved_inventory_path(self) -> Path:
        path = Path(self.inventory_path) if self.inventory_path is not None else Path(DEFAULT_INVENTORY)
        return path.absolute()

    @property
    def ssh_config_path(self) -> Path:
        return self.resolved_state_dir / "ssh_config"
