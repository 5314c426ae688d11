"""What a run tells its user as it goes: the Progress interface, and NoProgress, which tells no one.
The CLI's TerminalProgress implements it with a bar per pair."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..experiment.plan import Cell
    from .cell import CellOutcome


class Progress(Protocol):
    """The run's stages, then its cells as they start and finish; in a run on several pairs each
    pair reports through its own (for_pair), and a pair that fails says so there."""

    def stage(self, message: str) -> None: ...
    def start(self, total: int, done: int) -> None: ...
    def cell_started(self, cell: Cell) -> None: ...
    def cell_finished(self, outcome: CellOutcome) -> None: ...
    def pair_failed(self, error: str) -> None: ...
    def stop(self) -> None: ...

    def for_pair(self, name: str) -> Progress:
        """What one pair of a several-pair run reports through (one bar per pair)."""
        ...


class NoProgress:
    """Progress that tells no one: for a run with no user watching it (tests)."""

    def stage(self, message: str) -> None: ...
    def start(self, total: int, done: int) -> None: ...
    def cell_started(self, cell: Cell) -> None: ...
    def cell_finished(self, outcome: CellOutcome) -> None: ...
    def pair_failed(self, error: str) -> None: ...
    def stop(self) -> None: ...

    def for_pair(self, name: str) -> NoProgress:
        return self


@dataclass
class CellTally:
    """The finished cells by their row's status: a degraded cell was measured (its checks doubt
    it), so it is counted as degraded, never as failed."""

    ok: int = 0
    failed: int = 0
    degraded: int = 0

    def add(self, outcome: CellOutcome) -> str:
        """Count the cell; its status, as counted. An outcome not judged yet (no status) is
        failed if the run saw an error."""
        status = outcome.status or ("failed" if outcome.error else "ok")
        if status not in ("ok", "failed", "degraded"):
            status = "failed"
        setattr(self, status, getattr(self, status) + 1)
        return status
