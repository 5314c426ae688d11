"""Counters from `perf stat -x, -o FILE` output, with missing counters kept missing.

perf's CSV record (tools/perf/util/stat-display.c) is

    [prefix...,] value, unit, event, run_ns, pct_running[, metric_value, metric_unit[, ...]]

where the prefix depends on the aggregation and interval options: nothing by default or with
`-a`, `CPU0` with `-A`, `S0-D0-C0,1` with `--per-core`, a timestamp with `-I`, a thread name
with `--per-thread`. Rather than trusting a field count, each record is located by its shape:
the first field that is a value (a number or `<not ...>`) followed by a non-numeric unit, an
event name and a numeric run time.

Several records can name one counter: one per CPU (`-A`), per core, per interval (`-I`, each
a delta) and, on hybrid CPUs, one per core type (`cpu_core/cycles/`, `cpu_atom/cycles/`).
They are summed into one `Counter` under the event's plain name.

Names: the core PMU prefix is dropped (`cpu_core/cycles/` and `cpu/cycles/` are `cycles`) and
a modifier is kept as perf spells it (`cycles:u`, and `cpu_core/cycles/u` becomes
`cycles:u`), because user-only cycles are a different quantity from all cycles. Events of
other PMUs keep their full name (`msr/tsc/`). `column_name` turns a name into the results
column suffix: `cycles:u` -> `cycles_u`, `L1-dcache-load-misses` -> `l1_dcache_load_misses`.
Names are matched exactly, never by substring: `cycles` is not `stalled-cycles-frontend` or
`ref-cycles`, and the generic `cache-misses` stays `cache-misses`, never LLC.

User-space-only counts. When an account may not count the kernel (kernel.perf_event_paranoid
2, not root), perf falls back by itself (tools/perf/util/evsel.c, evsel__fallback): it sets
exclude_kernel and renames the event `cycles:u` (`cpu_core/cycles/u` on hybrids, where older
perf wrote `cpu_core/cycles/:u`). `resolve` maps such records back to the events that were
asked for and says what each count covers (`Reach`): `user` for counters restricted to user
space, whole counts for the clocks (`task-clock:u` is still all of the task's time: `:u`
restricts a clock's samples, not its count), and nothing for scheduler events, which fire in
the kernel and so always count 0 in user space.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Literal

from ..errors import OrchestrateError

Status = Literal["counted", "not_supported", "not_counted"]

NOT_SUPPORTED = "<not supported>"
NOT_COUNTED = "<not counted>"

_INTEGER = re.compile(r"^-?\d+\Z")
_DECIMAL = re.compile(r"^-?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?\Z")
# Core PMUs whose per-type records add up to one counter: x86 (`cpu`), Intel hybrid
# (`cpu_core`, `cpu_atom`, `cpu_lowpower`) and Arm big.LITTLE (`armv8_cortex_a53`, ...).
_CORE_PMU = re.compile(r"^(?:cpu|cpu_core|cpu_atom|cpu_lowpower|armv\d+_[a-z0-9_]+)\Z")
# Older perf appended a fallback's modifier to a PMU event as `cpu_core/cycles/:u`.
_PMU_EVENT = re.compile(r"^(?P<pmu>[A-Za-z0-9_.-]+)/(?P<event>[^/]+)/:?(?P<mods>[A-Za-z]*)\Z")
_MODIFIED_EVENT = re.compile(r"^(?P<base>[^:]+):(?P<mods>[A-Za-z]+)\Z")

# What a count covers: the kernel and user space, user space only, the kernel only, or nothing.
Reach = Literal["user+kernel", "user", "kernel", "nothing"]
USER_AND_KERNEL: Reach = "user+kernel"
USER_ONLY: Reach = "user"
KERNEL_ONLY: Reach = "kernel"
NOTHING: Reach = "nothing"
# Clocks: `:u` changes which samples they take, never their count (kernel/events/core.c).
CLOCK_EVENTS = frozenset({"task-clock", "cpu-clock"})
# Counted where the scheduler runs, in the kernel: restricted to user space they count 0.
KERNEL_CONTEXT_EVENTS = frozenset({"context-switches", "cs", "cpu-migrations", "migrations"})


class ParseError(OrchestrateError):
    """A perf stat output file that cannot be read as `perf stat -x,` CSV output."""


@dataclass(frozen=True)
class Counter:
    """One counter, summed over CPUs, intervals and core types.

    `value` is None whenever perf did not count it (never 0); `status` says why. `run_pct`
    is perf's running percentage (below 100: multiplexed, and perf has already scaled the
    value up); None when the counter was not counted.
    """

    name: str
    value: int | float | None
    unit: str
    run_pct: float | None
    status: Status


@dataclass(frozen=True)
class _Record:
    name: str
    value: int | Decimal | None
    unit: str
    run_ns: int | None
    pct: float | None
    status: Status


def column_name(event: str) -> str:
    """The results-schema suffix for an event: lower case, non-alphanumeric runs as `_`."""
    name = re.sub(r"[^a-z0-9]+", "_", event.lower()).strip("_")
    if not name:
        raise ParseError(f"perf event name {event!r} has no letters or digits")
    return name


def canonical_event(event: str) -> str:
    """The event's name without a core PMU prefix: `cpu_atom/cycles/u` -> `cycles:u`."""
    match = _PMU_EVENT.match(event)
    if not match or not _CORE_PMU.match(match["pmu"]):
        return event
    name, mods = match["event"], match["mods"]
    return f"{name}:{mods}" if mods else name


