"""A two-host lab on one machine: network namespaces, a data link, and an sshd in each.

The orchestrator reaches the namespaces over SSH exactly as it reaches real hosts, so a run in
the lab exercises the same code path as a run across two machines. Options make it look more
like a real site: a bastion in front of the hosts, an unprivileged login account, a sudo rule
for perf alone, and hosts without a C compiler. Everything the lab makes is named after its
prefix and recorded in one state directory, so ``down`` can remove it all, even after a
half-finished ``up``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import glob
import ipaddress
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import LabError
from .roles import ROLES

DEFAULT_PREFIX = "orch"
STATE_ROOT = Path("/run/orchestrate-lab")
WORKDIR_ROOT = Path("/tmp/orchestrate-lab")
DEFAULT_INVENTORY = "lab-inventory.yml"
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
MAX_PAIRS = 32
# A bastion lab puts an `unreachable` route for LAB_RANGE in the root namespace, so that a
# packet to a host behind the bastion fails at once instead of leaving by the default route.
# Each lab's route has its own metric (base + management index), so labs never share one.
ROUTE_METRIC_BASE = 3000
# Management links end in the root namespace, where two labs would collide, so each lab
# takes a pair of /30s from this range by index (index 0: 198.19.1.0/30 and 198.19.2.0/30).
# A bastion lab uses only the first of its pair, for the bastion.
MGMT_RANGE = ipaddress.IPv4Network("198.19.0.0/16")
MAX_MGMT_INDEX = 126
DATA_IF = "data0"
MGMT_IF = "mgmt0"
JUMP_IF = "jump0"
SSH_PORT = 22
IFNAMSIZ = 15  # the kernel's limit on interface names, without the NUL
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]*$")
# Stricter than the inventory's UserName: it goes into useradd, sshd_config and sudoers.
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
_INVENTORY_MARK = "# orchestrate lab inventory, prefix={prefix}; `orchestrate lab down` removes this file\n"
_ACCOUNT_MARK = "orchestrate lab {prefix}"  # the GECOS field of an account the lab created
_SUDOERS_MARK = "# orchestrate lab {prefix}:"
SUDOERS_DIR = Path("/etc/sudoers.d")
# Debian's default secure_path: where `sudo perf` finds perf, so where the rule must point.
SUDO_SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Paths that go into mount options, sshd_config and ssh_config are held to this alphabet.
_SAFE_PATH_RE = re.compile(r"^/[A-Za-z0-9_./+-]*$")

# Compiler drivers hidden on a --no-compiler host: cc, c++, gcc*, g++*, clang*, c89*, c99*,
# tcc and friends, and every cross or versioned name (x86_64-linux-gnu-gcc-12, c89-gcc).
_COMPILER_RE = re.compile(
    r"^(cc|c\+\+|c89|c99|tcc|pcc|icc|icx|icpx|nvcc|gcc|g\+\+|clang|clang\+\+)(-.*)?$"
    r"|^.+-(gcc|g\+\+|clang|clang\+\+)(-.*)?$"
)
# Where drivers live: the PATH directories and LLVM's own bin directories.
_COMPILER_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_COMPILER_DIR_GLOBS = ("/usr/lib/llvm-*/bin",)
# The back ends (cc1, collect2, crt*.o): hidden too, so that no copy of a driver can compile.
_COMPILER_BACKENDS = ("/usr/lib/gcc", "/usr/libexec/gcc", "/usr/lib/gcc-cross")

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
    "visudo": "sudo",
    "sudo": "sudo",
    "perf": "linux-perf",
    "unshare": "util-linux",
    "mount": "mount",
}
# sshd is often outside a non-root PATH; it must be run by absolute path anyway (it re-execs).
_TOOL_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


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

    def __post_init__(self) -> None:
        # Root-side management veths are named "<prefix>-ms" / "<prefix>-mc" / "<prefix>-mb".
        longest = IFNAMSIZ - len("-ms")
        if not _PREFIX_RE.match(self.prefix) or len(self.prefix) > longest:
            raise LabError(
                f"lab prefix {self.prefix!r} must be 1..{longest} characters of a-z, 0-9 and '-', "
                "starting with a letter (interface names are limited to 15 characters)"
            )
        if not 68 <= self.mtu <= 65535:
            raise LabError(f"MTU {self.mtu} is out of range; use 68..65535")
        if self.delay_ms is not None and not 0 < self.delay_ms <= 10_000:
            raise LabError(f"delay {self.delay_ms} ms is out of range; use more than 0 and at most 10000")
        if self.rate_mbit is not None and not 0.01 <= self.rate_mbit <= 100_000:
            raise LabError(f"rate {self.rate_mbit} Mbit/s is out of range; use 0.01..100000")
        if self.mgmt_index is not None and not 0 <= self.mgmt_index <= MAX_MGMT_INDEX:
            raise LabError(f"management index {self.mgmt_index} is out of range; use 0..{MAX_MGMT_INDEX}")
        if self.user is not None and (not _USER_RE.match(self.user) or self.user == "root"):
            raise LabError(
                f"lab user {self.user!r} must be 1..31 characters of a-z, 0-9, '_' and '-', starting "
                "with a letter or '_', and not root"
            )
        if self.sudo_perf and self.user is None:
            raise LabError("--sudo-perf needs --user: root runs perf without sudo")
        roles = tuple(self.no_compiler)
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise LabError(f"--no-compiler takes {' or '.join(ROLES)}, not {', '.join(unknown)}")
        # One spelling for one meaning, so that two equal option sets compare equal.
        object.__setattr__(self, "no_compiler", tuple(r for r in ROLES if r in roles))
        if not 1 <= self.pairs <= MAX_PAIRS:
            raise LabError(f"--pairs {self.pairs} is out of range; use 1..{MAX_PAIRS}")
        if not 0 <= self.address_block <= MAX_PAIRS:
            raise LabError(f"address block {self.address_block} is out of range; use 0..{MAX_PAIRS}")
        for name, values in (("--mtu", self.mtus), ("--rate-mbit", self.rates_mbit)):
            if values and len(values) != self.pairs:
                raise LabError(f"{name} gives {len(values)} values for {self.pairs} pairs; give one, or one per pair")
        if self.pairs > 1:
            longest = IFNAMSIZ - len("-ms") - len(f"-p{self.pairs}")
            if len(self.prefix) > longest:
                raise LabError(f"with --pairs {self.pairs} the lab prefix may have at most {longest} characters "
                               f"(each pair's interfaces are named <prefix>-p<i>-m…)")
            if self.user is not None:
                raise LabError("--user works with one pair only: the pairs would share one account")
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
            no_compiler=self.no_compiler,
            address_block=i,
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


@dataclass(frozen=True)
class _Host:
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
class _Shape:
    """The recorded shape of a lab: what status checks against, and what up builds."""

    bastion: bool
    user: str | None
    sudo_perf: bool
    no_compiler: tuple[str, ...]


def _data_addresses(block: int) -> dict[str, ipaddress.IPv4Interface]:
    if block == 0:
        return DATA_ADDRESSES
    base = ipaddress.IPv4Address(int(LAB_RANGE.network_address) + (4 * block << 8))
    return {role: ipaddress.IPv4Interface(f"{base + 1 + i}/24") for i, role in enumerate(ROLES)}


def _jump_networks(block: int) -> dict[str, ipaddress.IPv4Network]:
    if block == 0:
        return JUMP_NETWORKS
    base = int(LAB_RANGE.network_address) + (4 * block << 8)
    return {role: ipaddress.IPv4Network((base + ((1 + i) << 8), 30)) for i, role in enumerate(ROLES)}


def _mgmt_networks(index: int) -> dict[str, ipaddress.IPv4Network]:
    base = int(MGMT_RANGE.network_address)
    return {
        role: ipaddress.IPv4Network((base + ((2 * index + 1 + i) << 8), 30))
        for i, role in enumerate(ROLES)
    }


def _root_ifs(prefix: str) -> list[str]:
    return [f"{prefix}-m{name[0]}" for name in (BASTION, *ROLES)]


def _workdir(opts: LabOptions, role: str, user: str | None) -> str:
    # The namespaces share one filesystem (and /home), so each role needs a workdir of its own.
    if user is not None:
        return f"~/.cache/orchestrate-{opts.prefix}-{role}"
    return str(Path(opts.workdir_root) / opts.prefix / role)


def _hosts(opts: LabOptions, index: int, shape: _Shape) -> dict[str, _Host]:
    """The namespaces of a lab of this shape: the bastion first if there is one, then the roles."""
    nets = _mgmt_networks(index)
    state_dir = opts.resolved_state_dir
    hosts: dict[str, _Host] = {}
    if shape.bastion:
        first, second = list(nets[ROLES[0]].hosts())
        hosts[BASTION] = _Host(
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
            workdir=_workdir(opts, role, shape.user),
            data=_data_addresses(opts.address_block)[role],
        )
        if shape.bastion:
            near, far = list(_jump_networks(opts.address_block)[role].hosts())
            hosts[role] = _Host(
                **common,
                ssh=ipaddress.IPv4Interface(f"{far}/30"),
                via=hosts[BASTION].netns,
                peer_if=f"to-{role}",
                peer=ipaddress.IPv4Interface(f"{near}/30"),
            )
        else:
            first, second = list(nets[role].hosts())
            hosts[role] = _Host(
                **common,
                ssh=ipaddress.IPv4Interface(f"{second}/30"),
                root_if=f"{opts.prefix}-m{role[0]}",
                mgmt_root=ipaddress.IPv4Interface(f"{first}/30"),
            )
    return hosts


# ---------------------------------------------------------------- running tools


def _tool(name: str) -> str:
    path = shutil.which(name, path=_TOOL_PATH)
    if path is None:
        package = _TOOLS.get(name) or _OPTION_TOOLS[name]
        raise LabError(f"`{name}` was not found; install the Debian package {package}")
    return path


def _preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veth links, sshd); run it with sudo")
    missing = [name for name in _TOOLS if shutil.which(name, path=_TOOL_PATH) is None]
    if missing:
        packages = sorted({_TOOLS[m] for m in missing})
        raise LabError(f"missing {', '.join(missing)}; install: apt-get install {' '.join(packages)}")


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LabError(f"`{shlex.join(argv)}` did not finish within {timeout:g} s") from None
    if check and proc.returncode != 0:
        raise LabError(f"`{shlex.join(argv)}` failed: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
    return proc


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run([_tool("ip"), *(["-n", netns] if netns else []), *args], check=check)


def _ip_json(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
    proc = _run([_tool("ip"), "-j", *(["-n", netns] if netns else []), *args], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return json.loads(proc.stdout)


def _tc(*args: str, netns: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run([_tool("tc"), "-n", netns, *args], check=check)


def _netns_names() -> set[str]:
    return {entry["name"] for entry in _ip_json("netns", "list")}


def _link(ifname: str, netns: str | None = None) -> dict[str, Any] | None:
    links = _ip_json("addr", "show", "dev", ifname, netns=netns)
    return links[0] if links else None


def _inet(link: dict[str, Any]) -> set[ipaddress.IPv4Interface]:
    return {
        ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    }


def _root_qdisc(ifname: str, netns: str) -> dict[str, Any] | None:
    proc = _tc("-j", "qdisc", "show", "dev", ifname, netns=netns, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    for q in json.loads(proc.stdout):
        if q.get("root"):
            return q
    return None


# ---------------------------------------------------------------- state


def _state_file(opts: LabOptions) -> Path:
    return opts.resolved_state_dir / "state.json"


def _read_state(opts: LabOptions) -> dict[str, Any] | None:
    try:
        return json.loads(_state_file(opts).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise LabError(f"lab state {_state_file(opts)} is unreadable ({e}); run `orchestrate lab down`") from None


def _write_state(opts: LabOptions, state: dict[str, Any]) -> None:
    path = _state_file(opts)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _recorded_shape(state: dict[str, Any]) -> _Shape:
    user = state.get("user") or {}
    return _Shape(
        bastion=bool(state.get("bastion", False)),
        user=user.get("name"),
        sudo_perf=bool(state.get("sudoers")),
        no_compiler=tuple(state.get("no_compiler", [])),
    )


def _wanted_shape(opts: LabOptions) -> _Shape:
    return _Shape(bastion=opts.bastion, user=opts.user, sudo_perf=opts.sudo_perf, no_compiler=opts.no_compiler)


@contextlib.contextmanager
def _locked(opts: LabOptions) -> Iterator[None]:
    """Serialise up/down. The lock is on the state dir's parent, so it leaves no file behind."""
    parent = opts.resolved_state_dir.parent
    while True:
        parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        # The last lab's down removes the parent; if that happened while we waited, start over.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(parent).st_ino == os.fstat(fd).st_ino:
                break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------- namespaces and links


