"""The inventory: which machine plays the server and which the client, and how to reach them."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from ..errors import ConfigError
from .dimensions import DEFAULT_PAIR
from ..roles import ROLES, Role
from .yamlfile import MAX_FILE_BYTES, load_yaml, read_small_file, validate

LOCAL = "local"

# Everything here ends up on a remote command line (quoted) or in an SSH config, so it is
# held to a conservative alphabet first.
HostName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:%-]{0,252}$")]
UserName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")]
# A workdir is absolute, or starts with `~/` for the SSH user's home on that host (resolved there).
Workdir = Annotated[str, Field(pattern=r"^(/|~/)[A-Za-z0-9_./-]{0,254}$")]  # pydantic: Rust regex, $ is the very end
# The default is private to the SSH user: never a fixed shared path another account could create first.
DEFAULT_WORKDIR = "~/.cache/orchestrate"
PerfAccess = Literal["direct", "sudo", "user-only"]


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("expected an IPv4 or IPv6 address on the data link, such as 198.18.0.1") from None


def _no_dot_dot(value: str) -> str:
    if ".." in value.split("/"):
        raise ValueError("a workdir may not contain '..'")
    if value.rstrip("/") in ("", "~"):
        raise ValueError("a workdir must be a folder of its own, not / or the home folder itself")
    return value


class SshTarget(BaseModel):
    """Where an SSH connection goes: a host, or the bastion in front of one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: HostName
    user: UserName | None = None
    port: Annotated[StrictInt, Field(ge=1, le=65535)] | None = None
    key: str | None = None
    # For a bastion, None means the same known_hosts file as the host behind it.
    known_hosts: str | None = None

    @property
    def label(self) -> str:
        target = f"{self.user}@{self.host}" if self.user else self.host
        return f"{target}:{self.port}" if self.port else target


class JumpSpec(SshTarget):
    """A bastion (SSH jump host) in front of a host: reached first, its host key checked like any other."""


class HostSpec(SshTarget):
    jump: JumpSpec | None = None
    data_address: Annotated[str, AfterValidator(_ip_address)] = "127.0.0.1"
    workdir: Annotated[Workdir, AfterValidator(_no_dot_dot)] = DEFAULT_WORKDIR
    # How perf gets its counters here: `direct` needs perf_event_paranoid low enough for kernel
    # counts; `sudo` runs perf, and only perf, through `sudo -n`; `user-only` accepts user-space
    # counts (`:u`), labelled as such in the results.
    perf_access: PerfAccess = "direct"

    @property
    def is_local(self) -> bool:
        return self.host == LOCAL

    @property
    def label(self) -> str:
        return LOCAL if self.is_local else super().label

    def public(self) -> dict[str, Any]:
        """What is saved with a run: where the key is, never what is in it."""
        return self.model_dump(exclude_none=True)


# A pair's name becomes a folder name and a CSV column, so it is held to a plain alphabet.
_PAIR_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")  # fullmatch: no trailing newline slips through
# Keys a pair may set for both its hosts; a host that sets one itself keeps its own.
PAIR_DEFAULTS = ("user", "port", "key", "known_hosts", "jump", "workdir", "perf_access")


def _pair_name(value: str) -> str:
    if not _PAIR_NAME_RE.fullmatch(value):
        raise ValueError("a pair name is 1..32 letters, digits, '_' and '-', starting with a letter or digit "
                         "(it names a folder and fills a column of results.csv)")
    return value


PairName = Annotated[str, AfterValidator(_pair_name)]


def _roles_do_not_collide(s: HostSpec, c: HostSpec) -> None:
    if s.host == c.host and s.port == c.port and s.workdir == c.workdir and not s.is_local:
        raise ValueError(
            f"server and client are the same host ({s.label}) with the same workdir; "
            "give each role its own workdir"
        )


