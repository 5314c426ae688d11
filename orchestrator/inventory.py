"""The inventory: which machine plays the server and which the client, and how to reach them."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from .errors import ConfigError
from .roles import ROLES, Role
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


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # An ssh_config file to read instead of ~/.ssh/config (Host aliases, ProxyJump, ProxyCommand).
    ssh_config: str | None = None
    server: HostSpec
    client: HostSpec

    @model_validator(mode="after")
    def _roles_do_not_collide(self) -> "Inventory":
        s, c = self.server, self.client
        if s.host == c.host and s.port == c.port and s.workdir == c.workdir and not s.is_local:
            raise ValueError(
                f"server and client are the same host ({s.label}) with the same workdir; "
                "give each role its own workdir"
            )
        return self

    def role(self, name: Role) -> HostSpec:
        return self.server if name == "server" else self.client


def load_inventory(path: Path) -> Inventory:
    path = Path(path)
    inventory = validate(Inventory, load_yaml(path), path)
    assert isinstance(inventory, Inventory)
    inventory = inventory.model_copy(update={
        "ssh_config": _anchor(inventory.ssh_config, path),
        "server": _anchor_paths(inventory.server, path),
        "client": _anchor_paths(inventory.client, path),
    })
    _check_files(inventory, path)
    return inventory


# A known_hosts file grows with every host its user has met; a key or an ssh_config does not.
FILE_LIMITS = {"key": MAX_FILE_BYTES, "known_hosts": 16 * MAX_FILE_BYTES, "ssh_config": MAX_FILE_BYTES}


def _check_files(inventory: Inventory, path: Path) -> None:
    """Every file the inventory names is a readable regular file of a sane size, now: a missing
    key or `key: /dev/zero` is a bad inventory (exit 2), not a failure halfway into connecting."""
    named: list[tuple[str, str | None]] = [("ssh_config", inventory.ssh_config)]
    for role in ROLES:
        spec = inventory.role(role)  # type: ignore[arg-type]
        named += [(f"{role}.key", spec.key), (f"{role}.known_hosts", spec.known_hosts)]
        if spec.jump is not None:
            named += [(f"{role}.jump.key", spec.jump.key), (f"{role}.jump.known_hosts", spec.jump.known_hosts)]
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
