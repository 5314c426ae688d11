"""The study's answers, from one run's summary: from which message size each copy mode beats
another (`crossover`), how throughput scales with threads, whether zero-copy was real, and
which cache level's misses fall. Where the run holds no data for a question (no rr cells,
no hardware counters, one thread count), the answer says so rather than guessing.
"""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd

from . import derive, receive
from ..rows import zerocopy
from .formatting import NOT_COUNTED, is_counted, md_table, num, size_text, sizes_text
from .runfolder import RunData, UserSpaceOnly, is_local_link, link_speed_gbps, user_space_only
from .variants import variants
from ..rows.zerocopy import Copying

NOT_ANSWERABLE = "Not answerable from this run"


def _clear(row_a: pd.Series, row_b: pd.Series, metric: str) -> bool:
    """The two 95% intervals do not overlap: the difference is not noise."""
    la, ha = row_a[f"{metric}_ci_low"], row_a[f"{metric}_ci_high"]
    lb, hb = row_b[f"{metric}_ci_low"], row_b[f"{metric}_ci_high"]
    return ha < lb or hb < la


def _outcome(row_a: pd.Series, row_b: pd.Series, metric: str, higher: bool) -> str:
    """`win`, `loss` or `tie` (95% intervals overlap) of A against B."""
    a, b = row_a[f"{metric}_mean"], row_b[f"{metric}_mean"]
    has_ci = not any(pd.isna(r[f"{metric}_ci_low"]) for r in (row_a, row_b))
    if a == b or (has_ci and not _clear(row_a, row_b, metric)):
        return "tie"
    # Without intervals (one repetition) the means decide; the answer says so.
    return "win" if (a > b) == higher else "loss"


def crossover(summary: pd.DataFrame, better: str, worse: str, metric: str) -> dict[int, str]:
    """Per thread count, in words: the smallest message size from which `better` beats
    `worse` beyond the 95% intervals, with no clear loss at any larger size measured.

    Sizes where the intervals overlap count as ties: two modes that both fill the link are
    equal, and noise must not move the answer.
    """
    higher = derive.METRICS[metric].higher_is_better
    stream = summary[summary["workload"] == "stream"]
    answers: dict[int, str] = {}
    for threads in sorted(stream["threads"].unique()):
        here = stream[stream["threads"] == threads]
        a = here[here["mode"] == better].set_index("message_size")
        b = here[here["mode"] == worse].set_index("message_size")
        sizes = sorted(s for s in set(a.index) & set(b.index)
                       if not pd.isna(a.at[s, f"{metric}_mean"]) and not pd.isna(b.at[s, f"{metric}_mean"]))
        if not sizes:
            continue
        outcome = {s: _outcome(a.loc[s], b.loc[s], metric, higher) for s in sizes}
        wins = [s for s in sizes if outcome[s] == "win"]
        losses = [s for s in sizes if outcome[s] == "loss"]
        start = next((w for w in wins if not any(l > w for l in losses)), None)
        if not wins:
            text = f"never, up to {size_text(sizes[-1])}"
            ties = [s for s in sizes if outcome[s] == "tie"]
            if ties:
                text += f" (within noise at {sizes_text(ties)})"
        elif start is None:
            text = f"not consistently: wins at {sizes_text(wins)}, loses at {sizes_text(losses)}"
        else:
            text = "at every size measured" if start == sizes[0] else f"from {size_text(start)}"
            ties = [s for s in sizes if s > start and outcome[s] == "tie"]
            if ties:
                text += f", except within noise at {sizes_text(ties)}"
        if any(pd.isna(r[f"{metric}_ci_low"]) for frame in (a, b) for _, r in frame.loc[sizes].iterrows()):
            text += " (some cells have one repetition: compared by mean alone)"
        answers[int(threads)] = text
    return answers


def _crossover_lines(summary: pd.DataFrame, better: str, worse: str, metric: str) -> list[str]:
    answers = crossover(summary, better, worse, metric)
    if not answers:
        return [f"- {derive.METRICS[metric].label}: {NOT_ANSWERABLE} (no stream cells with both modes measured)."]
    per = "; ".join(f"{t} thread{'s' if t != 1 else ''}: {text}" for t, text in answers.items())
    return [f"- {derive.METRICS[metric].label}: {per}."]


