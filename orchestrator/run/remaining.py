"""Which of the plan's cells are still to run: the one place the run, its pairs and a dry run work
it out, from the rows results.csv already has."""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..rows import layout

if TYPE_CHECKING:
    from ..experiment.plan import Cell

# The plan's cells, or only their ids.
CellOrId = TypeVar("CellOrId", "Cell", str)


def finished(run_dir: Path) -> set[tuple[str, str]]:
    """(pair, cell_id) of every row of the run's results.csv: cells that are not run again. A
    failed or degraded row counts too; --retry-failed takes those rows out of results.csv first."""
    # Imported here: pairs.py imports this module, and `check` imports pairs.py without pandas.
    from ..rows import results

    return results.finished_cells(run_dir / layout.RESULTS)


def cells_left(cells: Sequence[CellOrId], pairs: Iterable[str], done: Set[tuple[str, str]]) -> list[CellOrId]:
    """Of `cells`, in their order, those that one or more of `pairs` has no row of in `done`
    (finished()): still to run. For one pair, the cells it runs (none: on --resume, a pair of
    several is then not contacted); for several, a cell is still to run while any of them lacks its row."""
    names = list(pairs)
    return [c for c in cells if any((name, _cell_id(c)) not in done for name in names)]


def _cell_id(cell: Cell | str) -> str:
    return cell if isinstance(cell, str) else cell.cell_id
