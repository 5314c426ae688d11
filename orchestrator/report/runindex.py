"""`orchestrate runs [DIR]`: the run folders under a results folder, one entry each (its id, date,
experiment, pairs and hosts, kernel, NIC and MTU, cells by status, the run it reproduces), and
the filters that find one ("the run on the old hardware").

Each folder is read on its own: a folder that is not a run is skipped and counted, and a file
that does not read in one run folder is named in that run's entry (its `problems`), never
hiding the others. Cells are counted from status.json (rows/runstatus.py) when it is there, so
listing many runs does not parse every results.csv; a run without one has its results.csv read."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OrchestrateError
from ..experiment.yamlfile import load_yaml
from ..roles import ROLES
from ..rows import layout, origin, results, runstatus
from ..rows.layout import DEFAULT_PAIR

MAX_FACTS_BYTES = 4 * 1024 * 1024
_STAMP = re.compile(r"(\d{8}T\d{6}Z)-")


@dataclass
class RunEntry:
    run_id: str
    path: Path
    date: dt.datetime | None = None  # when the run was created (its id's stamp), UTC
    name: str | None = None  # the experiment's name
    state: str | None = None  # status.json's state (finished, stopped, ...); None: no status.json. `runs` turns
    # "running" into "ended mid-run" when no orchestrate holds the run's lock (cli.commands._still_running)
    pairs: list[str] = field(default_factory=list)
    hosts: dict[str, dict[str, str]] = field(default_factory=dict)  # pair -> role -> "user@host:port"
    kernels: list[str] = field(default_factory=list)  # every host's kernel release, once each
    nics: list[str] = field(default_factory=list)  # "driver speed", once each
    mtus: list[int] = field(default_factory=list)
    facts_hosts: list[str] = field(default_factory=list)  # the hosts' own names (host facts' hostname)
    cells: dict[str, int] = field(default_factory=dict)  # ok, failed, degraded
    reproduces: str | None = None  # the original's run id
    reproduces_path: str | None = None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "path": str(self.path),
                "date": self.date.strftime("%Y-%m-%dT%H:%M:%SZ") if self.date else None,
                "name": self.name, "state": self.state, "pairs": self.pairs, "hosts": self.hosts,
                "kernels": self.kernels, "nics": self.nics, "mtus": self.mtus, "hostnames": self.facts_hosts,
                "cells": self.cells, "reproduces": self.reproduces, "reproduces_path": self.reproduces_path,
                "problems": self.problems}

    def host_words(self) -> list[str]:
        """What --host matches: each host's SSH target, data address and own name."""
        return [*(h for roles in self.hosts.values() for h in roles.values()), *self.facts_hosts]


@dataclass
class RunIndex:
    folder: Path
    runs: list[RunEntry]
    skipped: list[str]  # folders that are not runs (and symlinks, which are never followed)

    def to_json(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "runs": [r.to_json() for r in self.runs], "skipped": self.skipped}


def is_run(folder: Path) -> bool:
    """A run folder: its config.yml, and its plan.json (which a run writes first) or results.csv
    (a run from before plan.json)."""
    return (folder / layout.CONFIG).is_file() and ((folder / layout.PLAN).is_file() or (folder / layout.RESULTS).is_file())


def index(folder: Path) -> RunIndex:
    """Every run folder directly under `folder`, oldest first; a missing folder is a ConfigError."""
    from ..errors import ConfigError

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder of runs")
    runs, skipped = [], []
    try:
        children = sorted(folder.iterdir())
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot list it: {exc.strerror or exc}") from None
    for child in children:
        if not child.is_dir() and not child.is_symlink():
            continue  # a file beside the runs (a README, an inventory): not a folder to explain
        if child.is_symlink() or not is_run(child):
            skipped.append(child.name)
            continue
        runs.append(read_entry(child))
    runs.sort(key=lambda r: (r.date or dt.datetime.min.replace(tzinfo=dt.timezone.utc), r.run_id))
    return RunIndex(folder, runs, skipped)


def read_entry(run_dir: Path) -> RunEntry:
    entry = RunEntry(run_dir.name, run_dir)
    entry.date = _date(run_dir)
    config = _yaml(run_dir / layout.CONFIG, entry)
    if isinstance(config.get("name"), str):
        entry.name = config["name"]
    inventory = _yaml(run_dir / layout.INVENTORY, entry)
    entry.pairs, entry.hosts = _hosts(inventory)
    for pair in layout.pairs_in(run_dir) or entry.pairs or [DEFAULT_PAIR]:
        if pair not in entry.pairs:
            entry.pairs.append(pair)
    for pair in entry.pairs:
        for role in ROLES:
            _add_facts(entry, layout.hosts_dir(run_dir, pair) / layout.host_facts(role))
    _counts(run_dir, entry)
    try:
        found = origin.read(run_dir)
    except results.ResultsError as exc:
        entry.problems.append(str(exc))
        found = None
    if found is not None:
        entry.reproduces, entry.reproduces_path = found.run_id, found.path
    return entry


def _date(run_dir: Path) -> dt.datetime | None:
    match = _STAMP.match(run_dir.name)
    if match:
        try:
            return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            pass
    try:  # a renamed folder: when its plan was written
        return dt.datetime.fromtimestamp((run_dir / layout.PLAN).stat().st_mtime, dt.timezone.utc)
    except OSError:
        return None


def _yaml(path: Path, entry: RunEntry) -> dict[str, Any]:
    try:
        return load_yaml(path)
    except OrchestrateError as exc:
        entry.problems.append(str(exc))
        return {}


