"""What a run came to, as its status.json says it (rows/runstatus.py): from its pairs' outcomes
and the rows results.csv holds, at the start of a session, at its end, or when something stops it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import OrchestrateError
from ..rows import runstatus
from ..rows.runstatus import Counts, PairStatus, RunStatus
from . import remaining
from .interrupts import signal_name
from .pairs import PairOutcome


@dataclass(frozen=True)
class RunShape:
    """What the status is measured against: the run folder, its plan's cells and every pair of
    the run (not only those this session runs, with --pairs)."""

    run_dir: Path
    cell_ids: Sequence[str]
    pairs: Sequence[str]


def reason_of(exc: BaseException) -> str:
    """The error as the user is told it; a signal by its name; a bug by its type and first line."""
    if isinstance(exc, KeyboardInterrupt):
        return signal_name(exc)
    if isinstance(exc, OrchestrateError):
        return str(exc)
    first = (str(exc).splitlines() or [""])[0][:200]
    return f"unexpected error, a bug in orchestrate: {type(exc).__name__}" + (f": {first}" if first else "")


def _counts(shape: RunShape) -> tuple[Counts, dict[str, Counts]]:
    by_pair = runstatus.counts_by_pair(shape.run_dir)
    per = {name: Counts(len(shape.cell_ids), *(getattr(by_pair.get(name, Counts()), k) for k in runstatus.COUNTS))
           for name in shape.pairs}
    total = Counts(len(shape.cell_ids) * len(shape.pairs),
                   *(sum(getattr(c, k) for c in by_pair.values()) for k in runstatus.COUNTS))
    return total, per


def _complete(shape: RunShape, pairs: Sequence[str]) -> bool:
    return not remaining.cells_left(list(shape.cell_ids), pairs, remaining.finished(shape.run_dir))


def running(shape: RunShape) -> RunStatus:
    total, per = _counts(shape)
    several = len(shape.pairs) > 1
    return RunStatus("running", total, pairs={name: PairStatus("running", c) for name, c in per.items()} if several else {})


def ended(shape: RunShape, outcomes: Mapping[str, PairOutcome], stopped: BaseException | None = None) -> RunStatus:
    """The run's status once this session is over: `stopped` is what ended it early (an error or
    a signal), None when every pair it ran came to its end (a pair's own error is in its outcome)."""
    total, per = _counts(shape)
    pairs: dict[str, PairStatus] = {}
    for name in shape.pairs:
        outcome = outcomes.get(name)
        if outcome is not None and outcome.error is not None:
            pairs[name] = PairStatus("stopped", per[name], outcome.stage, reason_of(outcome.error))
        elif outcome is not None and outcome.stage != "done" and stopped is not None:
            # Cut off with the run (the one pair's error, a signal, a full disk, a bug).
            state = "interrupted" if isinstance(stopped, KeyboardInterrupt) else "stopped"
            pairs[name] = PairStatus(state, per[name], outcome.stage if state == "stopped" else None, reason_of(stopped))
        else:  # done now, done before (not contacted), or not in this session (--pairs)
            pairs[name] = PairStatus("finished" if _complete(shape, [name]) else "partial", per[name])
    cut = {name: p for name, p in pairs.items() if p.state in ("stopped", "interrupted")}
    several = pairs if len(shape.pairs) > 1 else {}
    if stopped is not None and isinstance(stopped, KeyboardInterrupt):
        return RunStatus("interrupted", total, None, reason_of(stopped), several)
    if stopped is not None or cut:
        stages = {p.stopped_at for p in cut.values() if p.stopped_at}
        # Stopped before any pair began (run.log, results.csv), or where the pairs stopped.
        stage = "setup" if not stages else stages.pop() if len(stages) == 1 else "pairs"
        reason = reason_of(stopped) if stopped is not None else \
            "\n".join(f"{name}: {p.reason}" if several else str(p.reason) for name, p in cut.items())
        return RunStatus("stopped", total, stage, reason, several)
    return RunStatus("finished" if _complete(shape, shape.pairs) else "partial", total, pairs=several)


def write(run_dir: Path, status: RunStatus, resume: Path | None = None) -> None:
    runstatus.write(run_dir, status, resume)
