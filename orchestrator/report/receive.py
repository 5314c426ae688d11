"""The study's receive-side question: does receiving without a copy (receive: zerocopy,
TCP_ZEROCOPY_RECEIVE) pay, and from which message size? Answered from the receiver's CPU per
byte, the copy and zerocopy receives side by side at equal settings, with the mapped fraction
beside each figure: a cell that mapped little is labelled so (rows/zerocopy.py's receive rule)
and never counted as a zero-copy receive, and the answer says why it did not map.
"""

from __future__ import annotations

import pandas as pd

from ..experiment.dimensions import VARIANT_COLUMNS
from ..rows import zerocopy
from .formatting import md_table, num, size_text
from .runfolder import RunData

TITLE = "### Does receiving without a copy pay, and from which size?"
METRIC = "receiver_cpu_s_per_gb_mean"
# What must match for two cells to be compared: everything but the receive mode.
_SAME = ("pair", "mode", "threads", *(c for c in VARIANT_COLUMNS if c != "receive"))


def _pairs(stream: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    keys = [c for c in _SAME if c in stream.columns]
    return [(key if isinstance(key, tuple) else (key,), group)
            for key, group in stream.groupby(keys, sort=True, dropna=False)]


def _one_setting(group: pd.DataFrame) -> tuple[list[list[str]], list[tuple[int, str]], list[str]]:
    """The table rows of one setting (sender mode, threads, options), each size's state ("pays":
    mapped, and zerocopy's receiver CPU per GB wholly below copy's 95% interval; "within noise":
    mapped, intervals overlapping; "no": not mapped, or not less), and why cells did not map."""
    rows, wins, why = [], [], []
    for size, at in group.groupby("message_size", sort=True):
        copy, mapped = at[at["receive"] == "copy"], at[at["receive"] == "zerocopy"]
        if copy.empty or mapped.empty:
            continue
        c, z = copy.iloc[0], mapped.iloc[0]
        fraction = z.get("receive_mapped_fraction_min")
        verdict = zerocopy.mapping("zerocopy", fraction)
        ratio = z[METRIC] / c[METRIC] if c[METRIC] and not pd.isna(c[METRIC]) else float("nan")
        rows.append([size_text(size), num(c[METRIC]), num(z[METRIC]), num(ratio, 2),
                     "—" if pd.isna(fraction) else f"{float(fraction):.1%}", zerocopy.receive_label("zerocopy", fraction)])
        # Less receiver CPU only where zerocopy's 95% interval lies wholly below copy's: a win the
        # repetitions cannot tell from the copy is "within noise", never "pays" nor "does not pay".
        z_high, z_low = z[METRIC.replace("_mean", "_ci_high")], z[METRIC.replace("_mean", "_ci_low")]
        c_high, c_low = c[METRIC.replace("_mean", "_ci_high")], c[METRIC.replace("_mean", "_ci_low")]
        judged = not any(pd.isna(v) for v in (z_high, z_low, c_high, c_low))
        if not verdict.zero_copy:
            state = "no"
        elif judged and z_high < c_low:
            state = "pays"
        elif judged and z_low > c_high:
            state = "no"
        else:
            state = "within noise"
        wins.append((int(size), state))
        if verdict in (zerocopy.Mapping.NOT_MAPPED, zerocopy.Mapping.PARTLY_MAPPED):
            why.append(f"{size_text(size)}: {zerocopy.why_not_mapped(z.get('tcp_pmtu_min'), str(z['mode']))}")
    return rows, wins, why


def _outcome(states: list[tuple[int, str]]) -> str:
    """`pays from 64KiB`, `can't tell at any size: …`, `does not pay at any size`, or per state the sizes."""
    kinds = {state for _, state in states}
    if kinds == {"no"}:
        return "does not pay at any size"
    if kinds == {"within noise"}:
        return "can't tell at any size: every difference is within noise"
    first = next((i for i, (_, state) in enumerate(states) if all(s == "pays" for _, s in states[i:])), None)
    if first is not None:
        return f"pays from {size_text(states[first][0])}"
    words = {"pays": "pays at", "within noise": "can't tell at", "no": "does not pay at"}
    return ", ".join(f"{words[kind]} {', '.join(size_text(size) for size, state in states if state == kind)}"
                     for kind in ("pays", "within noise", "no") if kind in kinds)


def questions(summary: pd.DataFrame, run: RunData) -> list[list[str]]:
    """The question's lines as a list of one question, or none when the run never received with
    zerocopy (it did not ask). Answered from the whole run: the report's variant groups split
    the cells by receive mode, and the answer needs both modes side by side."""
    everything = run.summary if not run.results.empty else summary
    if everything.empty or "receive" not in everything or not everything["receive"].eq("zerocopy").any():
        return []
    return [question(everything)]


def sentence(summary: pd.DataFrame, run: RunData) -> tuple[str, str] | None:
    """The question and its one-sentence answer for "What this run shows", or None when the run
    never received with zerocopy: per setting, the size from which it pays, or that it does not."""
    asked = questions(summary, run)
    if not asked:
        return None
    everything = run.summary if not run.results.empty else summary
    stream = everything[everything["workload"] == "stream"]
    parts = []
    for key, group in _pairs(stream):
        rows, states, why = _one_setting(group)
        if not rows:
            continue
        keys = [c for c in _SAME if c in stream.columns]
        setting = ", ".join(f"{k}={v}" for k, v in zip(keys, key) if k in ("mode", "threads"))
        outcome = _outcome(states)
        if why:
            outcome += f" (not mapped at {len(why)} of {len(rows)} sizes)"
        parts.append(f"{setting}: {outcome}")
    question_text = TITLE.removeprefix("### ")
    if not parts:
        return question_text, ("Not answerable from this run: no message size has both a copy and a zerocopy "
                               "cell at equal settings.")
    return question_text, "; ".join(parts) + "."


def question(summary: pd.DataFrame) -> list[str]:
    from .answers import NOT_ANSWERABLE  # answers.py registers this question: imported when asked

    lines = [TITLE, ""]
    stream = summary[summary["workload"] == "stream"] if not summary.empty and "receive" in summary else summary.iloc[0:0]
    if stream.empty or not {"copy", "zerocopy"} <= set(stream["receive"]):
        return lines + [f"{NOT_ANSWERABLE}: it needs stream cells received both ways (receive: [copy, zerocopy]) "
                        "at equal settings.", ""]
    answered = False
    for key, group in _pairs(stream):
        rows, states, why = _one_setting(group)
        if not rows:
            continue
        answered = True
        keys = [c for c in _SAME if c in stream.columns]
        setting = ", ".join(f"{k}={v}" for k, v in zip(keys, key)
                            if k in ("mode", "threads") or stream[k].nunique(dropna=False) > 1)
        lines.append(f"- **{setting}** (receiver CPU-s per GB, mean of the ok repetitions; mapped: the worst repetition's fraction)")
        lines.append(f"  - Receiving without a copy {_outcome(states)}: it pays at a size where zerocopy mapped at least "
                     "99% of the bytes and its receiver CPU per byte's 95% interval lies wholly below copy's; where "
                     "the two intervals overlap, the repetitions cannot tell.")
        for reason in why:
            lines.append(f"  - Not a zero-copy receive at {reason}.")
        lines += ["", md_table(["size", "copy", "zerocopy", "zerocopy ÷ copy", "mapped", "zerocopy shown as"], rows), ""]
    if not answered:
        return lines + [f"{NOT_ANSWERABLE}: no message size has both a copy and a zerocopy cell at equal settings.", ""]
    return lines
