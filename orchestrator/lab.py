"""A two-host lab on one machine: two network namespaces, a data link, and an sshd in each.

The orchestrator reaches the namespaces over SSH exactly as it reaches real hosts, so a run in
the lab exercises the same code path as a run across two machines. Everything the lab makes
is named after its prefix and recorded in one state directory, so ``down`` can remove it all,
even after a half-finished ``up``.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import LabError

DEFAULT_PREFIX = "orch"
STATE_ROOT = Path("/run/orchestrate-lab")
WORKDIR_ROOT = Path("/tmp/orchestrate-lab")
DEFAULT_INVENTORY = "lab-inventory.yml"
ROLES = ("server", "client")

# The data link lives entirely inside the two namespaces, so every lab can use the same
# addresses; the inventory format promises these.
DATA_ADDRESSES = {
    "server": ipaddress.IPv4Interface("198.18.0.1/24"),
    "client": ipaddress.IPv4Interface("198.18.0.2/24"),
}
# Management links end in the root namespace, where two labs would collide, so each lab
# takes a pair of /30s from this range by index (index 0: 198.19.1.0/30 and 198.19.2.0/30).
MGMT_RANGE = ipaddress.IPv4Network("198.19.0.0/16")
MAX_MGMT_INDEX = 126
DATA_IF = "data0"
MGMT_IF = "mgmt0"
SSH_PORT = 22
IFNAMSIZ = 15  # the kernel's limit on interface names, without the NUL
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_INVENTORY_MARK = "# orchestrate lab inventory, prefix={prefix}; `orchestrate lab down` removes this file\n"

_TOOLS = {
    "ip": "iproute2",
    "tc": "iproute2",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
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

    def __post_init__(self) -> None:
        # Root-side management veths are named "<prefix>-ms" / "<prefix>-mc".
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

    @property
    def resolved_state_dir(self) -> Path:
        return Path(self.state_dir) if self.state_dir is not None else STATE_ROOT / self.prefix

    @property
    def resolved_inventory_path(self) -> Path:
        path = Path(self.inventory_path) if self.inventory_path is not None else Path(DEFAULT_INVENTORY)
        return path.absolute()


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
    """Names and addresses of one role's namespace."""

    role: str
    netns: str
    root_if: str
    mgmt_root: ipaddress.IPv4Interface
    mgmt_ns: ipaddress.IPv4Interface
    data: ipaddress.IPv4Interface
    dir: Path
    workdir: Path

    @property
    def sshd_config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def pidfile(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"


def _mgmt_networks(index: int) -> dict[str, ipaddress.IPv4Network]:
    base = int(MGMT_RANGE.network_address)
    return {
        role: ipaddress.IPv4Network((base + ((2 * index + 1 + i) << 8), 30))
        for i, role in enumerate(ROLES)
    }


def _hosts(opts: LabOptions, index: int) -> dict[str, _Host]:
    nets = _mgmt_networks(index)
    state_dir = opts.resolved_state_dir
    hosts = {}
    for role in ROLES:
        first, second = list(nets[role].hosts())
        hosts[role] = _Host(
            role=role,
            netns=f"{opts.prefix}-{role}",
            root_if=f"{opts.prefix}-m{role[0]}",
            mgmt_root=ipaddress.IPv4Interface(f"{first}/30"),
            mgmt_ns=ipaddress.IPv4Interface(f"{second}/30"),
            data=DATA_ADDRESSES[role],
            dir=state_dir / role,
            workdir=Path(opts.workdir_root) / opts.prefix / role,
        )
    return hosts


# ---------------------------------------------------------------- running tools


def _tool(name: str) -> str:
    path = shutil.which(name, path=_TOOL_PATH)
    if path is None:
        raise LabError(f"`{name}` was not found; install the Debian package {_TOOLS[name]}")
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


# ---------------------------------------------------------------- building


def _used_root_addresses(exclude: set[str]) -> set[ipaddress.IPv4Interface]:
    used: set[ipaddress.IPv4Interface] = set()
    for link in _ip_json("-4", "addr", "show"):
        if link.get("ifname") not in exclude:
            used |= _inet(link)
    return used


def _choose_index(opts: LabOptions, state: dict[str, Any] | None) -> int:
    own = {h.root_if for h in _hosts(opts, 0).values()}
    used = _used_root_addresses(own)

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


def _ensure_data_link(hosts: dict[str, _Host], mtu: int) -> None:
    s, c = hosts["server"], hosts["client"]
    ends = [_link(DATA_IF, s.netns), _link(DATA_IF, c.netns)]
    if None in ends:
        # A lone end means a half-built pair; rebuild the pair rather than guess.
        for host, end in zip((s, c), ends):
            if end is not None:
                _ip("link", "del", DATA_IF, netns=host.netns)
        _ip("link", "add", DATA_IF, "netns", s.netns, "type", "veth", "peer", "name", DATA_IF, "netns", c.netns)
    for host in (s, c):
        _ip("link", "set", DATA_IF, "mtu", str(mtu), netns=host.netns)
        _ensure_addr(DATA_IF, host.data, host.netns)
        _ip("link", "set", DATA_IF, "up", netns=host.netns)


def _ensure_mgmt_link(host: _Host) -> None:
    root_end, ns_end = _link(host.root_if), _link(MGMT_IF, host.netns)
    if root_end is None or ns_end is None:
        if root_end is not None:
            _ip("link", "del", host.root_if)
        if ns_end is not None:
            _ip("link", "del", MGMT_IF, netns=host.netns)
        _ip("link", "add", host.root_if, "type", "veth", "peer", "name", MGMT_IF, "netns", host.netns)
    _ensure_addr(host.root_if, host.mgmt_root, None)
    _ensure_addr(MGMT_IF, host.mgmt_ns, host.netns)
    _ip("link", "set", host.root_if, "up")
    _ip("link", "set", MGMT_IF, "up", netns=host.netns)


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
    for host in hosts.values():
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


def _sshd_text(host: _Host, authorized_keys: Path) -> str:
    return "\n".join(
        [
            f"# sshd for the orchestrate lab namespace {host.netns}; written by `orchestrate lab up`",
            f"ListenAddress {host.mgmt_ns.ip}:{SSH_PORT}",
            f"HostKey {host.host_key}",
            f"PidFile {host.pidfile}",
            f"AuthorizedKeysFile {authorized_keys}",
            "PermitRootLogin prohibit-password",
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
            "",
        ]
    )


def _netns_inode(netns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def _our_sshd(host: _Host) -> int | None:
    """The pid in the pid file if that process is alive and is the sshd running our config."""
    try:
        pid = int(host.pidfile.read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if comm == "sshd" and str(host.sshd_config).encode() in cmdline and _alive(pid) else None


def _sshd_pid(host: _Host) -> int | None:
    """Our sshd, if it runs in the namespace (a namespace deleted under it leaves it orphaned)."""
    pid = _our_sshd(host)
    try:
        inside = pid is not None and os.stat(f"/proc/{pid}/ns/net").st_ino == _netns_inode(host.netns)
    except OSError:
        inside = False
    return pid if inside else None


def _ssh_banner(address: str, timeout: float = 2.0) -> str | None:
    try:
        with socket.create_connection((address, SSH_PORT), timeout=timeout) as sock:
            sock.settimeout(timeout)
            line = sock.recv(256).split(b"\r\n", 1)[0]
    except OSError:
        return None
    return line.decode("ascii", "replace") if line.startswith(b"SSH-") else None


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


def _ensure_sshd(host: _Host, authorized_keys: Path) -> None:
    text = _sshd_text(host, authorized_keys)
    changed = not host.sshd_config.exists() or host.sshd_config.read_text() != text
    host.sshd_config.write_text(text)
    if _sshd_pid(host) is not None and not changed and _ssh_banner(str(host.mgmt_ns.ip)) is not None:
        return
    pid = _our_sshd(host)
    sshd = _tool("sshd")
    # Privilege separation needs this directory; systemd normally makes it for the system sshd.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    _run([sshd, "-t", "-f", str(host.sshd_config)])
    if pid is not None:
        _stop_pid(pid)
    host.pidfile.unlink(missing_ok=True)
    log = host.dir / "sshd.log"
    _ip("netns", "exec", host.netns, sshd, "-f", str(host.sshd_config), "-E", str(log))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _sshd_pid(host) is not None and _ssh_banner(str(host.mgmt_ns.ip), timeout=0.5) is not None:
            return
        time.sleep(0.05)
    tail = log.read_text()[-500:] if log.exists() else ""
    raise LabError(f"sshd in {host.netns} did not answer on {host.mgmt_ns.ip}:{SSH_PORT} within 10 s; log: {tail}")


def _inventory_text(opts: LabOptions, hosts: dict[str, _Host], key: Path, known_hosts: Path) -> str:
    doc = {
        role: {
            "host": str(h.mgmt_ns.ip),
            "user": "root",
            "port": SSH_PORT,
            "key": str(key),
            "known_hosts": str(known_hosts),
            "data_address": str(h.data.ip),
            "workdir": str(h.workdir),
        }
        for role, h in hosts.items()
    }
    return _INVENTORY_MARK.format(prefix=opts.prefix) + yaml.safe_dump(doc, sort_keys=False)


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


def _build(opts: LabOptions, state: dict[str, Any] | None) -> None:
    index = _choose_index(opts, state)
    hosts = _hosts(opts, index)
    state_dir = opts.resolved_state_dir
    inventory = opts.resolved_inventory_path
    recorded_inventory = state.get("inventory_path") if state else None
    _check_inventory_path(inventory, opts.prefix)  # before anything is built

    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Record first, so that down can find everything even if the build stops half-way.
    _write_state(
        opts,
        {
            "version": 1,
            "prefix": opts.prefix,
            "mgmt_index": index,
            # The link options are recorded as they were until the new ones have taken effect,
            # so a failed change shows up in status as a difference, not as success.
            "mtu": state["mtu"] if state else 1500,
            "delay_ms": state["delay_ms"] if state else None,
            "rate_mbit": state["rate_mbit"] if state else None,
            "inventory_path": str(inventory),
            "workdirs": [str(h.workdir) for h in hosts.values()],
            "previous_inventory_path": recorded_inventory if recorded_inventory != str(inventory) else None,
        },
    )
    if recorded_inventory and recorded_inventory != str(inventory):
        # The inventory moved; the old one would describe a lab that no longer matches it.
        if _is_our_inventory(Path(recorded_inventory), opts.prefix):
            Path(recorded_inventory).unlink()

    for host in hosts.values():
        host.dir.mkdir(mode=0o700, exist_ok=True)
        _ensure_netns(host)
        _ensure_mgmt_link(host)
    _ensure_data_link(hosts, opts.mtu)
    _ensure_shaping(hosts, opts)

    user_key = state_dir / "id_ed25519"
    _keygen(user_key, f"orchestrate-lab-{opts.prefix}")
    authorized_keys = state_dir / "authorized_keys"
    authorized_keys.write_text(f'from="{MGMT_RANGE}" {_public_key(user_key)}\n')
    known_hosts = state_dir / "known_hosts"
    lines = []
    for host in hosts.values():
        _keygen(host.host_key, f"orchestrate-lab-{host.netns}")
        lines.append(f"{host.mgmt_ns.ip} {_public_key(host.host_key)}\n")
    known_hosts.write_text("".join(lines))
    for host in hosts.values():
        _ensure_sshd(host, authorized_keys)
        host.workdir.mkdir(parents=True, exist_ok=True)

    _write_inventory(inventory, _inventory_text(opts, hosts, user_key, known_hosts), opts.prefix)
    state = _read_state(opts) or {}
    state.update(previous_inventory_path=None, mtu=opts.mtu, delay_ms=opts.delay_ms, rate_mbit=opts.rate_mbit)
    _write_state(opts, state)


# ---------------------------------------------------------------- public API


def up(opts: LabOptions) -> LabStatus:
    """Build the lab, or bring an existing one in line with ``opts``; safe to run again."""
    _preflight()
    with _locked(opts):
        state = _read_state(opts)
        try:
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
    hosts = _hosts(opts, int(state["mgmt_index"]) if state else 0)
    namespaces = _netns_names()

    for host in hosts.values():
        if host.netns not in namespaces:
            continue
        # Everything still running in the namespace: sshd, its sessions, agents left behind.
        pids = [int(p) for p in _ip("netns", "pids", host.netns, check=False).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            _stop_pid(pid)
            removed.append(f"process {pid} in {host.netns}")

    for host in hosts.values():
        # An sshd whose namespace was deleted under it is in no named namespace any more.
        orphan = _our_sshd(host)
        if orphan is not None:
            _stop_pid(orphan)
            removed.append(f"process {orphan} (sshd of {host.netns})")

    for host in hosts.values():
        root_link_existed = _link(host.root_if) is not None
        if host.netns in namespaces:
            _ip("netns", "del", host.netns)
            removed.append(f"namespace {host.netns}")
        # Deleting the namespace destroys the veth ends in it and so their peers, but only once
        # the kernel has let go of the namespace; delete the root end explicitly to be sure.
        if _link(host.root_if) is not None:
            _ip("link", "del", host.root_if, check=False)
        if root_link_existed:
            removed.append(f"link {host.root_if}")

    inventories = {opts.resolved_inventory_path}
    if state:
        inventories |= {Path(p) for p in (state.get("inventory_path"), state.get("previous_inventory_path")) if p}
    for path in sorted(inventories):
        if path.exists() and _is_our_inventory(path, opts.prefix):
            path.unlink()
            removed.append(f"file {path}")

    workdirs = {h.workdir for h in hosts.values()}
    if state:
        workdirs |= {Path(p) for p in state.get("workdirs", [])}
    for path in sorted(workdirs):
        if path.exists():
            shutil.rmtree(path)
            removed.append(f"directory {path}")
    state_dir = opts.resolved_state_dir
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
    state_dir = opts.resolved_state_dir
    inventory = Path(state["inventory_path"]) if state else opts.resolved_inventory_path
    rows = [LabRow(str(state_dir), "state", "ok" if state else "missing", "")]
    expect_mtu = int(state["mtu"]) if state else opts.mtu
    expect_qdisc = (
        _expected_qdisc(LabOptions(prefix=opts.prefix, delay_ms=state["delay_ms"], rate_mbit=state["rate_mbit"]))
        if state
        else _expected_qdisc(opts)
    )
    hosts = _hosts(opts, int(state["mgmt_index"]) if state else 0)
    namespaces = _netns_names()

    for host in hosts.values():
        present = host.netns in namespaces
        rows.append(LabRow(host.netns, "namespace", "ok" if present else "missing"))
        rows.append(_data_row(host, present, expect_mtu, expect_qdisc))
        rows.append(_mgmt_row(host, present))
        rows.append(_sshd_row(host))

    if inventory.exists():
        rows.append(LabRow(str(inventory), "inventory", "ok" if _is_our_inventory(inventory, opts.prefix) else "wrong",
                           "" if _is_our_inventory(inventory, opts.prefix) else "not written by this lab"))
    else:
        rows.append(LabRow(str(inventory), "inventory", "missing"))
    return LabStatus(prefix=opts.prefix, state_dir=state_dir, inventory_path=inventory, rows=rows)


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


def _mgmt_row(host: _Host, present: bool) -> LabRow:
    name = f"{host.root_if}<->{host.netns}/{MGMT_IF}"
    root_end = _link(host.root_if)
    ns_end = _link(MGMT_IF, host.netns) if present else None
    if root_end is None and ns_end is None:
        return LabRow(name, "mgmt link", "missing")
    problems = []
    if root_end is None or _inet(root_end) != {host.mgmt_root}:
        problems.append(f"root end should be {host.mgmt_root}")
    if ns_end is None or _inet(ns_end) != {host.mgmt_ns}:
        problems.append(f"namespace end should be {host.mgmt_ns}")
    if root_end is not None and ns_end is not None and not (
        "UP" in root_end.get("flags", []) and "UP" in ns_end.get("flags", [])
    ):
        problems.append("down")
    return LabRow(name, "mgmt link", "wrong" if problems else "ok",
                  "; ".join(problems) or f"{host.mgmt_root} <-> {host.mgmt_ns}")


def _sshd_row(host: _Host) -> LabRow:
    name = f"sshd {host.netns}"
    pid = _sshd_pid(host)
    if pid is None:
        return LabRow(name, "sshd", "missing")
    banner = _ssh_banner(str(host.mgmt_ns.ip))
    if banner is None:
        return LabRow(name, "sshd", "wrong", f"pid {pid} does not answer on {host.mgmt_ns.ip}:{SSH_PORT}")
    return LabRow(name, "sshd", "ok", f"pid {pid}, {host.mgmt_ns.ip}:{SSH_PORT} answers {banner}")


__all__ = ["LabOptions", "LabRow", "LabStatus", "down", "status", "up"]