def _used_root_addresses(exclude: set[str]) -> set[ipaddress.IPv4Interface]:
    used: set[ipaddress.IPv4Interface] = set()
    for link in _ip_json("-4", "addr", "show"):
        if link.get("ifname") not in exclude:
            used |= _inet(link)
    return used


def _choose_index(opts: LabOptions, state: dict[str, Any] | None) -> int:
    used = _used_root_addresses(set(_root_ifs(opts.prefix)))

    def free(index: int) -> bool:
        nets = _mgmt_networks(index).values()
        return not any(addr.network.overlaps(net) for addr in used for net in nets)

    if opts.mgmt_index is not None:
        index = opts.mgmt_index
        if not free(index):
            raise LabError(
                f"management index {index} ({', '.join(map(str, _mgmt_networks(index).values()))}) is "
                "already in use in the root namespace (another lab?); choose another index"
            )
        return index
    if state is not None and free(int(state["mgmt_index"])):
        return int(state["mgmt_index"])
    for index in range(MAX_MGMT_INDEX + 1):
        if free(index):
            return index
    raise LabError(f"no free management subnets left in {MGMT_RANGE}")


def _ensure_netns(host: _Host) -> None:
    if host.netns not in _netns_names():
        _ip("netns", "add", host.netns)
    _ip("link", "set", "lo", "up", netns=host.netns)


