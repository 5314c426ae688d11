"""Running a run's pairs: the one pair in the caller's thread, several each in a thread
of its own or one after another, a pair that fails reported apart from the others, and a pair
whose every cell is done on --resume not contacted at all.

What one pair does (its hosts, preflight, deploy, cells) is the runner's; here is only how the
pairs run beside each other, how they are stopped, and what their outcomes make of the run."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from . import interrupts, remaining
from .cell import CellOutcome
from ..errors import DiskError, OrchestrateError, PairsFailed
from .progress import Progress

log = logging.getLogger(__name__)

# The pair the code running now works for; run.log tags each line with it (PairTag). A pool
# thread a pair starts knows it only when submitted with contextvars.copy_context().run.
_PAIR: contextvars.ContextVar[str | None] = contextvars.ContextVar("pair", default=None)


class PairTag(logging.Filter):
    """Adds `pair` to every record: the pair it was logged for, or `-` for the run's own lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.pair = _PAIR.get() or "-"
        return True


@contextlib.contextmanager
def _working_for(name: str) -> Iterator[None]:
    token = _PAIR.set(name)
    try:
        yield
    finally:
        _PAIR.reset(token)


@dataclass
class PairOutcome:
    """What one pair did: its cells, or the error that stopped it (preflight, a lost host)."""

    pair: str
    finished: list[CellOutcome] = field(default_factory=list)
    skipped: int = 0
    planned: int = 0
    error: OrchestrateError | None = None
    # Where the pair is (runstatus.STAGES: connect, preflight, ... cells), or "done": where it
    # stopped, when it did.
    stage: str = "setup"

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.finished if o.error]

    @property
    def status(self) -> str:
        """failed (the pair stopped), cells_failed (some of its cells failed), or ok."""
        return "failed" if self.error else ("cells_failed" if self.failed else "ok")


# Runs one pair's cells into the outcome given (the caller's, so the cells a pair finished are
# kept when it stops), reporting through the progress given; raises what stops it.
RunPair = Callable[[PairOutcome, Progress], None]


def run_pairs(names: Sequence[str], run_pair: RunPair, progress: Progress, cell_ids: Sequence[str],
              done: set[tuple[str, str]], serial: bool, stop_within: float) -> dict[str, PairOutcome]:
    """Every pair's outcome, in `names`' order. One pair runs in this thread, and whatever stops
    it stops the run, as before pairs existed. Several run each in a thread of its own (one
    after another with `serial`): a pair that fails is reported and the others go on; a full
    disk, a bug or a signal stops them all, each given `stop_within` seconds to end its agents."""
    total = len(cell_ids)
    if len(names) == 1:
        with _working_for(names[0]):
            only = PairOutcome(names[0], planned=total)
            run_pair(only, progress)
            return {names[0]: only}
    # On --resume, a pair with every cell done is not contacted: its hosts may be gone by now.
    finished = {n: PairOutcome(n, skipped=total, planned=total) for n in names
                if not remaining.cells_left(cell_ids, [n], done)}
    todo = [n for n in names if n not in finished]
    if serial:
        outcomes = {name: _pair_or_error(name, run_pair, progress.for_pair(name), total) for name in todo}
    else:
        outcomes = _pairs_in_threads(todo, run_pair, progress, total, stop_within) if todo else {}
    outcomes = {n: outcomes.get(n) or finished[n] for n in names}
    failed = [p for p in outcomes.values() if p.error]
    if failed and len(failed) == len(outcomes):
        raise every_pair_failed(failed)
    return outcomes


def _pair_or_error(name: str, run_pair: RunPair, progress: Progress, planned: int) -> PairOutcome:
    """One pair of several: what stops it (preflight, a lost host, its hosts' ssh_config entry)
    is its outcome, not the run's, beside the cells it finished before. A full local disk stops
    every pair alike, so it goes up."""
    outcome = PairOutcome(name, planned=planned)
    with _working_for(name):
        try:
            run_pair(outcome, progress)
        except DiskError:
            raise
        except OrchestrateError as exc:
            log.warning("pair %s failed: %s", name, exc)
            progress.pair_failed(str(exc))
            outcome.error = exc
        return outcome


