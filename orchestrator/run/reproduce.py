"""`orchestrate reproduce RUN_DIR --inventory NEW.yml`: a finished run's own saved config and plan
(same seed, same order) run again on other hosts, into a new run folder that names the original
(rows/origin.py). The CLI then compares it with the original pair by pair (report/compare.py,
into the folders `comparisons` names), and again after a `run --resume` of it.

Everything that can be wrong with the input is found before a host is contacted: a folder that
is not a run, a run whose plan.json or results.csv this orchestrate cannot replay, a run another
orchestrate still works in, an inventory that lacks a pair the run used."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, FormatVersionError, OrchestrateError
from ..experiment.config import Experiment, experiment_from_resolved
from ..experiment.inventory import Inventory
from ..experiment.plan import Plan, expand, load_plan
from ..remote.deploy import source_hash
from ..roles import ROLES
from ..rows import layout, origin, results, runstatus
from ..version import __version__
from . import runner

# What makes a folder a run: every run orchestrate creates writes these three before anything else.
RUN_FILES = (layout.PLAN, layout.CONFIG, layout.INVENTORY)
MAX_FACTS_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Original:
    """The run to reproduce, as its folder saved it."""

    run_dir: Path
    experiment: Experiment
    plan: Plan
    inventory: Inventory  # the hosts it ran on (the pairs it used: a run's folder keeps only those)
    facts: dict[str, dict[str, dict[str, Any]]]  # pair -> role -> hosts/<role>.json ({} when unreadable)
    notes: tuple[str, ...] = ()  # what the user should know (a status that says running, unreadable facts)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def pairs(self) -> list[str]:
        return list(self.inventory.pairs)

    def fact(self, key: str) -> str | None:
        """One value of the run's host facts (orchestrate_version, agent_hash) when every host
        that recorded it agrees, else the values joined; None when none did."""
        seen = [str(f[key]) for roles in self.facts.values() for f in roles.values() if f.get(key) is not None]
        values = list(dict.fromkeys(seen))
        return None if not values else values[0] if len(values) == 1 else ", ".join(values)


def open_original(run_dir: Path) -> Original:
    """The run folder to reproduce, checked; a ConfigError (exit 2) names what is wrong with it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder")
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise ConfigError(f"{run_dir}: not a run folder: it has no {' and no '.join(missing)} "
                          f"(every run orchestrate writes has {', '.join(RUN_FILES)})")
    holder = runner.RunLock(run_dir).held_by()
    if holder is not None:
        raise ConfigError(f"{run_dir}: the run is still going ({holder} holds its lock); reproduce it once it "
                          "has ended")
    try:
        plan = load_plan(run_dir / layout.PLAN)
        results.check_format(run_dir / layout.RESULTS)
    except FormatVersionError as exc:
        raise ConfigError(f"{run_dir}: cannot be replayed: {exc}") from None
    except results.ResultsError as exc:
        raise ConfigError(f"{run_dir}: not a run that can be reproduced: {exc}") from None
    if not results.row_counts(run_dir / layout.RESULTS):
        raise ConfigError(f"{run_dir}: this run measured nothing, so there is nothing to compare a reproduction "
                          f"with; finish it first: orchestrate run --resume {run_dir}")
    try:
        config = run_dir / layout.CONFIG
        experiment = experiment_from_resolved(yaml.safe_load(config.read_text()), config)
        inventory = Inventory.model_validate(yaml.safe_load((run_dir / layout.INVENTORY).read_text()))
    except (ConfigError, OSError, ValueError, TypeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{run_dir}: not a run that can be reproduced: {str(exc)[:1000]}") from None
    notes = []
    try:
        said = runstatus.read(run_dir)
    except results.ResultsError as exc:
        said, notes = None, [str(exc)]
    if said is not None and said.state == "running":
        notes.append(f"its {layout.STATUS} says running, but no orchestrate holds its lock: it was killed or copied "
                     "mid-run; its plan is reproduced whole")
    facts = {pair: {role: _facts(layout.hosts_dir(run_dir, pair) / layout.host_facts(role), notes) for role in ROLES}
             for pair in inventory.pairs}
    if expand(experiment, plan.seed).cells != plan.cells:
        notes.append(f"today's orchestrate would expand its config into another plan; its own {layout.PLAN} is replayed")
    return Original(run_dir, experiment, plan, inventory, facts, tuple(notes))


def _facts(path: Path, notes: list[str]) -> dict[str, Any]:
    """A host's facts for the differences the dry run names; an unreadable file is a note."""
    try:
        if path.is_symlink() or not path.is_file():
            return {}
        with path.open("rb") as fh:
            data = json.loads(fh.read(MAX_FACTS_BYTES))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError) as exc:
        notes.append(f"{path}: cannot be read ({exc}); its facts are not compared")
        return {}