def _ensure_addr(ifname: str, want: ipaddress.IPv4Interface, netns: str | None) -> None:
    link = _link(ifname, netns)
    if link is not None and _inet(link) == {want}:
        return
    _ip("addr", "flush", "dev", ifname, netns=netns)
    _ip("addr", "add", str(want), "dev", ifname, netns=netns)


def _ensure_veth(a: tuple[str, str | None], b: tuple[str, str | None]) -> None:
    """A veth pair between (ifname, netns) a and b, where netns None is the root namespace."""
    ends = [_link(name, ns) for name, ns in (a, b)]
    if None not in ends:
        return
    # A lone end means a half-built pair; rebuild the pair rather than guess.
    for (name, ns), end in zip((a, b), ends):
        if end is not None:
            _ip("link", "del", name, netns=ns)
    (a_name, a_ns), (b_name, b_ns) = a, b
    _ip("link", "add", a_name, *(["netns", a_ns] if a_ns else []),
        "type", "veth", "peer", "name", b_name, *(["netns", b_ns] if b_ns else []))


def _ensure_data_link(hosts: dict[str, _Host], mtu: int) -> None:
    s, c = hosts["server"], hosts["client"]
    _ensure_veth((DATA_IF, s.netns), (DATA_IF, c.netns))
    for host in (s, c):
        assert host.data is not None
        _ip("link", "set", DATA_IF, "mtu", str(mtu), netns=host.netns)
        _ensure_addr(DATA_IF, host.data, host.netns)
        _ip("link", "set", DATA_IF, "up", netns=host.netns)


def _ensure_mgmt_link(host: _Host) -> None:
    assert host.root_if is not None and host.mgmt_root is not None
    _ensure_veth((host.root_if, None), (MGMT_IF, host.netns))
    _ensure_addr(host.root_if, host.mgmt_root, None)
    _ensure_addr(MGMT_IF, host.ssh, host.netns)
    _ip("link", "set", host.root_if, "up")
    _ip("link", "set", MGMT_IF, "up", netns=host.netns)


def _ensure_jump_link(host: _Host) -> None:
    assert host.via is not None and host.peer_if is not None and host.peer is not None
    _ensure_veth((host.peer_if, host.via), (JUMP_IF, host.netns))
    _ensure_addr(host.peer_if, host.peer, host.via)
    _ensure_addr(JUMP_IF, host.ssh, host.netns)
    _ip("link", "set", host.peer_if, "up", netns=host.via)
    _ip("link", "set", JUMP_IF, "up", netns=host.netns)


def _route_metric(index: int) -> int:
    return ROUTE_METRIC_BASE + index


def _has_route(metric: int) -> bool:
    routes = _ip_json("-4", "route", "show", "type", "unreachable", str(LAB_RANGE))
    return any(r.get("metric") == metric for r in routes)


def _ensure_route(metric: int) -> None:
    if not _has_route(metric):
        _ip("route", "replace", "unreachable", str(LAB_RANGE), "metric", str(metric))


def _remove_route(metric: int) -> bool:
    if not _has_route(metric):
        return False
    _ip("route", "del", "unreachable", str(LAB_RANGE), "metric", str(metric), check=False)
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


def _expected_qdisc(opts: LabOptions) -> str | None:
    args = _shaping_args(opts)
    return args[0] if args else None


def _ensure_shaping(hosts: dict[str, _Host], opts: LabOptions) -> None:
    args = _shaping_args(opts)
    for role in ROLES:
        host = hosts[role]
        current = _root_qdisc(DATA_IF, host.netns)
        if args is None:
            if current is not None and current.get("kind") in ("netem", "tbf"):
                _tc("qdisc", "del", "dev", DATA_IF, "root", netns=host.netns)
            continue
        proc = _tc("qdisc", "replace", "dev", DATA_IF, "root", *args, netns=host.netns, check=False)
        if proc.returncode != 0:
            if "unknown" in proc.stderr.lower() and args[0] == "netem":
                raise LabError(
                    "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM, module sch_netem), so the "
                    "lab cannot add a delay; a rate alone works (it uses tbf)"
                )
            raise LabError(f"tc could not shape {DATA_IF} in {host.netns}: {proc.stderr.strip()}")


# ---------------------------------------------------------------- processes


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (which some init processes are slow to reap)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state not in ("Z", "X")