def _pairs_in_threads(names: list[str], run_pair: RunPair, progress: Progress, planned: int,
                      stop_within: float) -> dict[str, PairOutcome]:
    """A thread per pair over the same Fabric host layer. Signals land in the main thread: on
    one, every pair's thread gets the same interrupt, so each ends its agents as a one-pair run
    does, and the main thread waits for them (at most `stop_within` seconds) before it goes on
    unwinding. A full disk or a bug in one pair stops the others the same way."""
    outcomes: dict[str, PairOutcome] = {}
    raised: dict[str, BaseException] = {}
    idents: dict[str, int] = {}
    # Waited on instead of Thread.join: a signal that interrupts join() can leave a thread that
    # still runs marked as ended (CPython 3.11's bpo-45274 clean-up), and its agents unkilled.
    ended = {name: threading.Event() for name in names}
    any_stopped = threading.Event()  # a pair raised what stops the run

    def work(name: str) -> None:
        idents[name] = threading.get_ident()
        try:
            outcomes[name] = _pair_or_error(name, run_pair, progress.for_pair(name), planned)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there
            with _working_for(name):
                # One line for a pair stopped (a signal) or a typed error (a full disk); a bug's traceback.
                log.info("pair %s stopped: %r", name, exc,
                         exc_info=not isinstance(exc, (interrupts.PairStopped, OrchestrateError)))
            raised[name] = exc
            if not isinstance(exc, interrupts.PairStopped):
                any_stopped.set()
        finally:
            ended[name].set()

    for name in names:
        threading.Thread(target=work, args=(name,), name=f"pair-{name}", daemon=True).start()
    try:
        # Short waits: the main thread stays free to take a signal.
        while not all(e.is_set() for e in ended.values()) and not any_stopped.wait(0.2):
            pass
    except KeyboardInterrupt:
        _stop(names, idents, ended, stop_within)
        raise
    fatal = next((raised[n] for n in names if n in raised and not isinstance(raised[n], interrupts.PairStopped)), None)
    if fatal is not None:  # a full disk or a bug in one pair: the run's error, once the others have stopped
        _stop(names, idents, ended, stop_within)
        raise fatal
    return {name: outcomes[name] for name in names}


def _stop(names: list[str], idents: dict[str, int], ended: dict[str, threading.Event], within: float) -> None:
    """Interrupt every pair still running and wait up to `within` seconds for them to end (a pair
    stuck in a call that never returns must not hang the run). A second signal in the meantime
    goes up at once."""
    deadline = time.monotonic() + within
    for name in names:  # a thread just started has its id in a moment
        while name not in idents and not ended[name].wait(0.01) and time.monotonic() < deadline:
            pass
    running = {name: idents[name] for name in names if name in idents and not ended[name].is_set()}
    log.info("stopping the pairs still running: %s", ", ".join(running) or "none")
    interrupts.interrupt_threads(list(running.values()))
    for name in names:
        while not ended[name].wait(0.2) and time.monotonic() < deadline:
            pass
    stuck = [name for name in names if not ended[name].is_set()]
    if stuck:
        log.warning("pairs %s did not end within %.0f s of being stopped; their agents may still run until "
                    "their lifetime limit (orchestrate run --resume ends them)", ", ".join(stuck), within)


def every_pair_failed(failed: Sequence[PairOutcome]) -> PairsFailed:
    return PairsFailed("every pair failed:\n" + "\n".join(f"  {p.pair}: {p.error}" for p in failed),
                       [p.error for p in failed if p.error is not None], every=True)


def listed(pair: str, error: object) -> str:
    """A pair's error in a list of them: its own further lines indented under it."""
    return f"  {pair}: " + str(error).replace("\n", "\n    ")