def _cpu_metric(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> str:
    # User-space cycles miss the copies' kernel time: CPU time (user + system) stands in then.
    return "cycles_per_byte" if is_counted(summary, "cycles_per_byte") and not user.sides else "cpu_ns_per_byte"


def _cpu_metric_note(summary: pd.DataFrame, metric: str, user: UserSpaceOnly) -> list[str]:
    if metric != "cpu_ns_per_byte":
        return []
    if is_counted(summary, "cycles_per_byte") and user.sides:
        return [f"  (cycles were counted in user space only: {user.caveat}, so CPU time per byte, "
                "user + system from rusage, stands in.)"]
    return [f"  (cycles {NOT_COUNTED} on these hosts, so CPU time per byte stands in.)"]


def _copied_caveat(summary: pd.DataFrame, mode: str = "zero_copy") -> list[str]:
    cells = summary[summary["mode"] == mode]
    if mode == "zero_copy" and len(cells) and cells["copied"].any():
        return [f"- Caveat: {int(cells['copied'].sum())} of {len(cells)} zero_copy cells were copied by the kernel; "
                "there, \"zero_copy\" compares MSG_ZEROCOPY's bookkeeping plus a copy, not zero-copy."]
    return []


def _modes(summary: pd.DataFrame) -> set[str]:
    return set(summary.loc[summary["workload"] == "stream", "mode"]) if not summary.empty else set()


def _q_zero_vs_one(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> list[str]:
    lines = ["### From which message size does zero_copy beat one_copy?", ""]
    if not {"zero_copy", "one_copy"} <= _modes(summary):
        return lines + [f"{NOT_ANSWERABLE}: it needs stream cells of both zero_copy and one_copy.", ""]
    metric = _cpu_metric(summary, user)
    lines += _crossover_lines(summary, "zero_copy", "one_copy", metric)
    lines += _cpu_metric_note(summary, metric, user)
    lines += _crossover_lines(summary, "zero_copy", "one_copy", "throughput_gbps")
    return lines + _copied_caveat(summary) + [""]


def _thread_span(stream: pd.DataFrame) -> tuple[int, int] | str:
    """The fewest and most threads measured, or why thread questions can't be answered."""
    threads = sorted(stream["threads"].unique())
    if len(threads) < 2:
        return f"{NOT_ANSWERABLE}: it has {len(threads)} thread count(s)."
    return threads[0], threads[-1]


def _thread_question(title: str, summary: pd.DataFrame) -> tuple[list[str], pd.DataFrame, tuple[int, int] | str]:
    """A thread question's heading, its stream cells, and the thread counts it compares (or why
    it cannot be answered)."""
    stream = summary[summary["workload"] == "stream"]
    return [f"### {title}", ""], stream, _thread_span(stream)


def _q_thread_scaling(summary: pd.DataFrame, run: RunData) -> list[str]:
    lines, stream, span = _thread_question("How does throughput scale with threads?", summary)
    if isinstance(span, str):
        return lines + [span, ""]
    low, high = span
    rows, efficiencies = [], []
    pairs = stream.groupby(["mode", "message_size"])
    for (mode, size), group in sorted(pairs, key=lambda item: (derive.mode_rank(item[0][0]), item[0][1])):
        g = group.set_index("threads")
        if low not in g.index or high not in g.index:
            continue
        base, top = g.at[low, "throughput_gbps_mean"], g.at[high, "throughput_gbps_mean"]
        if pd.isna(base) or pd.isna(top) or base <= 0:
            continue
        speedup = top / base
        efficiency = speedup / (high / low)
        efficiencies.append(efficiency)
        rows.append([g["mode_label"].iloc[0], size_text(size), num(base), num(top), f"×{num(speedup)}", f"{efficiency:.0%}"])
    if not rows:
        return lines + [f"{NOT_ANSWERABLE}: no cell has throughput at both {low} and {high} threads.", ""]
    lines.append(md_table(["mode", "size", f"Gbit/s at {low}t", f"Gbit/s at {high}t", "speed-up", "of linear"], rows))
    median = float(pd.Series(efficiencies).median())
    lines += ["", f"- From {low} to {high} threads, the median cell reaches {median:.0%} of linear scaling."]
    speed = link_speed_gbps(run)
    peak = stream["throughput_gbps_mean"].max()
    if not math.isnan(speed) and peak >= 0.9 * speed:
        lines.append(f"- The best cells reach {num(peak)} Gbit/s of a {num(speed)} Gbit/s link: "
                     "past that point more threads cannot help, and scaling flattens at the link.")
    return lines + [""]


def _q_zero_copy_real(summary: pd.DataFrame, run: RunData) -> list[str]:
    lines = ["### Was the zero-copy real, or copied?", ""]
    cells = summary[summary["mode"] == "zero_copy"] if not summary.empty else summary
    if cells.empty:
        return lines + [f"{NOT_ANSWERABLE}: it has no zero_copy cells.", ""]
    fractions = cells["zerocopy_copied_fraction_max"]
    if fractions.isna().all():
        return lines + [f"{NOT_ANSWERABLE}: no zero_copy completions were counted, so whether the kernel copied "
                        "is unknown; these cells are labelled unverified.", ""]
    seen = Counter(zerocopy.copying("zero_copy", f) for f in fractions)
    real, partial, copied, unverified = (seen[v] for v in (Copying.NONE_COPIED, Copying.PARTLY_COPIED, Copying.COPIED, Copying.UNVERIFIED))
    lines.append(f"- Of {len(cells)} zero_copy cells: {real} real zero-copy (no send copied), {partial} partly copied, "
                 f"{copied} copied (at least half of the sends), {unverified} unverified.")
    lines.append(f"- Copied fraction across cells: {num(fractions.min())} to {num(fractions.max())}.")
    if copied:
        why = ("The data stays on this machine (loopback or veth), and the kernel always copies "
               "MSG_ZEROCOPY data delivered to a local socket." if is_local_link(run)
               else "The kernel reported SO_EE_CODE_ZEROCOPY_COPIED: the NIC or route could not send from pinned pages.")
        lines.append(f"- **The copied cells are not zero-copy results**, and the tables and plots label them so. {why}")
    return lines + [""]


def _q_vs_two_copy(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> list[str]:
    lines = ["### From which size does one_copy beat two_copy, and zero_copy beat two_copy?", ""]
    modes = _modes(summary)
    metric = _cpu_metric(summary, user)
    for better in ("one_copy", "zero_copy"):
        if not {better, "two_copy"} <= modes:
            lines.append(f"- {better} vs two_copy: {NOT_ANSWERABLE} (needs stream cells of both).")
            continue
        lines.append(f"- **{better} vs two_copy**")
        lines += ["  " + line for line in _crossover_lines(summary, better, "two_copy", "throughput_gbps")]
        lines += ["  " + line for line in _crossover_lines(summary, better, "two_copy", metric)]
    if any(m in modes for m in ("one_copy", "zero_copy")) and "two_copy" in modes:
        lines += _cpu_metric_note(summary, metric, user)
    return lines + _copied_caveat(summary) + [""]


def _relative_reduction(stream: pd.DataFrame, metric: str, mode: str, base: str = "two_copy") -> float:
    """Median over matching (size, threads) cells of (base - mode) / base."""
    keyed = stream.set_index(["message_size", "threads"])
    a, b = keyed[keyed["mode"] == base][f"{metric}_mean"], keyed[keyed["mode"] == mode][f"{metric}_mean"]
    joined = pd.concat([a.rename("base"), b.rename("other")], axis=1).dropna()
    joined = joined[joined["base"] > 0]
    if joined.empty:
        return math.nan
    return float(((joined["base"] - joined["other"]) / joined["base"]).median())


def _q_cache_level(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> list[str]:
    lines = ["### Which cache level's misses fall most, per byte?", ""]
    stream = summary[summary["workload"] == "stream"]
    counted = [m for m in ("l1_misses_per_kib", "llc_misses_per_kib") if is_counted(stream, m)]
    if len(counted) < 2:
        return lines + [f"{NOT_ANSWERABLE}: L1 and LLC misses were {NOT_COUNTED} on these hosts.", ""]
    if "two_copy" not in _modes(summary) or len(_modes(summary)) < 2:
        return lines + [f"{NOT_ANSWERABLE}: it needs two_copy and another mode to compare.", ""]
    rows, best = [], None
    for mode in sorted(_modes(summary) - {"two_copy"}, key=derive.mode_rank):
        for side in ("", "sender_", "receiver_"):
            cells = []
            for level in ("l1", "llc"):
                value = _relative_reduction(stream, f"{side}{level}_misses_per_kib", mode)
                cells.append(value)
                if side == "" and not math.isnan(value) and (best is None or value > best[0]):
                    best = (value, level.upper(), mode)
            rows.append([mode, side.rstrip("_") or "both", *(f"{v:+.0%}" if not math.isnan(v) else "—" for v in cells)])
    lines.append("Median fall in misses per KiB moved, relative to two_copy (positive = fewer misses):")
    lines += ["", md_table(["mode", "side", "L1-dcache", "LLC"], rows), ""]
    if best is not None and best[0] > 0:
        lines.append(f"- The largest fall is in **{best[1]}** misses with {best[2]} ({best[0]:+.0%} per KiB).")
    else:
        lines.append("- Neither level's misses per byte fall below two_copy's in this run.")
    if user:
        lines.append(f"- Caveat: {user.caveat}: these are the agents' own user-space misses, not the copies'.")
    return lines + _copied_caveat(summary) + [""]


def _q_threads_and_contention(summary: pd.DataFrame, user: UserSpaceOnly = UserSpaceOnly()) -> list[str]:
    lines, stream, span = _thread_question("How does thread count interact with cache misses and context switches?",
                                           summary)
    if isinstance(span, str):
        return lines + [span, ""]
    low, high = span
    metrics = [("l1_misses_per_kib", "L1 misses per KiB"), ("llc_misses_per_kib", "LLC misses per KiB"),
               ("context_switches_per_s", "context switches per second")]
    if not is_counted(stream, "context_switches_per_s"):
        metrics[2] = ("rusage_context_switches_per_s", "context switches per second (rusage)")
    rows = []
    for mode in sorted(_modes(summary), key=derive.mode_rank):
        here = stream[stream["mode"] == mode]
        row = [here["mode_label"].iloc[0] if here["mode_label"].nunique() == 1 else mode]
        for metric, _ in metrics:
            if not is_counted(stream, metric):
                row.append(NOT_COUNTED)
                continue
            by = here.pivot_table(index="message_size", columns="threads", values=f"{metric}_mean")
            if low in by and high in by:
                ratio = (by[high] / by[low]).dropna()
                row.append(f"×{num(float(ratio.median()))}" if len(ratio) else "—")
            else:
                row.append("—")
        rows.append(row)
    lines.append(f"Median change from {low} to {high} threads, over message sizes:")
    lines += ["", md_table(["mode", *(label for _, label in metrics)], rows), ""]
    spans = []
    for index, (_, label) in enumerate(metrics):
        ratios = [float(row[1 + index][1:].replace(",", "")) for row in rows if str(row[1 + index]).startswith("×")]
        if ratios:
            spans.append(f"{label} ×{num(min(ratios))}" + (f" to ×{num(max(ratios))}" if len(ratios) > 1 else ""))
    if spans:
        lines.append(f"- From {low} to {high} threads, over the modes: {'; '.join(spans)}.")
    if all(is_counted(stream, m) for m, _ in metrics[:2]):
        lines.append("- Reading: misses per KiB that rise with threads point at contention for a shared cache "
                     "(LLC); per-byte counts that stay flat mean each connection keeps to its own working set.")
    else:
        lines.append(f"- Cache misses were {NOT_COUNTED} on these hosts, so only the context-switch part is answered.")
    if user and any(is_counted(stream, m) for m, _ in metrics[:2]):
        lines.append(f"- Caveat: {user.caveat}: the miss ratios cover user space only.")
    return lines + [""]


def _questions(summary: pd.DataFrame, run: RunData) -> list[list[str]]:
    """Each question's lines, its `### ` heading first."""
    user = user_space_only(run.results)
    return [_q_zero_vs_one(summary, user), _q_thread_scaling(summary, run), _q_zero_copy_real(summary, run),
            _q_vs_two_copy(summary, user), _q_cache_level(summary, user), _q_threads_and_contention(summary, user),
            *receive.questions(summary, run)]


def questions_section(summary: pd.DataFrame, run: RunData) -> str:
    if summary.empty:
        return f"## The study's questions\n\n{NOT_ANSWERABLE}: no cell succeeded.\n"
    lines = ["## The study's questions", ""]
    for question in _questions(summary, run):
        lines += question
    return "\n".join(lines)


def _short_answer(lines: list[str]) -> str:
    """One line for the summary, quoted from a question's full answer: its verdict bullets, joined."""
    body = [line for line in lines[1:] if line.strip()]
    refusal = next((line for line in body if NOT_ANSWERABLE in line and not line.startswith("-")), None)
    if refusal:
        return refusal
    picked, label = [], ""
    for line in body:
        text = line.strip()
        if not text.startswith("- ") or text.startswith(("- Caveat", "- Reading")):
            continue
        text = text[2:]
        if text.startswith("**") and text.endswith("**"):  # a sub-heading such as **one_copy vs two_copy**
            label = text.strip("*") + ": "
            continue
        if line.startswith("  ") and not label:
            continue
        picked.append(label + text.rstrip("."))
        label = ""
    return "; ".join(picked[:3]) + "." if picked else "see below."


def summary_section(run: RunData, summary: pd.DataFrame) -> str:
    """The answer first: each question in one line, per combination of varied parameters."""
    lines = ["## What this run shows", ""]
    if summary.empty:
        return "\n".join(lines + [f"{NOT_ANSWERABLE}: no cell succeeded.", ""])
    for label, group in variants(summary):
        if label:
            lines += [f"**With {label}**", ""]
        for question in _questions(group, run):
            lines.append(f"- *{question[0].removeprefix('### ')}* {_short_answer(question)}")
        lines.append("")
    return "\n".join(lines)
