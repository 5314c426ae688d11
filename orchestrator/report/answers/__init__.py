"""The study's answers, from one run's summary and rows: each question answered in one sentence
built from findings (model.py), with the detail below. Each module holds the rules that shape its
answers: modes.py (which copy mode beats another, from which size, and whether io_uring pays),
scaling.py (threads),
zerocopy.py (real or copied), caches.py (cache levels, contention). Where the run holds no data
for a question, the answer says so rather than guessing.
"""

from __future__ import annotations

import pandas as pd

from .. import receive
from ..runfolder import RunData
from ..variants import variants
from .caches import cache_level, threads_and_contention
from .context import Context
from .model import NOT_ANSWERABLE, Answer, Finding
from .modes import uring_pays, vs_two_copy, zero_vs_one
from .scaling import scaling
from .zerocopy import zero_copy_real

__all__ = ["NOT_ANSWERABLE", "Answer", "Finding", "answers", "questions_section", "summary_section"]


def answers(summary: pd.DataFrame, run: RunData) -> list[Answer]:
    """The six answers, in the study's order, for one group of cells (a variant, or the whole run),
    and a seventh where the run sent with io_uring."""
    ctx = Context.of(run, summary)
    found = [zero_vs_one(ctx), scaling(ctx), zero_copy_real(ctx), vs_two_copy(ctx), cache_level(ctx),
             threads_and_contention(ctx)]
    uring = uring_pays(ctx)
    return found + ([uring] if uring is not None else [])


def questions_section(summary: pd.DataFrame, run: RunData) -> str:
    if summary.empty:
        return f"## The study's questions\n\n{NOT_ANSWERABLE}: no cell succeeded.\n"
    lines = ["## The study's questions", ""]
    for answer in answers(summary, run):
        lines += answer.markdown()
    for question in receive.questions(summary, run):  # asked only by runs that receive with zerocopy
        lines += question
    return "\n".join(lines)


def summary_section(run: RunData, summary: pd.DataFrame) -> str:
    """The answer first: each question in one sentence, per combination of varied parameters."""
    lines = ["## What this run shows", ""]
    if summary.empty:
        return "\n".join(lines + [f"{NOT_ANSWERABLE}: no cell succeeded.", ""])
    for label, group in variants(summary):
        if label:
            lines += [f"**With {label}**", ""]
        for answer in answers(group, run):
            lines.append(f"- *{answer.question}* {answer.sentence}")
        lines.append("")
    received = receive.sentence(summary, run)
    if received:
        lines += [f"- *{received[0]}* {received[1]}", ""]
    return "\n".join(lines)