def _hosts(inventory: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The pairs of a saved inventory (the one-pair form is `default`) and each host as
    `user@host:port`, with its data address."""
    pairs = inventory.get("pairs") if isinstance(inventory.get("pairs"), dict) else \
        ({DEFAULT_PAIR: inventory} if any(role in inventory for role in ROLES) else {})
    hosts: dict[str, dict[str, str]] = {}
    for name, pair in pairs.items():
        if not isinstance(pair, dict):
            continue
        hosts[str(name)] = {role: _host_text(pair.get(role)) for role in ROLES if isinstance(pair.get(role), dict)}
    return list(hosts), hosts


def _host_text(spec: dict[str, Any]) -> str:
    host = str(spec.get("host", "?"))
    if host == "local":
        return f"local, data {spec.get('data_address', '127.0.0.1')}"
    user = f"{spec['user']}@" if spec.get("user") else ""
    port = f":{spec['port']}" if spec.get("port") not in (None, 22) else ""
    return f"{user}{host}{port}, data {spec.get('data_address', '?')}"


def _add_facts(entry: RunEntry, path: Path) -> None:
    if not path.exists():
        return
    try:
        if path.is_symlink() or not path.is_file():
            raise ValueError("not a regular file")
        with path.open("rb") as fh:
            facts = json.loads(fh.read(MAX_FACTS_BYTES))
        if not isinstance(facts, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        entry.problems.append(f"{path}: cannot be read: {exc}")
        return
    kernel = str(facts.get("kernel") or "").split()
    release = kernel[1] if len(kernel) > 1 and kernel[0] == "Linux" else " ".join(kernel[:1])
    _once(entry.kernels, release)
    if isinstance(facts.get("hostname"), str):
        _once(entry.facts_hosts, facts["hostname"])
    nic = facts.get("nic") if isinstance(facts.get("nic"), dict) else {}
    words = [str(w) for w in (nic.get("interface"), nic.get("driver") or nic.get("kind"), _speed(nic), _shaped(nic)) if w]
    _once(entry.nics, " ".join(dict.fromkeys(words)))
    if isinstance(nic.get("mtu"), int) and nic["mtu"] not in entry.mtus:
        entry.mtus.append(nic["mtu"])


def _speed(nic: dict[str, Any]) -> str | None:
    match = re.fullmatch(r"(\d+)\s*Mb/s", str(nic.get("speed") or ""))
    if not match:
        return None
    mbps = int(match.group(1))
    return f"{mbps / 1000:g}G" if mbps >= 1000 else f"{mbps}M"


def _shaped(nic: dict[str, Any]) -> str | None:
    """`tbf 1G` for a data link a root qdisc limits (host facts nic.qdisc, nic.qdisc_rate_mbit), else None."""
    rate = nic.get("qdisc_rate_mbit")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0:
        return None
    return f"{nic.get('qdisc') or 'qdisc'} {rate / 1000:g}G" if rate >= 1000 else f"{nic.get('qdisc') or 'qdisc'} {rate:g}M"


def _once(values: list[str], value: str) -> None:
    if value and value not in values:
        values.append(value)


def _counts(run_dir: Path, entry: RunEntry) -> None:
    try:
        said = runstatus.read(run_dir)
    except results.ResultsError as exc:
        entry.problems.append(str(exc))
        said = None
    if said is not None:
        entry.state = said.state
        entry.cells = {k: getattr(said.counts, k) for k in runstatus.COUNTS}
        return
    try:
        counts = results.row_counts(run_dir / layout.RESULTS)
    except OrchestrateError as exc:
        entry.problems.append(str(exc).splitlines()[0])
        return
    entry.cells = {k: counts.get(k, 0) for k in runstatus.COUNTS}


# ---------------------------------------------------------------- filters


@dataclass(frozen=True)
class Filters:
    name: str | None = None  # the experiment's name holds this (case-insensitive)
    host: str | None = None  # a host's SSH target, data address or own name holds this
    kernel: str | None = None  # a host's kernel release holds this
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    reproduces: str | None = None  # runs that reproduce a run whose id holds this ("" : any)

    def keep(self, entry: RunEntry) -> bool:
        def holds(needle: str | None, hay: list[str]) -> bool:
            return needle is None or any(needle.lower() in h.lower() for h in hay)

        if not holds(self.name, [entry.name or ""]) or not holds(self.host, entry.host_words()):
            return False
        if self.kernel is not None and not any(_release_holds(self.kernel, k) for k in entry.kernels):
            return False
        if (self.since or self.until) and entry.date is None:
            return False
        if self.since and entry.date < self.since:  # type: ignore[operator]
            return False
        if self.until and entry.date > self.until:  # type: ignore[operator]
            return False
        if self.reproduces is not None and (entry.reproduces is None or self.reproduces not in entry.reproduces):
            return False
        return True


def _release_holds(needle: str, release: str) -> bool:
    """--kernel 6.1 is 6.1.x, never 6.18: a number in it is matched whole."""
    pattern = ("(?<!\\d)" if needle[:1].isdigit() else "") + re.escape(needle) + ("(?!\\d)" if needle[-1:].isdigit() else "")
    return re.search(pattern, release, re.IGNORECASE) is not None


def parse_when(text: str, end: bool = False) -> dt.datetime:
    """--since/--until: a date (2026-12-06: from its start, or until its end) or a UTC time
    (2026-12-06T05:30, or a run id's stamp 20261206T053000Z); ValueError otherwise."""
    text = text.strip()
    for form in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y%m%dT%H%M%SZ"):
        try:
            when = dt.datetime.strptime(text, form).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
        if form == "%Y-%m-%d" and end:
            when += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
        return when
    raise ValueError(f"expected a date such as 2026-12-06 or a UTC time such as 2026-12-06T05:30, not {text!r}")