def _stop_pid(pid: int, timeout: float = 3.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _stop_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in pids:
        _stop_pid(pid)


def _netns_pids(netns: str) -> list[int]:
    return [int(p) for p in _ip("netns", "pids", netns, check=False).stdout.split()]


def _uid_pids(uid: int) -> list[int]:
    """Every live process whose real uid is ``uid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        uid_line = next((line for line in status.splitlines() if line.startswith("Uid:")), "")
        if uid_line.split()[1:2] == [str(uid)] and _alive(int(entry)):
            pids.append(int(entry))
    return pids


def _stop_namespace(netns: str, removed: list[str]) -> None:
    """Everything still running in the namespace: sshd, its sessions, agents left behind."""
    pids = _netns_pids(netns)
    _stop_all(pids)
    removed.extend(f"process {pid} in {netns}" for pid in pids)


# ---------------------------------------------------------------- keys and sshd


def _keygen(path: Path, comment: str) -> None:
    if path.exists() and path.with_name(path.name + ".pub").exists():
        return
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    _run([_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _public_key(path: Path) -> str:
    """``type base64`` of an OpenSSH public key file, without its comment."""
    key_type, blob, *_ = path.with_name(path.name + ".pub").read_text().split()
    return f"{key_type} {blob}"


def _key_sources(shape: _Shape, block: int) -> str:
    """Where a login may come from: the root namespace's management range, or the bastion."""
    sources = [str(MGMT_RANGE)]
    if shape.bastion:
        sources += [str(net) for net in _jump_networks(block).values()]
    return ",".join(sources)


def _sshd_text(host: _Host, authorized_keys: Path, shape: _Shape, user_keys: Path | None) -> str:
    lines = [
        f"# sshd for the orchestrate lab namespace {host.netns}; written by `orchestrate lab up`",
        f"ListenAddress {host.ssh.ip}:{SSH_PORT}",
        f"HostKey {host.host_key}",
        f"PidFile {host.pidfile}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        f"AllowUsers root{f' {shape.user}' if shape.user else ''}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        # No PAM: the lab must not depend on, or touch, the system's login configuration.
        "UsePAM no",
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        # The orchestrator opens a connection per role and per agent; allow plenty.
        "MaxStartups 64:30:128",
        "MaxSessions 64",
        "Subsystem sftp internal-sftp",
    ]
    if host.role == BASTION:
        # ProxyJump opens direct-tcpip channels through the bastion to the hosts' sshds.
        lines.append("AllowTcpForwarding yes")
    if host.role in shape.no_compiler:
        # Part of the config so that turning it on or off restarts sshd in the right mount namespace.
        lines.append("# compilers hidden: sshd runs in a private mount namespace (orchestrate lab --no-compiler)")
    if shape.user and user_keys is not None:
        # sshd reads a user's AuthorizedKeysFile as that user, and the lab's own file is in a
        # root-only directory; the user's key file is the user's own, in their home.
        lines += [f"Match User {shape.user}", f"    AuthorizedKeysFile {user_keys}"]
    return "\n".join(lines) + "\n"


def _netns_inode(netns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def _our_sshd(host_dir: Path) -> int | None:
    """The pid in the pid file if that process is alive and is the sshd running our config."""
    try:
        pid = int((host_dir / "sshd.pid").read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == "sshd" and str(host_dir / "sshd_config").encode() in cmdline and _alive(pid) else None


def _sshd_pid(host: _Host) -> int | None:
    """Our sshd, if it runs in the namespace (a namespace deleted under it leaves it orphaned)."""
    pid = _our_sshd(host.dir)
    try:
        inside = pid is not None and os.stat(f"/proc/{pid}/ns/net").st_ino == _netns_inode(host.netns)
    except OSError:
        inside = False
    return pid if inside else None


_CLONE_NEWNET = 0x40000000


def _connect(address: str, timeout: float, netns: str | None) -> socket.socket:
    """A TCP connection to address:22, made from inside ``netns`` (None: this namespace)."""
    if netns is None:
        return socket.create_connection((address, SSH_PORT), timeout=timeout)
    # Python 3.11 has no os.setns. A network namespace is per thread, so a short-lived thread
    # enters the namespace, makes the socket (which stays in that namespace) and ends.
    result: dict[str, Any] = {}

    def inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{netns}", "rb") as ns:
                if libc.setns(ns.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            result["sock"] = socket.create_connection((address, SSH_PORT), timeout=timeout)
        except OSError as e:
            result["error"] = e

    thread = threading.Thread(target=inside, name=f"lab-netns-{netns}")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["sock"]


def _ssh_banner(host: _Host, timeout: float = 2.0) -> str | None:
    try:
        with _connect(str(host.ssh.ip), timeout, host.via) as sock:
            sock.settimeout(timeout)
            line = sock.recv(256).split(b"\r\n", 1)[0]
    except OSError:
        return None
    return line.decode("ascii", "replace") if line.startswith(b"SSH-") else None


# ---------------------------------------------------------------- hiding compilers


def _compiler_dirs() -> list[str]:
    """Directories that hold compiler drivers on this machine, each once (/bin may be /usr/bin)."""
    seen: set[Path] = set()
    dirs = []
    for d in [*_COMPILER_DIRS, *sorted(p for g in _COMPILER_DIR_GLOBS for p in glob.glob(g))]:
        path = Path(d)
        if path.is_symlink() or not path.is_dir() or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        dirs.append(d)
    return dirs


def _compilers_in(directory: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if _COMPILER_RE.match(n))
    except OSError:
        return []


def _visible_compilers(pid: int) -> list[str]:
    """Compilers a process would find, looked at through its own root (so its mount namespace)."""
    root = f"/proc/{pid}/root"
    found = [f"{d}/{n}" for d in _compiler_dirs() for n in _compilers_in(root + d)]
    for backend in _COMPILER_BACKENDS:
        with contextlib.suppress(OSError):
            if os.listdir(root + backend):
                found.append(backend)
    return found


def _hide_script(host: _Host) -> str:
    """A shell script that hides the compilers in a fresh mount namespace, then execs "$0" "$@".

    Each directory with compiler drivers gets a read-only overlay whose upper lower layer holds
    whiteouts (character devices 0/0) for the drivers' names; the back-end directories get an
    empty read-only tmpfs. Everything else in those directories stays as it is.
    """
    layers = host.dir / "hidden"
    shutil.rmtree(layers, ignore_errors=True)
    layers.mkdir(mode=0o700)
    steps = ["set -e"]
    for i, directory in enumerate(_compiler_dirs()):
        names = _compilers_in(directory)
        if not names:
            continue
        whiteouts = layers / str(i)
        whiteouts.mkdir(mode=0o755)
        for name in names:
            os.mknod(whiteouts / name, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        steps.append(shlex.join(["mount", "-t", "overlay", "-o", f"ro,lowerdir={whiteouts}:{directory}",
                                 "orchestrate-lab-nocc", directory]))
    for backend in _COMPILER_BACKENDS:
        if Path(backend).is_dir():
            steps.append(shlex.join(["mount", "-t", "tmpfs", "-o", "ro,mode=0755,size=4k",
                                     "orchestrate-lab-nocc", backend]))
    steps.append('exec "$0" "$@"')
    return "\n".join(steps)


def _check_overlay() -> None:
    try:
        filesystems = Path("/proc/filesystems").read_text().split()
    except OSError:
        filesystems = []
    if "overlay" not in filesystems:
        _run(["modprobe", "overlay"], check=False)
        if "overlay" not in Path("/proc/filesystems").read_text().split():
            raise LabError("--no-compiler needs overlayfs, which this kernel lacks (CONFIG_OVERLAY_FS, module overlay)")


def _ensure_sshd(host: _Host, text: str, hide: bool) -> None:
    changed = not host.sshd_config.exists() or host.sshd_config.read_text() != text
    host.sshd_config.write_text(text)
    running = _sshd_pid(host)
    if (running is not None and not changed and _ssh_banner(host) is not None
            and not (hide and _visible_compilers(running))):
        return
    pid = _our_sshd(host.dir)
    sshd = _tool("sshd")
    # Privilege separation needs this directory; systemd normally makes it for the system sshd.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    _run([sshd, "-t", "-f", str(host.sshd_config)])
    if pid is not None:
        _stop_pid(pid)
    host.pidfile.unlink(missing_ok=True)
    log = host.dir / "sshd.log"
    argv = [sshd, "-f", str(host.sshd_config), "-E", str(log)]
    if hide:
        # sshd, and so every session it starts, lives in a mount namespace of its own that
        # dies with the last of those processes.
        argv = [_tool("unshare"), "--mount", "--propagation", "private", "sh", "-c", _hide_script(host), *argv]
    _ip("netns", "exec", host.netns, *argv)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _sshd_pid(host) is not None and _ssh_banner(host, timeout=0.5) is not None:
            return
        time.sleep(0.05)
    tail = log.read_text()[-500:] if log.exists() else ""
    raise LabError(f"sshd in {host.netns} did not answer on {host.ssh.ip}:{SSH_PORT} within 10 s; log: {tail}")


# ---------------------------------------------------------------- the login account


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _is_our_account(name: str, prefix: str, state: dict[str, Any] | None) -> bool:
    """Ours: recorded in this lab's state, and marked by the lab in its comment field."""
    account = _account(name)
    record = (state or {}).get("user") or {}
    return (
        account is not None
        and record.get("name") == name
        and account.pw_gecos == _ACCOUNT_MARK.format(prefix=prefix)
        and record.get("uid") in (None, account.pw_uid)
    )


def _home(name: str) -> Path:
    return Path("/home") / name


def _check_user(opts: LabOptions, state: dict[str, Any] | None) -> None:
    """Refuse, before anything is built, an account (or home) the lab did not create."""
    if opts.user is None or _is_our_account(opts.user, opts.prefix, state):
        return
    if _account(opts.user) is not None:
        raise LabError(f"an account named {opts.user!r} exists and was not created by this lab; choose another --user")
    if _home(opts.user).exists() or os.path.lexists(_home(opts.user)):
        raise LabError(f"{_home(opts.user)} exists and was not created by this lab; choose another --user")
    _tool("useradd")
    _tool("userdel")


def _create_user(opts: LabOptions, state: dict[str, Any]) -> pwd.struct_passwd:
    assert opts.user is not None
    account = _account(opts.user)
    if account is None:
        # Recorded before it exists, so that a crash between the two still lets down find it.
        state["user"] = {"name": opts.user, "uid": None}
        _write_state(opts, state)
        _run([_tool("useradd"), "--create-home", "--home-dir", str(_home(opts.user)), "--user-group",
              "--shell", "/bin/sh", "--comment", _ACCOUNT_MARK.format(prefix=opts.prefix),
              # `*`: no password can log in, yet the account is not locked (`!`), which sshd
              # without PAM would refuse.
              "--password", "*", opts.user])
        account = pwd.getpwnam(opts.user)
    state["user"] = {"name": opts.user, "uid": account.pw_uid, "home": account.pw_dir}
    _write_state(opts, state)
    return account


def _install_user_key(account: pwd.struct_passwd, line: str) -> Path:
    """Write ~/.ssh/authorized_keys as the user's own file, never following a link the user made."""
    uid, gid = account.pw_uid, account.pw_gid
    home = os.open(account.pw_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.fstat(home).st_uid != uid:
            raise LabError(f"{account.pw_dir} is not owned by {account.pw_name}; run `orchestrate lab down`")
        with contextlib.suppress(FileExistsError):
            os.mkdir(".ssh", 0o700, dir_fd=home)
        ssh_dir = os.open(".ssh", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=home)
        try:
            os.fchown(ssh_dir, uid, gid)
            os.fchmod(ssh_dir, 0o700)
            fd = os.open("authorized_keys", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600,
                         dir_fd=ssh_dir)
            with os.fdopen(fd, "w") as f:
                os.fchown(f.fileno(), uid, gid)
                os.fchmod(f.fileno(), 0o600)
                f.write(line)
        finally:
            os.close(ssh_dir)
    finally:
        os.close(home)
    return Path(account.pw_dir) / ".ssh" / "authorized_keys"


def _remove_user(prefix: str, state: dict[str, Any] | None, removed: list[str]) -> None:
    record = (state or {}).get("user") or {}
    name = record.get("name")
    if not name or not _is_our_account(name, prefix, state):
        return
    account = _account(name)
    assert account is not None
    # userdel refuses an account with processes; they are the lab's (sessions, agents).
    _stop_all(_uid_pids(account.pw_uid))
    proc = _run([_tool("userdel"), "--remove", name], check=False)
    if _account(name) is not None:
        raise LabError(f"userdel could not remove the lab's account {name}: {proc.stderr.strip()}")
    removed.append(f"account {name} and its home {account.pw_dir}")


# ---------------------------------------------------------------- sudo for perf


def _sudoers_path(prefix: str) -> Path:
    # No '.' in the name: sudo skips files in sudoers.d whose names contain one.
    return SUDOERS_DIR / f"orchestrate-lab-{prefix}"


def _perf_path() -> str:
    # The rule names the path sudo finds for `perf` on its secure_path; sudo matches the
    # command by that path's inode, so a wrapper script there (Debian's) or a symlink works.
    path = shutil.which("perf", path=SUDO_SECURE_PATH)
    if path is None:
        raise LabError("--sudo-perf needs perf; install the Debian package linux-perf")
    return path


def _sudoers_text(prefix: str, user: str, perf: str) -> str:
    return (
        f"{_SUDOERS_MARK.format(prefix=prefix)} {user} may run perf, and only perf, as root without a password.\n"
        "# Written by `orchestrate lab up`; `orchestrate lab down` removes it.\n"
        f"{user} ALL=(root) NOPASSWD: {perf}\n"
    )


def _is_our_sudoers(path: Path, prefix: str) -> bool:
    try:
        with path.open() as f:
            return f.readline().startswith(_SUDOERS_MARK.format(prefix=prefix) + " ")
    except OSError:
        return False


def _ensure_sudoers(prefix: str, text: str) -> None:
    path = _sudoers_path(prefix)
    if path.exists() and not _is_our_sudoers(path, prefix):
        raise LabError(f"{path} exists and was not written by this lab; remove it or use another prefix")
    with contextlib.suppress(OSError):
        if path.read_text() == text and stat.S_IMODE(path.stat().st_mode) == 0o440:
            return
    visudo = _tool("visudo")
    _tool("sudo")
    SUDOERS_DIR.mkdir(mode=0o750, exist_ok=True)
    # A name with a '.' is skipped by sudo, so a half-written file is never read.
    tmp = SUDOERS_DIR / f".orchestrate-lab-{prefix}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o440)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o440)
        f.write(text)
    proc = _run([visudo, "-cf", str(tmp)], check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise LabError(f"visudo rejected the lab's sudoers rule: {(proc.stdout + proc.stderr).strip()}")
    tmp.replace(path)


def _remove_sudoers(prefix: str, removed: list[str]) -> None:
    (SUDOERS_DIR / f".orchestrate-lab-{prefix}.tmp").unlink(missing_ok=True)
    path = _sudoers_path(prefix)
    if path.exists() and _is_our_sudoers(path, prefix):
        path.unlink()
        removed.append(f"file {path}")


# ---------------------------------------------------------------- inventory and ssh_config


def _endpoint(host: _Host, login: str, key: Path, known_hosts: Path) -> dict[str, Any]:
    return {"host": str(host.ssh.ip), "user": login, "port": SSH_PORT, "key": str(key), "known_hosts": str(known_hosts)}


def _inventory_text(opts: LabOptions, hosts: dict[str, _Host], key: Path, known_hosts: Path) -> str:
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


def _ssh_config_text(opts: LabOptions, hosts: dict[str, _Host], key: Path, known_hosts: Path) -> str:
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


def _is_our_inventory(path: Path, prefix: str) -> bool:
    try:
        with path.open() as f:
            return f.readline() == _INVENTORY_MARK.format(prefix=prefix)
    except OSError:
        return False


def _check_inventory_path(path: Path, prefix: str) -> None:
    if path.exists() and not _is_our_inventory(path, prefix):
        raise LabError(f"{path} exists and was not written by this lab; remove it or give another inventory path")


def _write_inventory(path: Path, text: str, prefix: str) -> None:
    _check_inventory_path(path, prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---------------------------------------------------------------- building


def _check_paths(opts: LabOptions) -> None:
    # The state dir ends up in mount options, sshd_config and ssh_config; keep it plain.
    if not _SAFE_PATH_RE.match(str(opts.resolved_state_dir.absolute())):
        raise LabError(f"lab state dir {opts.resolved_state_dir} must be a plain path (letters, digits, _ . / + -)")


def _reshape(opts: LabOptions, state: dict[str, Any], index: int) -> None:
    """Take away the parts of a recorded lab that the new options no longer want."""
    old, new = _recorded_shape(state), _wanted_shape(opts)
    removed: list[str] = []
    if old.sudo_perf and (not new.sudo_perf or new.user != old.user):
        _remove_sudoers(opts.prefix, removed)
        state["sudoers"] = None
    if old.user and old.user != new.user:
        for name in (BASTION, *ROLES):
            pid = _our_sshd(opts.resolved_state_dir / name)
            if pid is not None:  # its config names the old account; it restarts below
                _stop_pid(pid)
        _remove_user(opts.prefix, state, removed)
        state["user"] = None
    if old.bastion and not new.bastion:
        netns = f"{opts.prefix}-{BASTION}"
        if netns in _netns_names():
            _stop_namespace(netns, removed)
            _ip("netns", "del", netns)
        _ip("link", "del", f"{opts.prefix}-mb", check=False)
        for role in ROLES:
            _ip("link", "del", JUMP_IF, netns=f"{opts.prefix}-{role}", check=False)
        if state.get("route_metric") is not None:
            _remove_route(int(state["route_metric"]))
        shutil.rmtree(opts.resolved_state_dir / BASTION, ignore_errors=True)
    if new.bastion and not old.bastion:
        for role in ROLES:  # the hosts lose their way in from the root namespace
            _ip("link", "del", f"{opts.prefix}-m{role[0]}", check=False)
            _ip("link", "del", MGMT_IF, netns=f"{opts.prefix}-{role}", check=False)
    _write_state(opts, state)


def _build(opts: LabOptions, state: dict[str, Any] | None) -> None:
    index = _choose_index(opts, state)
    shape = _wanted_shape(opts)
    hosts = _hosts(opts, index, shape)
    state_dir = opts.resolved_state_dir
    inventory = opts.resolved_inventory_path
    recorded_inventory = state.get("inventory_path") if state else None
    # Everything that can refuse does so before anything is built.
    _check_paths(opts)
    _check_inventory_path(inventory, opts.prefix)
    _check_user(opts, state)
    perf = _perf_path() if opts.sudo_perf else None
    if opts.sudo_perf:
        _tool("visudo")
        _tool("sudo")
        sudoers = _sudoers_path(opts.prefix)
        if sudoers.exists() and not _is_our_sudoers(sudoers, opts.prefix):
            raise LabError(f"{sudoers} exists and was not written by this lab; remove it or use another prefix")
    if opts.no_compiler:
        _tool("unshare")
        _tool("mount")
        _check_overlay()

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
    _write_state(opts, state)
    _reshape(opts, state, index)
    if recorded_inventory and recorded_inventory != str(inventory):
        # The inventory moved; the old one would describe a lab that no longer matches it.
        if _is_our_inventory(Path(recorded_inventory), opts.prefix):
            Path(recorded_inventory).unlink()
    state.update(bastion=opts.bastion, route_metric=_route_metric(index) if opts.bastion else None)
    state["no_compiler"] = list(opts.no_compiler)
    _write_state(opts, state)

    for host in hosts.values():
        host.dir.mkdir(mode=0o700, exist_ok=True)
        _ensure_netns(host)
    for host in hosts.values():
        if host.root_if is not None:
            _ensure_mgmt_link(host)
        else:
            _ensure_jump_link(host)
    _ensure_data_link(hosts, opts.mtu)
    _ensure_shaping(hosts, opts)
    if opts.bastion:
        _ensure_route(_route_metric(index))

    user_key = state_dir / "id_ed25519"
    _keygen(user_key, f"orchestrate-lab-{opts.prefix}")
    key_line = f'from="{_key_sources(shape, opts.address_block)}" {_public_key(user_key)}\n'
    authorized_keys = state_dir / "authorized_keys"
    authorized_keys.write_text(key_line)
    user_keys = None
    if opts.user is not None:
        user_keys = _install_user_key(_create_user(opts, state), key_line)
    known_hosts = state_dir / "known_hosts"
    lines = []
    for host in hosts.values():
        _keygen(host.host_key, f"orchestrate-lab-{host.netns}")
        lines.append(f"{host.ssh.ip},{host.netns} {_public_key(host.host_key)}\n")
    known_hosts.write_text("".join(lines))
    for host in hosts.values():
        _ensure_sshd(host, _sshd_text(host, authorized_keys, shape, user_keys), host.role in opts.no_compiler)
        if host.role in ROLES and opts.user is None:
            Path(host.workdir).mkdir(parents=True, exist_ok=True)

    if opts.sudo_perf:
        assert opts.user is not None and perf is not None
        state.update(sudoers=str(_sudoers_path(opts.prefix)), perf=perf)
        _write_state(opts, state)
        _ensure_sudoers(opts.prefix, _sudoers_text(opts.prefix, opts.user, perf))

    opts.ssh_config_path.write_text(_ssh_config_text(opts, hosts, user_key, known_hosts))
    _write_inventory(inventory, _inventory_text(opts, hosts, user_key, known_hosts), opts.prefix)
    state.update(previous_inventory_path=None, mtu=opts.mtu, delay_ms=opts.delay_ms, rate_mbit=opts.rate_mbit)
    _write_state(opts, state)


# ---------------------------------------------------------------- several pairs


def _pair_indices(opts: LabOptions, state: dict[str, Any] | None) -> list[int]:
    """Every pair a lab of several has or half has: recorded, asked for, or left on disk."""
    found = {int(name[1:]) for name in (state or {}).get("pairs") or [] if re.fullmatch(r"p[0-9]+", name)}
    if opts.pairs > 1:
        found |= set(range(1, opts.pairs + 1))
    with contextlib.suppress(OSError):
        found |= {int(p.name[1:]) for p in opts.resolved_state_dir.iterdir() if re.fullmatch(r"p[0-9]+", p.name)}
    return sorted(i for i in found if 1 <= i <= MAX_PAIRS)


def _build_pairs(opts: LabOptions) -> None:
    """N one-pair labs side by side, each with its own addresses, and one inventory for them all."""
    inventory = opts.resolved_inventory_path
    _check_paths(opts)
    _check_inventory_path(inventory, opts.prefix)
    subs = [opts.pair_options(i) for i in range(1, opts.pairs + 1)]
    for sub in subs:
        # A one-pair lab of that name would share the namespaces; refuse rather than adopt it.
        if (STATE_ROOT / sub.prefix / "state.json").exists():
            raise LabError(f"a lab with the prefix {sub.prefix} exists; remove it or choose another prefix")
    opts.resolved_state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = _read_state(opts) or {}
    # Recorded first, so that down finds every pair even if the build stops half-way.
    _write_state(opts, {"version": 2, "prefix": opts.prefix, "pairs": opts.pair_names,
                        "inventory_path": str(inventory), "previous_inventory_path": old.get("inventory_path")})
    previous = old.get("inventory_path")
    if previous and previous != str(inventory) and _is_our_inventory(Path(previous), opts.prefix):
        Path(previous).unlink()
    doc: dict[str, Any] = {"pairs": {}}
    ssh_configs = []
    for name, sub in zip(opts.pair_names, subs):
        _build(sub, _read_state(sub))
        doc["pairs"][name] = yaml.safe_load(sub.resolved_inventory_path.read_text())
        ssh_configs.append(sub.ssh_config_path.read_text())
    opts.ssh_config_path.write_text("".join(ssh_configs))
    aliases = ", ".join(f"{sub.prefix}-{role}" for sub in subs for role in ROLES)
    header = (_INVENTORY_MARK.format(prefix=opts.prefix)
              + f"# {opts.pairs} pairs that share no host; ssh_config with the Host aliases {aliases}: "
              + f"{opts.ssh_config_path}\n")
    _write_inventory(inventory, header + yaml.safe_dump(doc, sort_keys=False), opts.prefix)
    _write_state(opts, {"version": 2, "prefix": opts.prefix, "pairs": opts.pair_names,
                        "inventory_path": str(inventory), "previous_inventory_path": None})


def _pairs_status(opts: LabOptions, state: dict[str, Any] | None) -> LabStatus:
    state_dir = opts.resolved_state_dir
    inventory = Path(state["inventory_path"]) if state else opts.resolved_inventory_path
    rows = [LabRow(str(state_dir), "state", "ok" if state else "missing",
                   f"pairs {', '.join(state['pairs'])}" if state else "")]
    for i in _pair_indices(opts, state):
        sub = status(opts.pair_options(i))
        rows += [r for r in sub.rows if r.kind not in ("state", "inventory", "ssh_config")]
        # The pair's own state, inventory and ssh_config are parts of this lab's; named as such.
        rows += [dataclasses.replace(r, kind=f"p{i} {r.kind}") for r in sub.rows if r.kind in ("state", "inventory", "ssh_config")]
    ssh_config = opts.ssh_config_path
    rows.append(LabRow(str(ssh_config), "ssh_config", "ok" if ssh_config.exists() else "missing"))
    if inventory.exists():
        ours = _is_our_inventory(inventory, opts.prefix)
        rows.append(LabRow(str(inventory), "inventory", "ok" if ours else "wrong", "" if ours else "not written by this lab"))
    else:
        rows.append(LabRow(str(inventory), "inventory", "missing"))
    return LabStatus(prefix=opts.prefix, state_dir=state_dir, inventory_path=inventory, rows=rows,
                     ssh_config_path=ssh_config)


# ---------------------------------------------------------------- public API


def up(opts: LabOptions) -> LabStatus:
    """Build the lab, or bring an existing one in line with ``opts``; safe to run again."""
    _preflight()
    with _locked(opts):
        state = _read_state(opts)
        recorded = len((state or {}).get("pairs") or []) or (1 if state else None)
        if recorded is not None and recorded != opts.pairs:
            raise LabError(f"lab {opts.prefix} has {recorded} pair{'s' if recorded > 1 else ''}, not {opts.pairs}; "
                           f"run `orchestrate lab down --prefix {opts.prefix}` first")
        try:
            if opts.pairs > 1:
                _build_pairs(opts)
            else:
                _build(opts, state)
        except (LabError, OSError) as e:
            message = str(e) if isinstance(e, LabError) else f"lab up failed: {e}"
            if state is None:
                # A fresh lab that failed half-way is worth nothing; leave the machine clean.
                try:
                    _teardown(opts)
                except (LabError, OSError) as cleanup:
                    message += f"; removing the half-built lab failed too ({cleanup}); run `orchestrate lab down`"
            raise LabError(message) from e
    result = status(opts)
    if not result.ok:
        bad = "; ".join(f"{r.name}: {r.state} {r.detail}".strip() for r in result.rows if r.state != "ok")
        raise LabError(f"the lab was built but is not healthy: {bad}")
    return result


def down(opts: LabOptions) -> list[str]:
    """Remove everything ``up`` made for this prefix; returns what was removed."""
    _preflight()
    with _locked(opts):
        try:
            return _teardown(opts)
        except OSError as e:
            raise LabError(f"lab down failed: {e}") from e


def _teardown(opts: LabOptions) -> list[str]:
    removed: list[str] = []
    try:
        state = _read_state(opts)
    except LabError:
        state = None  # an unreadable state must not stop the cleanup
    state_dir = opts.resolved_state_dir
    # The pairs of a lab of several: each a lab of its own, in a folder of the state dir.
    for i in _pair_indices(opts, state):
        sub = opts.pair_options(i)
        removed += _teardown(sub)
    # Whatever shape the lab had (or half had): every namespace and root link the prefix names.
    names = (BASTION, *ROLES)
    namespaces = _netns_names()
    all_netns = [f"{opts.prefix}-{name}" for name in names]

    for netns in all_netns:
        if netns in namespaces:
            _stop_namespace(netns, removed)
    for name in names:
        # An sshd whose namespace was deleted under it is in no named namespace any more.
        orphan = _our_sshd(state_dir / name)
        if orphan is not None:
            _stop_pid(orphan)
            removed.append(f"process {orphan} (sshd of {opts.prefix}-{name})")

    for netns, root_if in zip(all_netns, _root_ifs(opts.prefix)):
        root_link_existed = _link(root_if) is not None
        if netns in namespaces:
            _ip("netns", "del", netns)
            removed.append(f"namespace {netns}")
        # Deleting the namespace destroys the veth ends in it and so their peers, but only once
        # the kernel has let go of the namespace; delete the root end explicitly to be sure.
        if _link(root_if) is not None:
            _ip("link", "del", root_if, check=False)
        if root_link_existed:
            removed.append(f"link {root_if}")
    # Only a metric the state records: without it, the route with that metric may be another lab's.
    metric = (state or {}).get("route_metric")
    if metric is not None and _remove_route(int(metric)):
        removed.append(f"route unreachable {LAB_RANGE} metric {metric}")

    _remove_sudoers(opts.prefix, removed)
    _remove_user(opts.prefix, state, removed)

    inventories = {opts.resolved_inventory_path}
    if state:
        inventories |= {Path(p) for p in (state.get("inventory_path"), state.get("previous_inventory_path")) if p}
    for path in sorted(inventories):
        if path.exists() and _is_our_inventory(path, opts.prefix):
            path.unlink()
            removed.append(f"file {path}")

    workdirs = {Path(_workdir(opts, role, None)) for role in ROLES}
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


def status(opts: LabOptions) -> LabStatus:
    """What of the lab exists and whether it works, one row per part."""
    _preflight()
    state = _read_state(opts)
    if (state and state.get("pairs")) or (state is None and opts.pairs > 1):
        return _pairs_status(opts, state)
    state_dir = opts.resolved_state_dir
    inventory = Path(state["inventory_path"]) if state else opts.resolved_inventory_path
    rows = [LabRow(str(state_dir), "state", "ok" if state else "missing", "")]
    expect_mtu = int(state["mtu"]) if state else opts.mtu
    expect_qdisc = (
        _expected_qdisc(LabOptions(prefix=opts.prefix, delay_ms=state["delay_ms"], rate_mbit=state["rate_mbit"]))
        if state
        else _expected_qdisc(opts)
    )
    shape = _recorded_shape(state) if state else _wanted_shape(opts)
    index = int(state["mgmt_index"]) if state else 0
    hosts = _hosts(opts, index, shape)
    namespaces = _netns_names()

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
        metric = int(state.get("route_metric") or _route_metric(index)) if state else _route_metric(index)
        name = f"unreachable {LAB_RANGE} metric {metric}"
        rows.append(LabRow(name, "route", "ok" if _has_route(metric) else "missing",
                           "the root namespace cannot reach the hosts behind the bastion"))
    if shape.user:
        rows.append(_user_row(opts.prefix, shape.user, state))
    if shape.sudo_perf:
        rows.append(_sudoers_row(opts.prefix, shape.user, (state or {}).get("perf")))

    ssh_config = opts.ssh_config_path
    rows.append(LabRow(str(ssh_config), "ssh_config", "ok" if ssh_config.exists() else "missing",
                       f"Host {' '.join(h.netns for h in hosts.values())}" if ssh_config.exists() else ""))
    if inventory.exists():
        rows.append(LabRow(str(inventory), "inventory", "ok" if _is_our_inventory(inventory, opts.prefix) else "wrong",
                           "" if _is_our_inventory(inventory, opts.prefix) else "not written by this lab"))
    else:
        rows.append(LabRow(str(inventory), "inventory", "missing"))
    return LabStatus(prefix=opts.prefix, state_dir=state_dir, inventory_path=inventory, rows=rows,
                     ssh_config_path=ssh_config)


def _data_row(host: _Host, present: bool, mtu: int, qdisc: str | None) -> LabRow:
    name = f"{host.netns}/{DATA_IF}"
    link = _link(DATA_IF, host.netns) if present else None
    if link is None:
        return LabRow(name, "data link", "missing")
    root = _root_qdisc(DATA_IF, host.netns)
    kind = root.get("kind") if root else None
    shaping = kind if kind in ("netem", "tbf") else None
    shaping_text = f"{kind} {json.dumps(root.get('options', {}), sort_keys=True)}" if shaping and root else "none"
    addrs = _inet(link)
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
    if near_end is None or _inet(near_end) != {near_want}:
        problems.append(f"near end should be {near_want}")
    if far_end is None or _inet(far_end) != {far_want}:
        problems.append(f"namespace end should be {far_want}")
    if near_end is not None and far_end is not None and not (
        "UP" in near_end.get("flags", []) and "UP" in far_end.get("flags", [])
    ):
        problems.append("down")
    return LabRow(name, kind, "wrong" if problems else "ok", "; ".join(problems) or f"{near_want} <-> {far_want}")


def _mgmt_row(host: _Host, present: bool) -> LabRow:
    assert host.root_if is not None and host.mgmt_root is not None
    return _pair_row(f"{host.root_if}<->{host.netns}/{MGMT_IF}", "mgmt link",
                     (_link(host.root_if), host.mgmt_root),
                     (_link(MGMT_IF, host.netns) if present else None, host.ssh))


def _jump_row(host: _Host, present: bool, namespaces: set[str]) -> LabRow:
    assert host.via is not None and host.peer_if is not None and host.peer is not None
    return _pair_row(f"{host.via}/{host.peer_if}<->{host.netns}/{JUMP_IF}", "jump link",
                     (_link(host.peer_if, host.via) if host.via in namespaces else None, host.peer),
                     (_link(JUMP_IF, host.netns) if present else None, host.ssh))


def _sshd_row(host: _Host) -> LabRow:
    name = f"sshd {host.netns}"
    pid = _sshd_pid(host)
    if pid is None:
        return LabRow(name, "sshd", "missing")
    banner = _ssh_banner(host)
    where = f"{host.ssh.ip}:{SSH_PORT}" + (f" (from {host.via})" if host.via else "")
    if banner is None:
        return LabRow(name, "sshd", "wrong", f"pid {pid} does not answer on {where}")
    return LabRow(name, "sshd", "ok", f"pid {pid}, {where} answers {banner}")


def _compiler_row(host: _Host) -> LabRow:
    name = f"compilers {host.netns}"
    pid = _sshd_pid(host)
    if pid is None:
        return LabRow(name, "no compiler", "missing", "no sshd")
    visible = _visible_compilers(pid)
    if visible:
        return LabRow(name, "no compiler", "wrong", f"sshd pid {pid} sees {', '.join(visible[:5])}")
    hidden = sum(len(_compilers_in(d)) for d in _compiler_dirs())
    return LabRow(name, "no compiler", "ok", f"{hidden} compiler names hidden from sshd pid {pid} and its sessions")


def _user_row(prefix: str, name: str, state: dict[str, Any] | None) -> LabRow:
    account = _account(name)
    if account is None:
        return LabRow(f"user {name}", "user", "missing")
    if not _is_our_account(name, prefix, state):
        return LabRow(f"user {name}", "user", "wrong", "exists but was not created by this lab")
    return LabRow(f"user {name}", "user", "ok", f"uid {account.pw_uid}, home {account.pw_dir}, shell {account.pw_shell}")


def _sudoers_row(prefix: str, user: str | None, perf: str | None) -> LabRow:
    path = _sudoers_path(prefix)
    if not path.exists():
        return LabRow(str(path), "sudoers", "missing")
    expected = _sudoers_text(prefix, user, perf) if user and perf else None
    try:
        good = path.read_text() == expected and stat.S_IMODE(path.stat().st_mode) == 0o440
    except OSError:
        good = False
    return LabRow(str(path), "sudoers", "ok" if good else "wrong",
                  f"{user} may run {perf} as root (NOPASSWD)" if good else "not the lab's rule, or not mode 0440")


__all__ = ["LabOptions", "LabRow", "LabStatus", "down", "status", "up"]