@dataclass(frozen=True)
class Reproduction:
    """What will run: the original, and for each of its pairs reproduced, the new inventory's
    pair that runs it (`pairs`, original -> new, in the original's order)."""

    original: Original
    inventory: Inventory  # the new hosts: only the pairs that reproduce one of the original's
    pairs: dict[str, str]
    agent_hash: str = field(default_factory=source_hash)
    version: str = __version__

    def host_changes(self) -> list[tuple[str, str, str, str]]:
        """(pair, role, original's hosts, new hosts), one per role of each pair reproduced."""
        rows = []
        for old, new in self.pairs.items():
            for role in ROLES:
                was, now = self.original.inventory.pair(old).role(role), self.inventory.pair(new).role(role)
                rows.append((old if old == new else f"{old} -> {new}", role, _host_text(was), _host_text(now)))
        return rows

    def origin(self) -> origin.Origin:
        return origin.Origin(self.original.run_id, str(self.original.run_dir.resolve()), dict(self.pairs),
                             self.original.fact("orchestrate_version"), _one_hash(self.original.fact("agent_hash")))


@dataclass(frozen=True)
class Comparing:
    """One comparison of a reproduced run with its original: an original pair, the new run's pair
    that reproduced it, compare's --pair for the two (A_NAME:B_NAME, which also picks the one pair
    of a run on one) and the folder it goes to, inside the new run."""

    old: str
    new: str
    pair: str
    out_dir: Path


def comparisons(found: origin.Origin, run_dir: Path) -> list[Comparing]:
    """What to compare once a reproduced run (or a --resume of one) has measured."""
    several = len(found.pairs) > 1
    return [Comparing(old, new, f"{old}:{new}", layout.reproduced_compare_dir(run_dir, old if several else None))
            for old, new in found.pairs.items()]


def _host_text(spec) -> str:
    return f"{spec.label}, data address {spec.data_address}"


def _one_hash(value: str | None) -> str | None:
    return value if value is not None and "," not in value else None


def plan(original: Original, inventory: Inventory, only: tuple[str, ...] | None = None,
         serial: bool = False, inventory_path: Path | str = "the inventory") -> Reproduction:
    """Which new pair reproduces which of the original's pairs: a run on one pair, on an inventory
    of one pair, whatever their names; else by name, every pair the run used (or those of `only`),
    and a pair the inventory lacks is a ConfigError naming it."""
    if only:
        unknown = [name for name in only if name not in original.pairs]
        if unknown:
            raise ConfigError(f"--pairs: run {original.run_id} has no pair named {', '.join(unknown)}; it ran on "
                              f"{', '.join(original.pairs)}")
    chosen = [name for name in original.pairs if not only or name in only]
    if len(chosen) == 1 and len(inventory.pairs) == 1:
        mapping = {chosen[0]: next(iter(inventory.pairs))}
    else:
        lacking = [name for name in chosen if name not in inventory.pairs]
        if lacking:
            raise ConfigError(
                f"{inventory_path}: lacks pair{'s' if len(lacking) > 1 else ''} {', '.join(lacking)}, which run "
                f"{original.run_id} used; it has "
                f"{', '.join(inventory.pairs)}. Name the new hosts of each pair as the run did (pairs:), or "
                f"reproduce some of its pairs with --pairs")
        mapping = {name: name for name in chosen}
    # The new run's pairs in the original's order: its report's baseline pair is then the original's.
    ordered = inventory.model_copy(update={"pairs": {new: inventory.pairs[new] for new in mapping.values()}})
    selected = runner.select_pairs(ordered, None, serial)
    reproduction = Reproduction(original, selected, mapping)
    try:
        origin.check(reproduction.origin())  # before the new folder exists: it will name the original
    except ValueError as exc:
        raise ConfigError(f"{original.run_dir}: cannot be named in the new run's {layout.ORIGIN}: {exc}") from None
    return reproduction


def start(reproduction: Reproduction, results_root: Path) -> runner.RunState:
    """The new run folder, holding the original's config and plan, the new inventory and
    reproduces.json; its lock is held, as create_run's is."""
    original = reproduction.original
    state = runner.create_run(original.experiment, reproduction.inventory, Path(results_root), plan=original.plan)
    try:
        origin.write(state.run_dir, reproduction.origin())
    except OrchestrateError:
        if state.lock is not None:
            state.lock.release()
        raise
    return state