def split_modifiers(event: str) -> tuple[str, str]:
    """An event's name and its modifier letters: `cycles:u` -> (`cycles`, `u`),
    `cpu_core/cycles/u` -> (`cycles`, `u`), `msr/tsc/u` -> (`msr/tsc/`, `u`)."""
    name = canonical_event(event)
    pmu = _PMU_EVENT.match(name)
    if pmu:
        return f"{pmu['pmu']}/{pmu['event']}/", pmu["mods"]
    modified = _MODIFIED_EVENT.match(name)
    if modified:
        return modified["base"], modified["mods"]
    return name, ""


def is_user_only_fallback(requested: str, recorded: str) -> bool:
    """True when `recorded` is perf's user-space-only fallback for the event `requested`."""
    base, mods = split_modifiers(requested)
    recorded_base, recorded_mods = split_modifiers(recorded)
    return (recorded_base == base and "u" in recorded_mods and "u" not in mods
            and set(recorded_mods) - {"u"} == set(mods))


def reach_of(event: str) -> Reach:
    """What a count of `event`, as perf names it in its output, covers."""
    base, mods = split_modifiers(event)
    privilege = set(mods) & {"u", "k"}
    if privilege == {"u"}:
        if base in CLOCK_EVENTS:
            return USER_AND_KERNEL
        return NOTHING if base in KERNEL_CONTEXT_EVENTS else USER_ONLY
    if privilege == {"k"}:
        return KERNEL_ONLY
    return USER_AND_KERNEL


@dataclass(frozen=True)
class Resolved:
    """A requested event as perf counted it: the counter (named as requested), what the
    count covers, and whether perf narrowed it to user space on its own (a fallback)."""

    event: str
    counter: Counter | None
    reach: Reach
    restricted: bool

    @property
    def narrowed(self) -> bool:
        """perf's fallback cost this event its kernel part: a supported counter now counting
        user space only, or nothing. (A clock stays whole; an unsupported event lost nothing.)"""
        supported = self.counter is not None and self.counter.status != "not_supported"
        return self.restricted and supported and self.reach != USER_AND_KERNEL


def resolve(counters: Mapping[str, Counter], requested: Iterable[str]) -> dict[str, Resolved]:
    """Each requested event (canonical name) with its counter, found under its own name or
    under perf's user-only fallback name. A count that covers nothing (a scheduler event in
    user space, always 0) is kept as a missing counter, never as 0."""
    resolved: dict[str, Resolved] = {}
    for event in requested:
        name = canonical_event(event)
        recorded = counters.get(name)
        restricted = False
        if recorded is None:
            recorded = next((c for c in counters.values() if is_user_only_fallback(name, c.name)), None)
            restricted = recorded is not None
        if recorded is None or recorded.value is None:
            resolved[name] = Resolved(name, recorded and _renamed(recorded, name), NOTHING, restricted)
            continue
        # A kernel-only event (`:k`) with the kernel taken away counts nothing at all.
        reach = NOTHING if restricted and "k" in split_modifiers(name)[1] else reach_of(recorded.name)
        counter = _renamed(recorded, name)
        if reach == NOTHING:
            counter = Counter(name, None, recorded.unit, None, "not_counted")
        resolved[name] = Resolved(name, counter, reach, restricted)
    return resolved


def _renamed(counter: Counter, name: str) -> Counter:
    return Counter(name, counter.value, counter.unit, counter.run_pct, counter.status)


def counted_as_requested(
    counters: Mapping[str, Counter], requested: Iterable[str]
) -> tuple[dict[str, Counter], Reach | None]:
    """Counters in perf's order, each fallback record renamed to the event asked for, and
    what this perf run counted: `user` when perf's fallback to user space cost any requested
    event its kernel part, `user+kernel` when it counted something and cost nothing, None
    when it counted nothing."""
    resolved = resolve(counters, requested)
    fallbacks = {c.name: r for c in counters.values() for r in resolved.values()
                 if r.restricted and is_user_only_fallback(r.event, c.name)}
    out: dict[str, Counter] = {}
    for name, counter in counters.items():
        if name in fallbacks:
            r = fallbacks[name]
            if r.counter is not None:
                out[r.event] = r.counter
        else:
            # a requested event under its own name: as resolved (a 0 that means nothing, emptied)
            out[name] = (resolved[name].counter or counter) if name in resolved else counter
    if any(r.narrowed for r in resolved.values()):
        return out, USER_ONLY
    if any(c.value is not None for c in out.values()):
        return out, USER_AND_KERNEL
    return out, None


