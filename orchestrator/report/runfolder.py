"""A run folder as the report and `compare` read it: its rows, config, inventory and host
facts, and what those say about the run (the link it ran over, where perf counted user
space only). A missing fact is noted, not fatal; a torn or foreign file is a ResultsError.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from ..rows import layout, runstatus
from ..experiment.dimensions import DEFAULT_PAIR
from ..errors import ConfigError, OrchestrateError
from ..roles import ROLES
from ..rows.results import ANALYSIS_COLUMNS, ResultsError, read_results
from ..experiment.yamlfile import load_yaml
from .stats import summarize


@dataclass
class RunData:
    """One run folder, read: results.csv's rows, config.yml, inventory.yml and hosts/<role>.json;
    `notes` names the files that were missing."""

    path: Path
    run_id: str
    results: pd.DataFrame
    config: dict[str, Any]
    inventory: dict[str, Any]
    hosts: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    # The host pairs the run ran on, in the inventory's order, and each one's host facts
    # (layout.hosts_dir). A run on one pair has ["default"], and `hosts` is that pair's facts.
    pairs: list[str] = field(default_factory=lambda: [DEFAULT_PAIR])
    pair_hosts: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # Where `pairs` comes from, for the report to say: "the inventory's order" or "alphabetical order".
    pair_order: str = "the inventory's order"

    @cached_property
    def summary(self) -> pd.DataFrame:
        """Every cell over its repetitions (stats.summarize of `results`, iperf3's cells included),
        worked out once for each read of the run: the report's sections all start from it."""
        return summarize(self.results)


def _read_json(path: Path, notes: list[str], where: str = "") -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        notes.append(f"{where}{path.parent.name}/{path.name} is missing")
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON: {exc}") from None
    except OSError as exc:  # a folder in its place, an I/O error: a file there that does not read
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object of host facts")
    return data


def _read_yaml(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.exists():
        notes.append(f"{path.name} is missing")
        return {}
    try:
        return load_yaml(path)
    except OrchestrateError as exc:
        raise ResultsError(str(exc)) from None


def load_run(run_dir: Path) -> RunData:
    """A run folder's results, config, inventory and host facts; missing facts are noted, not fatal."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder")  # a bad argument (exit 2), not a bad run
    results = _rows_or_why_none(run_dir)
    notes: list[str] = []
    config = _read_yaml(run_dir / layout.CONFIG, notes)
    inventory = _read_yaml(run_dir / layout.INVENTORY, notes)
    pairs, order = _pairs(run_dir, results, inventory)
    pair_hosts = {}
    for pair in pairs:
        where = "" if pair == DEFAULT_PAIR else f"pairs/{pair}/"
        pair_hosts[pair] = {role: _read_json(layout.hosts_dir(run_dir, pair) / layout.host_facts(role), notes, where)
                            for role in ROLES}
    hosts = pair_hosts[pairs[0]]
    run_ids = results["run_id"].dropna().unique() if "run_id" in results.columns else []
    run_id = str(run_ids[0]) if len(run_ids) else run_dir.name
    return RunData(run_dir, run_id, results, config, inventory, hosts, notes, pairs, pair_hosts, order)


def _rows_or_why_none(run_dir: Path) -> pd.DataFrame:
    """results.csv's rows; a run that measured nothing is said to be one, with what its
    status.json says stopped it: a folder with nothing to report (exit 2), not a broken one.
    Only a run without rows consults status.json, checked as the untrusted file it is: rows are
    reported whatever it says."""
    path = run_dir / layout.RESULTS
    results = read_results(path, ANALYSIS_COLUMNS) if path.is_file() and path.stat().st_size else None
    if results is not None and not results.empty:
        return results
    said = runstatus.read(run_dir)
    if said is not None and not said.measured:
        then = f"\nto measure it: orchestrate run --resume {run_dir}" if said.state in ("stopped", "interrupted") else ""
        raise ConfigError(f"{run_dir}: this run measured nothing, so there is nothing to report: {said.why_nothing()}{then}")
    # No status to explain it (a run from before status.json): read_results says what is missing.
    if results is None:
        return read_results(path, ANALYSIS_COLUMNS)
    raise ResultsError(f"{path}: holds no rows, only its header: nothing to report")


def _pairs(run_dir: Path, results: pd.DataFrame, inventory: dict[str, Any]) -> tuple[list[str], str]:
    """The pairs whose rows results.csv holds, in the inventory's order (its `pairs:` keys) when it
    names them all, else "default" first and the others alphabetically (layout.pairs_in's order)."""
    found = {str(p) for p in results["pair"].dropna().unique()} if "pair" in results.columns else set()
    if not found:
        found = set(layout.pairs_in(run_dir)) or {DEFAULT_PAIR}
    named = inventory.get("pairs") if isinstance(inventory.get("pairs"), dict) else {}
    if found <= set(map(str, named)):
        return [str(p) for p in named if str(p) in found], "the inventory's order"
    return sorted(found, key=lambda p: (p != DEFAULT_PAIR, p)), "alphabetical order"


def pair_view(run: RunData, pair: str) -> RunData:
    """One pair of a run as a run of its own: its rows, its host facts and its inventory entry, so
    every one-pair section of the report (setup, caveats, tables, answers) reads it unchanged."""
    if pair not in run.pairs:
        raise ConfigError(f"no pair named {pair!r} in this run; it has {', '.join(run.pairs)}")
    named = run.inventory.get("pairs") if isinstance(run.inventory.get("pairs"), dict) else {}
    inventory = named.get(pair) if isinstance(named.get(pair), dict) else run.inventory
    results = run.results[run.results["pair"].astype(str) == pair].reset_index(drop=True)
    return replace(run, results=results, inventory=inventory, hosts=run.pair_hosts.get(pair, {}),
                   pairs=[pair], pair_hosts={pair: run.pair_hosts.get(pair, {})})


@dataclass(frozen=True)
class UserSpaceOnly:
    """Where perf counted user space only (results.csv `<role>_perf_counts` = `user`): by role,
    and by the stream side (sender, receiver) those roles played."""

    roles: tuple[str, ...] = ()
    sides: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.roles)

    @property
    def where(self) -> str:
        return " and ".join(self.roles)

    @property
    def caveat(self) -> str:
        return (f"perf counted user space only on the {self.where} (perf_access: user-only): kernel time, "
                "where the copies happen, is not in the cycle and cache-miss counts")


def user_space_only(results: pd.DataFrame) -> UserSpaceOnly:
    ok = results[results["status"].astype(str) == "ok"] if "status" in results else results
    roles = tuple(r for r in ROLES
                  if f"{r}_perf_counts" in ok and ok[f"{r}_perf_counts"].astype(str).eq("user").any())
    sides = set()
    stream = ok[ok["workload"].astype(str) == "stream"] if "workload" in ok else ok.iloc[0:0]
    sender = (stream["sender"].astype(str) == "client").map({True: "client", False: "server"}) if "sender" in stream \
        else pd.Series("server", index=stream.index)
    for role in roles:
        user = stream[f"{role}_perf_counts"].astype(str) == "user"
        if (user & (sender == role)).any():
            sides.add("sender")
        if (user & (sender != role)).any():
            sides.add("receiver")
    return UserSpaceOnly(roles, frozenset(sides))


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested facts or config as one level of dotted keys (`nic.speed`), for tables and diffs."""
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, list):
        return {prefix: ", ".join(str(v) for v in data)}
    # Tabs (as in sysctl tcp_rmem) would break a table cell's alignment.
    return {prefix: "—" if data is None else str(data).replace("\t", " ")}


_ETHTOOL_SPEED = re.compile(r"^(\d+)\s*Mb/s\Z")


def nic_facts(run: RunData, role: str) -> dict[str, Any]:
    """The NIC facts recorded for a role (hosts/<role>.json `nic`); empty if none."""
    nic = run.hosts.get(role, {}).get("nic")
    return nic if isinstance(nic, dict) else {}


def is_local_link(run: RunData) -> bool:
    """Loopback or veth: the data never leaves the kernel, so MSG_ZEROCOPY is always copied."""
    for role in ROLES:
        nic = nic_facts(run, role)
        if nic.get("interface") == "lo" or nic.get("name") == "lo" or nic.get("kind") == "veth":
            return True
        address = (run.inventory.get(role) or {}).get("data_address") or run.hosts.get(role, {}).get("data_address")
        try:
            if address and ipaddress.ip_address(address).is_loopback:
                return True
        except ValueError:
            pass
    return False


def _speed_gbps(nic: dict[str, Any]) -> float:
    # facts.py records ethtool's "25000Mb/s"; "Unknown!" and absent mean not reported.
    if isinstance(nic.get("speed_mbps"), (int, float)):
        return nic["speed_mbps"] / 1000
    match = _ETHTOOL_SPEED.match(str(nic.get("speed") or ""))
    return int(match.group(1)) / 1000 if match else math.nan


def link_speed_gbps(run: RunData) -> float:
    speeds = [_speed_gbps(nic_facts(run, role)) for role in ROLES]
    speeds = [s for s in speeds if not math.isnan(s) and s > 0]
    return min(speeds) if speeds else math.nan