class Pair(BaseModel):
    """One server and one client. The optional keys beside them are defaults both hosts inherit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: HostSpec
    client: HostSpec
    user: UserName | None = None
    port: Annotated[StrictInt, Field(ge=1, le=65535)] | None = None
    key: str | None = None
    known_hosts: str | None = None
    jump: JumpSpec | None = None
    workdir: Annotated[Workdir, AfterValidator(_no_dot_dot)] | None = None
    perf_access: PerfAccess | None = None

    @model_validator(mode="before")
    @classmethod
    def _hosts_inherit_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = {k: data[k] for k in PAIR_DEFAULTS if k in data and data[k] is not None}
        merged = dict(data)
        for role in ROLES:
            if defaults and isinstance(data.get(role), dict):
                merged[role] = {**defaults, **data[role]}
        return merged

    @model_validator(mode="after")
    def _check_roles(self) -> "Pair":
        _roles_do_not_collide(self.server, self.client)
        return self

    def role(self, name: Role) -> HostSpec:
        return self.server if name == "server" else self.client


class _OnePair(BaseModel):
    """The one-pair form of the file, validated as itself so that errors name `server.host`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ssh_config: str | None = None
    server: HostSpec
    client: HostSpec

    @model_validator(mode="after")
    def _check_roles(self) -> "_OnePair":
        _roles_do_not_collide(self.server, self.client)
        return self


def _endpoint(spec: HostSpec) -> str:
    return LOCAL if spec.is_local else f"{spec.host}:{spec.port or 22}"


def _known_by(spec: HostSpec, endpoint: Callable[[HostSpec], str]) -> tuple[str, str]:
    """What a host is known by, for the shared-host check: its SSH endpoint, and its data
    address. A loopback address (the default 127.0.0.1) is one machine's own: the same one on
    two machines is two addresses, so it counts only with its endpoint."""
    where = LOCAL if spec.is_local else endpoint(spec)
    address = f"data address {spec.data_address}"
    if ipaddress.ip_address(spec.data_address).is_loopback:
        address += f" on {where}"
    return f"host {where}", address


