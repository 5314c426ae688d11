"""Running a run's pairs (issue 13): the one pair in the caller's thread, several each in a thread
of its own or one after another, a pair that fails reported apart from the others, and a pair
whose every cell is done on --resume not contacted at all.

What one pair does (its hosts, preflight, deploy, cells) is the runner's; here is only how the
pairs run beside each other and what their outcomes make of the run."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from . import cells, interrupts
from .errors import DiskError, OrchestrateError, PreflightError

log = logging.getLogger(__name__)


@dataclass
class PairOutcome:
    """What one pair did: its cells, or the error that stopped it (preflight, a lost host)."""

    pair: str
    finished: list[cells.CellOutcome] = field(default_factory=list)
    skipped: int = 0
    planned: int = 0
    error: OrchestrateError | None = None

    @property
    def failed(self) -> list[cells.CellOutcome]:
        return [o for o in self.finished if o.error]

    @property
    def status(self) -> str:
        """failed (the pair stopped), cells_failed (some of its cells failed), or ok."""
        return "failed" if self.error else ("cells_failed" if self.failed else "ok")


class PairProgress(Protocol):
    """What a pair's failure is told to (the run's Progress, for one pair)."""

    def pair_failed(self, error: str) -> None: ...


class RunProgress(Protocol):
    def for_pair(self, name: str) -> PairProgress: ...


# Runs one pair's cells with the progress given; raises what stops it.
RunPair = Callable[[str, PairProgress], PairOutcome]


def run_pairs(names: Sequence[str], run_pair: RunPair, progress: RunProgress, cell_ids: Sequence[str],
              done: set[tuple[str, str]], serial: bool) -> dict[str, PairOutcome]:
    """Every pair's outcome, in `names`' order. One pair runs in this thread, and whatever stops
    it stops the run, as before pairs existed. Several run each in a thread of its own (one
    after another with `serial`): a pair that fails is reported and the others go on."""
    if len(names) == 1:
        return {names[0]: run_pair(names[0], progress)}  # type: ignore[arg-type]
    # On --resume, a pair with every cell done is not contacted: its hosts may be gone by now.
    total = len(cell_ids)
    finished = {n: PairOutcome(n, skipped=total, planned=total) for n in names
                if all((n, c) in done for c in cell_ids)}
    todo = [n for n in names if n not in finished]
    if serial:
        outcomes = {name: _pair_or_error(name, run_pair, progress.for_pair(name), total) for name in todo}
    else:
        outcomes = _pairs_in_threads(todo, run_pair, progress, total) if todo else {}
    outcomes = {n: outcomes.get(n) or finished[n] for n in names}
    _raise_if_every_pair_failed(outcomes)
    return outcomes


def _pair_or_error(name: str, run_pair: RunPair, progress: PairProgress, planned: int) -> PairOutcome:
    """One pair of several: what stops it (preflight, a lost host) is its outcome, not the run's.
    A full local disk stops every pair alike, so it goes up."""
    try:
        return run_pair(name, progress)
    except DiskError:
        raise
    except OrchestrateError as exc:
        log.warning("pair %s failed: %s", name, exc)
        progress.pair_failed(str(exc))
        return PairOutcome(name, planned=planned, error=exc)


def _pairs_in_threads(names: list[str], run_pair: RunPair, progress: RunProgress, planned: int) -> dict[str, PairOutcome]:
    """A thread per pair over the same Fabric host layer. Signals land in the main thread: on
    one, every pair's thread gets the same interrupt, so each ends its agents as a one-pair run
    does, and the main thread waits for all of them before it goes on unwinding."""
    outcomes: dict[str, PairOutcome] = {}
    raised: dict[str, BaseException] = {}
    idents: dict[str, int] = {}
    # Waited on instead of Thread.join: a signal that interrupts join() can leave a thread that
    # still runs marked as ended (CPython 3.11's bpo-45274 clean-up), and its agents unkilled.
    ended = {name: threading.Event() for name in names}

    def work(name: str) -> None:
        idents[name] = threading.get_ident()
        try:
            outcomes[name] = _pair_or_error(name, run_pair, progress.for_pair(name), planned)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there
            log.info("pair %s stopped: %r", name, exc, exc_info=isinstance(exc, interrupts.PairStopped))
            raised[name] = exc
        finally:
            ended[name].set()

    for name in names:
        threading.Thread(target=work, args=(name,), name=f"pair-{name}", daemon=True).start()
    try:
        for name in names:
            while not ended[name].wait(0.2):  # short waits: the main thread stays free to take a signal
                pass
    except KeyboardInterrupt:
        for name in names:  # a thread just started has its id in a moment
            while name not in idents and not ended[name].wait(0.01):
                pass
        running = {name: idents[name] for name in names if not ended[name].is_set()}
        log.info("stopping the pairs still running: %s", ", ".join(running) or "none")
        interrupts.interrupt_threads(list(running.values()))
        for name in names:
            ended[name].wait()
        raise
    for name in names:  # a full disk or a bug in any pair: the run's error, once all have ended
        exc = raised.get(name)
        if exc is not None and not isinstance(exc, interrupts.PairStopped):
            raise exc
    return {name: outcomes[name] for name in names}


def _raise_if_every_pair_failed(outcomes: dict[str, PairOutcome]) -> None:
    failed = [p for p in outcomes.values() if p.error]
    if failed and len(failed) == len(outcomes):
        raise PreflightError("every pair failed:\n" + "\n".join(f"  {p.pair}: {p.error}" for p in failed))