def _is_number(field: str) -> bool:
    return bool(_DECIMAL.match(field))


def _is_value(field: str) -> bool:
    return _is_number(field) or field in (NOT_SUPPORTED, NOT_COUNTED)


def _number(field: str) -> int | Decimal:
    # Counts stay ints: a float would print as 2.1e+09 downstream and lose digits past 2**53.
    # Decimals stay exact until summed, so per-CPU 101.87 + 101.92 msec is 203.79, not
    # 203.79000000000002.
    return int(field) if _INTEGER.match(field) else Decimal(field)


def _record_at(fields: list[str], i: int) -> _Record | None:
    """The record starting at field i, or None if the fields there do not have its shape."""
    if i + 2 >= len(fields):
        return None
    value, unit, event = fields[i], fields[i + 1], fields[i + 2]
    if not _is_value(value) or _is_value(unit) or not event or _is_value(event):
        return None
    run_field = fields[i + 3] if i + 3 < len(fields) else ""
    pct_field = fields[i + 4] if i + 4 < len(fields) else ""
    if run_field and not _INTEGER.match(run_field):
        return None
    if pct_field and not _is_number(pct_field):
        return None
    run_ns = int(run_field) if run_field else None
    pct = float(pct_field) if pct_field else None
    if value == NOT_SUPPORTED:
        return _Record(canonical_event(event), None, unit, run_ns, None, "not_supported")
    if value == NOT_COUNTED:
        return _Record(canonical_event(event), None, unit, run_ns, None, "not_counted")
    return _Record(canonical_event(event), _number(value), unit, run_ns, pct, "counted")


def _is_metric_line(fields: list[str]) -> bool:
    # A metric printed on a line of its own (stat-display.c new_line_csv): an optional
    # prefix, empty value/unit/event/run/pct fields, then the metric value and unit (and, in
    # newer perf, a threshold word).
    return any(fields[j : j + 4] == ["", "", "", ""] for j in range(len(fields) - 3))


def _combined_pct(parts: list[_Record]) -> float | None:
    """Running percentage of the summed counter: total time running over total enabled."""
    pcts = [p.pct for p in parts if p.pct is not None]
    if len(pcts) < len(parts):
        return None
    runs = [p.run_ns for p in parts if p.run_ns is not None and p.run_ns > 0]
    if len(runs) == len(parts) and all(pct > 0 for pct in pcts):
        # perf prints pct = 100 * running / enabled, so enabled = running * 100 / pct
        enabled = sum(run * 100.0 / pct for run, pct in zip(runs, pcts))
        return round(100.0 * sum(runs) / enabled, 2)
    return min(pcts)


def _merge(name: str, parts: list[_Record]) -> Counter:
    counted = [p for p in parts if p.status == "counted"]
    if counted:
        # A `<not counted>` part is a core type or interval where the task never ran: the
        # counted parts are the whole count.
        total = sum(p.value for p in counted)  # type: ignore[misc]
        value = total if isinstance(total, int) else float(total)
        return Counter(name, value, counted[0].unit, _combined_pct(counted), "counted")
    unit = parts[0].unit
    if any(p.status == "not_counted" for p in parts):
        return Counter(name, None, unit, None, "not_counted")
    return Counter(name, None, unit, None, "not_supported")


def parse_perf_csv(text: str, sep: str = ",") -> dict[str, Counter]:
    """Counters by event name (see the module docstring for names), in perf's order.

    Raises ParseError on a line that is neither a comment, blank, a metric line nor a record.
    """
    groups: dict[str, list[_Record]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in next(csv.reader([line], delimiter=sep))]
        record = next(
            (r for i in range(len(fields)) if (r := _record_at(fields, i)) is not None), None
        )
        if record is None:
            if _is_metric_line(fields):
                continue
            raise ParseError(
                f"line {number} is not a `perf stat -x{sep}` record: {line.strip()[:120]!r}"
            )
        groups.setdefault(record.name, []).append(record)
    return {name: _merge(name, parts) for name, parts in groups.items()}


def load_perf_file(path: str | Path) -> dict[str, Counter]:
    """Counters from a `perf stat -x, -o` file; ParseError if unreadable or without records."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ParseError(f"{path}: cannot read perf output: {exc.strerror or exc}") from exc
    try:
        counters = parse_perf_csv(text)
    except ParseError as exc:
        raise ParseError(f"{path}: {exc}") from exc
    if not counters:
        raise ParseError(f"{path}: no counters in perf output (did perf stat run?)")
    return counters