class Inventory(BaseModel):
    """Named pairs of hosts, in the file's order. The one-pair form means one pair, `default`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # An ssh_config file to read instead of ~/.ssh/config (Host aliases, ProxyJump, ProxyCommand).
    ssh_config: str | None = None
    # False: the pairs run one after another, so they may share hosts.
    concurrent: bool = True
    pairs: dict[PairName, Pair]

    @model_validator(mode="before")
    @classmethod
    def _one_pair_form(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not (set(ROLES) & data.keys()):
            return data
        if "pairs" in data:
            raise ValueError("give either server and client (one pair) or pairs:, not both")
        rest = {k: v for k, v in data.items() if k not in ROLES}
        pair = {role: data[role] for role in ROLES if role in data}
        return {**rest, "pairs": {DEFAULT_PAIR: pair}}

    @model_validator(mode="after")
    def _has_pairs(self) -> "Inventory":
        if not self.pairs:
            raise ValueError("pairs: give at least one pair, each with a server and a client")
        return self

    def pair(self, name: str) -> Pair:
        try:
            return self.pairs[name]
        except KeyError:
            raise ConfigError(f"no pair named {name!r}; the inventory has {', '.join(self.pairs)}") from None

    @property
    def only_pair(self) -> Pair:
        """The pair of a one-pair inventory; the commands that run one pair use this."""
        if len(self.pairs) != 1:
            raise ConfigError(f"the inventory has {len(self.pairs)} pairs ({', '.join(self.pairs)}); "
                              "this command runs one pair")
        return next(iter(self.pairs.values()))

    @property
    def server(self) -> HostSpec:
        return self.only_pair.server

    @property
    def client(self) -> HostSpec:
        return self.only_pair.client

    def role(self, name: Role) -> HostSpec:
        return self.only_pair.role(name)


def concurrent_pairs_share_nothing(inventory: Inventory, endpoint: Callable[[HostSpec], str] = _endpoint) -> None:
    """ConfigError when two of the inventory's pairs, run at the same time, would share a host (the
    same SSH endpoint) or a data address: their traffic would disturb each other's. Checked on
    the pairs that will run at once (after --pairs, and not with --serial or `concurrent: false`).
    `endpoint` says where a host's connection ends up: the runner gives one that resolves
    ssh_config aliases and bastions (sshconnect.endpoint); by default, host and port as written."""
    seen: dict[str, str] = {}  # what a host is known by -> the pair.role that uses it
    for name, pair in inventory.pairs.items():
        mine: dict[str, str] = {}
        for role in ROLES:
            for thing in _known_by(pair.role(role), endpoint):
                mine.setdefault(thing, f"{name}.{role}")
        for thing, where in mine.items():
            if thing in seen:
                raise ConfigError(
                    f"pairs {seen[thing].split('.')[0]} and {name} both use {thing} "
                    f"({seen[thing]} and {where}); pairs that run at the same time would disturb each "
                    "other's traffic: give each pair its own hosts, run the pairs one after another "
                    "(`concurrent: false` in the inventory, or --serial), or choose pairs with --pairs"
                )
        seen.update(mine)


def load_inventory(path: Path) -> Inventory:
    path = Path(path)
    data = load_yaml(path)
    if "pairs" not in data:
        # Validated in its own shape first, so that an error names `server.host`, not `pairs.default.server.host`.
        validate(_OnePair, data, path)
    inventory = validate(Inventory, data, path)
    assert isinstance(inventory, Inventory)
    inventory = inventory.model_copy(update={
        "ssh_config": _anchor(inventory.ssh_config, path),
        "pairs": {
            name: _anchor_paths(pair, path).model_copy(update={
                "server": _anchor_paths(pair.server, path),
                "client": _anchor_paths(pair.client, path),
            })
            for name, pair in inventory.pairs.items()
        },
    })
    _check_files(inventory, path, one_pair="pairs" not in data)
    return inventory


# A known_hosts file grows with every host its user has met; a key or an ssh_config does not.
FILE_LIMITS = {"key": MAX_FILE_BYTES, "known_hosts": 16 * MAX_FILE_BYTES, "ssh_config": MAX_FILE_BYTES}


def _check_files(inventory: Inventory, path: Path, one_pair: bool) -> None:
    """Every file the inventory names is a readable regular file of a sane size, now: a missing
    key or `key: /dev/zero` is a bad inventory (exit 2), not a failure halfway into connecting."""
    named: list[tuple[str, str | None]] = [("ssh_config", inventory.ssh_config)]
    for name, pair in inventory.pairs.items():
        # A one-pair file names its keys as written: server.key, not pairs.default.server.key.
        at = "" if one_pair else f"pairs.{name}."
        for role in ROLES:
            spec = pair.role(role)
            named += [(f"{at}{role}.key", spec.key), (f"{at}{role}.known_hosts", spec.known_hosts)]
            if spec.jump is not None:
                named += [(f"{at}{role}.jump.key", spec.jump.key), (f"{at}{role}.jump.known_hosts", spec.jump.known_hosts)]
    for where, value in named:
        if not value:
            continue
        kind = where.rsplit(".", 1)[-1]
        try:
            read_small_file(Path(value), kind.replace("_", " ") + " file", FILE_LIMITS[kind])
        except ConfigError as exc:
            raise ConfigError(f"{path}: {where}: {exc}") from None


def _anchor(value: str | None, inventory_path: Path) -> str | None:
    """A file named relative to the inventory is found beside it, wherever we run from."""
    if not value:
        return value
    resolved = Path(value).expanduser()
    if not resolved.is_absolute():
        resolved = inventory_path.parent.resolve() / resolved
    return str(resolved)


def _anchor_paths(spec: BaseModel, inventory_path: Path):
    update: dict[str, Any] = {name: _anchor(getattr(spec, name), inventory_path) for name in ("key", "known_hosts")}
    jump = getattr(spec, "jump", None)
    if jump is not None:
        update["jump"] = _anchor_paths(jump, inventory_path)
    return spec.model_copy(update=update)
