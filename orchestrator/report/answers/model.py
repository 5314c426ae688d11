"""An answer as data: the findings it rests on, each with its cells and numbers and the clause
it reads as, rendered to one sentence; the full detail (tables, notes) goes below it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..conditions import share_text
from ..formatting import num, size_text

NOT_ANSWERABLE = "Not answerable from this run"

Cell = tuple[int, int]  # (message size in bytes, threads)


@dataclass(frozen=True)
class Finding:
    """One claim of an answer. `kind` says what it claims (`better`, `worse`, `unresolved`,
    `link`, `bound`, `copied`, `enobufs`, `superlinear`, `change`, ...); `cells` which
    (size, threads) cells it covers; `numbers` its figures by name, each a (low, high) range
    (equal ends for one value); `text` the clause it reads as in the sentence."""

    kind: str
    text: str
    cells: tuple[Cell, ...] = ()
    numbers: dict[str, tuple[float, float]] = field(default_factory=dict)
    subject: str = ""  # the mode (or comparison) the finding is about, where the answer has several


@dataclass(frozen=True)
class Answer:
    question: str
    findings: tuple[Finding, ...]
    detail: tuple[str, ...] = ()
    # Set when the run cannot answer: the reason is the sentence.
    refusal: str = ""

    @property
    def sentence(self) -> str:
        if self.refusal:
            return self.refusal.rstrip(".") + "."
        clauses = [f.text for f in self.findings if f.text]
        if not clauses:
            return "Nothing to report."
        text = "; ".join(clauses)
        # A sentence that opens with a mode's name (one_copy) keeps its spelling.
        first = text.split(" ", 1)[0]
        head = text[0] if "_" in first else text[0].upper()
        return head + text[1:].rstrip(".") + "."

    def markdown(self) -> list[str]:
        """The question's section: heading, the sentence, then the detail."""
        lines = [f"### {self.question}", "", self.sentence, ""]
        if self.detail:
            lines += [*self.detail, ""]
        return lines


def refused(question: str, why: str, detail: tuple[str, ...] = ()) -> Answer:
    return Answer(question, (), detail, refusal=f"{NOT_ANSWERABLE}: {why}")


def cell_text(cell: Cell) -> str:
    return f"{size_text(cell[0])} × {cell[1]}t"


def cells_text(cells: tuple[Cell, ...] | list[Cell], most: int = 4) -> str:
    """The cells by name when few, else how many."""
    cells = sorted(cells)
    if len(cells) <= most:
        return ", ".join(cell_text(c) for c in cells)
    return f"{len(cells)} cells"


def span(values) -> tuple[float, float]:
    values = [float(v) for v in values]
    return (min(values), max(values))


def times(low: float, high: float) -> str:
    """A ratio or ratio range: ×1.4, ×0.20–×0.69."""
    if f"{low:.2g}" == f"{high:.2g}":
        return f"×{num(low, 2)}"
    return f"×{num(low, 2)}–×{num(high, 2)}"


def percents(low: float, high: float) -> str:
    a, b = share_text(low), share_text(high)
    return a if a == b else f"{a.rstrip('%')}–{b}"
