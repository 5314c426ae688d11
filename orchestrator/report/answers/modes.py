"""Which copy mode beats another, and from which message size: the answers "from which size does
zero_copy beat one_copy?" and "does one_copy (zero_copy) beat two_copy?".

Rules, each stated where it acts:
- A cell (size × threads) is *better* or *worse* on a metric only when the two cells' 95% intervals
  do not overlap; otherwise it is *not resolved*, never "never". Over its metrics (throughput and
  CPU per byte) a cell is better if one is better and none worse, worse the other way round,
  mixed if they disagree.
- Where intervals overlap, how many repetitions per cell would resolve the observed difference is
  estimated from the pooled coefficient of variation of the two cells, c = sqrt((cv_a² + cv_b²) / 2):
  the smallest n whose intervals, t(0.975, n-1) · c · mean / sqrt(n) each side, no longer overlap.
- Throughput of a cell bounded by the link (ceiling.py) says how fast the link was: it is left out
  of the verdict and said so.
- Caveats that change the meaning ride along: zero_copy copied by the kernel, ENOBUFS with its
  share of the sends, the receive window or send buffer bounding the cells.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy import special  # Student's t quantile: scipy.stats costs a second more to import

from .. import derive
from ...rows.zerocopy import ZERO_COPY_MODES

from ..formatting import md_table, num, size_text
from ..runfolder import is_local_link
from ...rows import tcpinfo
from ..stats import CONFIDENCE
from .context import Context
from .model import Answer, Cell, Finding, cells_text, percents, refused, span, times

# Beyond this many repetitions per cell the estimate says "more than".
MOST_REPETITIONS = 50
WORDS = {"throughput_gbps": "throughput", "cpu_ns_per_byte": "CPU time per byte", "cycles_per_byte": "cycles per byte"}


@dataclass(frozen=True)
class Outcome:
    metric: str
    kind: str  # better, worse, unresolved, link (throughput at the ceiling), missing
    ratio: float  # mean of A / mean of B
    needed: int | None  # repetitions per cell that would resolve an unresolved difference


def repetitions_to_tell(a: float, b: float, cv_a: float, cv_b: float, confidence: float = CONFIDENCE) -> int | None:
    """The smallest n per cell whose 95% intervals would not overlap, if the means and the pooled
    CV stay as observed; None when it cannot be estimated (one repetition, no difference, no
    spread) or exceeds MOST_REPETITIONS."""
    if any(pd.isna(v) for v in (a, b, cv_a, cv_b)) or a == b:
        return None
    pooled = math.sqrt((cv_a**2 + cv_b**2) / 2)
    if pooled == 0:
        return None
    need = pooled * (abs(a) + abs(b)) / abs(a - b)
    for n in range(2, MOST_REPETITIONS + 1):
        if math.sqrt(n) / float(special.stdtrit(n - 1, (1 + confidence) / 2)) > need:
            return n
    return None


def outcome(row_a: pd.Series, row_b: pd.Series, metric: str, at_link: bool) -> Outcome:
    a, b = row_a[f"{metric}_mean"], row_b[f"{metric}_mean"]
    if pd.isna(a) or pd.isna(b) or b == 0:
        return Outcome(metric, "missing", math.nan, None)
    ratio = float(a / b)
    if metric == "throughput_gbps" and at_link:
        return Outcome(metric, "link", ratio, None)
    la, ha, lb, hb = (r[f"{metric}_ci_{end}"] for r in (row_a, row_b) for end in ("low", "high"))
    if not any(pd.isna(v) for v in (la, ha, lb, hb)) and (ha < lb or hb < la):
        higher = derive.METRICS[metric].higher_is_better
        return Outcome(metric, "better" if (a > b) == higher else "worse", ratio, None)
    return Outcome(metric, "unresolved", ratio,
                   repetitions_to_tell(a, b, row_a[f"{metric}_cv"], row_b[f"{metric}_cv"]))


def verdict(outcomes: list[Outcome]) -> str:
    kinds = {o.kind for o in outcomes}
    if {"better", "worse"} <= kinds:
        return "mixed"
    return "better" if "better" in kinds else "worse" if "worse" in kinds else "unresolved"


@dataclass(frozen=True)
class CellPair:
    cell: Cell
    a: pd.Series
    b: pd.Series
    outcomes: list[Outcome]

    @property
    def verdict(self) -> str:
        return verdict(self.outcomes)


def pairs(ctx: Context, a_mode: str, b_mode: str, metrics: tuple[str, ...]) -> list[CellPair]:
    stream = ctx.stream
    a = stream[stream["mode"] == a_mode].set_index(["message_size", "threads"])
    b = stream[stream["mode"] == b_mode].set_index(["message_size", "threads"])
    found = []
    for key in sorted(set(a.index) & set(b.index)):
        ra, rb = a.loc[key], b.loc[key]
        # Both at the link: their throughput says nothing of the copies. One side below it is a
        # finding like any other (its interval decides), as that side never reached the link.
        at_link = str(ra["cell"]) in ctx.bounded and str(rb["cell"]) in ctx.bounded
        outcomes = [outcome(ra, rb, m, at_link) for m in metrics]
        if all(o.kind == "missing" for o in outcomes):
            continue
        found.append(CellPair((int(key[0]), int(key[1])), ra, rb, outcomes))
    return found


def _ranges(group: list[CellPair], kind: str, a_mode: str, b_mode: str) -> tuple[str, dict[str, tuple[float, float]]]:
    """`a/b: throughput ×…, CPU time per byte ×…` over the metrics resolved as `kind` in the group."""
    parts, numbers = [], {}
    for metric in WORDS:
        ratios = [o.ratio for p in group for o in p.outcomes if o.metric == metric and o.kind == kind]
        if ratios:
            numbers[metric] = span(ratios)
            count = "" if len(ratios) == len(group) else f" in {len(ratios)}"
            parts.append(f"{WORDS[metric]} {times(*numbers[metric])}{count}")
    return (f"{a_mode}/{b_mode}: {', '.join(parts)}" if parts else ""), numbers


def starts(found: list[CellPair]) -> dict[int, int | None]:
    """Per thread count, the smallest size from which A is better at that size and at every larger
    size measured; None where A is not better at the largest size."""
    result: dict[int, int | None] = {}
    for threads in sorted({p.cell[1] for p in found}):
        here = sorted((p for p in found if p.cell[1] == threads), key=lambda p: p.cell[0])
        result[threads] = next((p.cell[0] for i, p in enumerate(here)
                                if all(q.verdict == "better" for q in here[i:])), None)
    return result


def _start_text(found: list[CellPair], begin: dict[int, int | None]) -> str:
    """`from 16KiB at 1, 2 threads, only at 4KiB at 4 threads, never at 8 threads`."""
    words: dict[str, list[int]] = {}
    for threads, size in begin.items():
        here = sorted((p for p in found if p.cell[1] == threads), key=lambda p: p.cell[0])
        if size is not None:
            word = "at every size" if size == here[0].cell[0] else f"from {size_text(size)}"
        else:
            better = [p.cell[0] for p in here if p.verdict == "better"]
            word = f"only at {', '.join(size_text(s) for s in better)}" if better else _no_win(here)
        words.setdefault(word, []).append(threads)
    if len(words) == 1:
        word = next(iter(words))
        return f"{word}{' measured' if word == 'at every size' else ''}, at every thread count"
    return ", ".join(f"{word} at {', '.join(map(str, threads))} thread{'s' if threads != [1] else ''}"
                     for word, threads in words.items())


def _no_win(cells: list[CellPair]) -> str:
    """Where A won no cell: "never" only when every cell there resolved against A; "can't tell"
    when none resolved; else "no win shown" (some worse, the rest within noise)."""
    verdicts = {p.verdict for p in cells}
    return "never" if verdicts == {"worse"} else "can't tell" if verdicts == {"unresolved"} else "no win shown"


def comparison(ctx: Context, a_mode: str, b_mode: str, label: str = "") -> tuple[list[Finding], list[CellPair]]:
    """The findings of A against B over their common stream cells; `label` prefixes the headline."""
    metrics = ("throughput_gbps", ctx.cpu_metric)
    found = pairs(ctx, a_mode, b_mode, metrics)
    subject = f"{a_mode} vs {b_mode}"
    lead = f"{label}: " if label else ""
    if not found:
        return [], []
    groups = {kind: [p for p in found if p.verdict == kind] for kind in ("better", "worse", "mixed", "unresolved")}
    total = len(found)
    findings: list[Finding] = []
    if groups["better"]:
        begin = starts(found)
        ranges, numbers = _ranges(groups["better"], "better", a_mode, b_mode)
        numbers.update({f"start@{t}": (s, s) for t, s in begin.items() if s is not None})
        findings.append(Finding("better", f"{lead}{_start_text(found, begin)} (better in {len(groups['better'])} of "
                                f"{total} cells; {ranges})", tuple(p.cell for p in groups["better"]), numbers, subject))
    if groups["worse"]:
        ranges, numbers = _ranges(groups["worse"], "worse", a_mode, b_mode)
        never = "" if groups["better"] else f"{lead}{_no_win(found)}: "
        findings.append(Finding("worse", f"{never}worse in {len(groups['worse'])} of {total} cells ({ranges})",
                                tuple(p.cell for p in groups["worse"]), numbers, subject))
    if groups["mixed"]:
        findings.append(Finding("mixed", f"mixed in {cells_text([p.cell for p in groups['mixed']])} (better on one "
                                "metric, worse on the other)", tuple(p.cell for p in groups["mixed"]), {}, subject))
    if groups["unresolved"]:
        findings.append(_unresolved(groups["unresolved"], total, a_mode, b_mode, lead, subject,
                                    alone=not any(groups[k] for k in ("better", "worse", "mixed"))))
    findings += _link(ctx, found, subject) + _bound(ctx, found, subject)
    return findings, found


def _unresolved(group: list[CellPair], total: int, a_mode: str, b_mode: str, lead: str, subject: str,
                alone: bool) -> Finding:
    needed = [min((o.needed for o in p.outcomes if o.needed is not None), default=None) for p in group]
    known = [n for n in needed if n is not None]
    numbers: dict[str, tuple[float, float]] = {}
    if known:
        numbers["repetitions"] = span(known)
        low, high = numbers["repetitions"]
        tell = f"{int(low)}" if low == high else f"{int(low)}–{int(high)}"
        tell = f"{tell} repetitions per cell would tell"
        if len(known) < len(group):
            tell += (f" for {len(known)}; the other {len(group) - len(known)} would need more than "
                     f"{MOST_REPETITIONS} or have no spread to judge")
    elif all(pd.isna(r[f"{o.metric}_ci_low"]) for p in group for o in p.outcomes for r in (p.a, p.b)):
        tell = "one repetition per cell: no interval to judge by, and no spread to say how many would tell"
    else:
        tell = f"more than {MOST_REPETITIONS} repetitions per cell would be needed, or the cells have no spread to judge"
    # Who leads where the intervals overlap, on the metric closest to resolving.
    leads = []
    for p in group:
        best = min((o for o in p.outcomes if o.kind == "unresolved"),
                   key=lambda o: (o.needed is None, o.needed or 0, -abs(math.log(o.ratio)) if o.ratio > 0 else 0),
                   default=None)
        if best is not None and best.ratio != 1:
            higher = derive.METRICS[best.metric].higher_is_better
            leads.append(a_mode if (best.ratio > 1) == higher else b_mode)
    ahead = ""
    if leads and len(set(leads)) == 1:
        who = "" if len(group) == 1 else " in both" if len(leads) == len(group) == 2 else (
            " in all" if len(leads) == len(group) else f" in {len(leads)}")
        ahead = f"{leads[0]} ahead{who}, within noise; "
    if alone:
        text = f"{lead}can't tell at any size: every difference is within noise ({ahead}{tell})"
    else:
        named = cells_text([p.cell for p in group])
        named = "" if named.endswith(" cells") else f"{named}: "
        text = f"can't tell in {len(group)} of {total} cells ({named}{ahead}{tell})"
    return Finding("unresolved", text, tuple(p.cell for p in group), numbers, subject)


def _link(ctx: Context, found: list[CellPair], subject: str) -> list[Finding]:
    held = [p for p in found if any(o.kind == "link" for o in p.outcomes)]
    if not held:
        return []
    limit = next(iter(ctx.bounded.values()))
    return [Finding("link", f"throughput in {cells_text([p.cell for p in held])} sat at {limit.text()}: the link "
                    "was the limit there, not the copies", tuple(p.cell for p in held),
                    {"ceiling_gbps": (limit.gbps, limit.gbps)}, subject)]


def _bound(ctx: Context, found: list[CellPair], subject: str) -> list[Finding]:
    """The cells that a TCP limit held for at least half their busy time (tcpinfo.LIMIT_FRACTION), on
    either side of the comparison; then, apart, those it held for a smaller share that can still
    narrow a difference (tcpinfo.PARTLY_FRACTION)."""
    findings = []
    for bound, column, words, who in (("receive window", "rwnd_limited_fraction", "receiver-bound (receive window)",
                                       "the receiver"),
                                      ("send buffer", "sndbuf_limited_fraction", "send-buffer-bound", "the send buffer")):
        held, fractions, partly, shares = [], [], [], []
        for p in found:
            cells = [str(r["cell"]) for r in (p.a, p.b) if ctx.condition(str(r["cell"]), "tcp_bound") == bound]
            if cells:
                held.append(p.cell)
                fractions += [float(ctx.condition(c, column)) for c in cells]
                continue
            some = [float(ctx.condition(str(r["cell"]), column)) for r in (p.a, p.b)]
            some = [f for f in some if not pd.isna(f) and tcpinfo.PARTLY_FRACTION <= f < tcpinfo.LIMIT_FRACTION]
            if some:
                partly.append(p.cell)
                shares += some
        if held:
            findings.append(Finding("bound", f"{words} in {cells_text(held)}, limited {percents(*span(fractions))} of "
                                    f"busy time: {who}, not the copies, set the pace there", tuple(held),
                                    {column: span(fractions)}, subject))
        if partly:
            findings.append(Finding("partly", f"partly {words} in {cells_text(partly)}, limited "
                                    f"{percents(*span(shares))} of busy time, which narrows the difference there",
                                    tuple(partly), {column: span(shares)}, subject))
    return findings


def zero_copy_caveats(ctx: Context, cells: pd.DataFrame, modes: tuple[str, ...] = tuple(ZERO_COPY_MODES)) -> list[Finding]:
    """Copied by the kernel, and ENOBUFS with its share of the sends, over the given cells of each
    zero-copy mode in `modes` (rows/zerocopy.py's ZERO_COPY_MODES)."""
    findings = []
    for mode in modes:
        findings += _caveats(ctx, cells[cells["mode"] == mode], mode)
    return findings


def _caveats(ctx: Context, cells: pd.DataFrame, mode: str) -> list[Finding]:
    findings = []
    copied = cells[cells["copied"].astype(bool)]
    interface = ZERO_COPY_MODES[mode][0]
    if len(copied):
        fractions = span(copied["zerocopy_copied_fraction_max"])
        where = " (a local link)" if is_local_link(ctx.run) else ""
        text = (f"every {mode} cell was copied by the kernel" if len(copied) == len(cells)
                else f"{len(copied)} of {len(cells)} {mode} cells were copied by the kernel")
        findings.append(Finding("copied", f"{text}{where}, so it measures {interface}'s bookkeeping plus a copy",
                                tuple((int(r["message_size"]), int(r["threads"])) for _, r in copied.iterrows()),
                                {"copied_fraction": fractions}, mode))
    hit = [(r, ctx.condition(str(r["cell"]), "enobufs_share")) for _, r in cells.iterrows()]
    hit = [(r, s) for r, s in hit if not pd.isna(s) and s > 0]
    if hit:
        shares = span(s for _, s in hit)
        limit = " (the socket's optmem limit on pending notifications)" if mode == "zero_copy" else ""
        findings.append(Finding("enobufs", f"ENOBUFS{limit} met "
                                f"{percents(*shares)} of {mode} sends in {cells_text([(int(r['message_size']), int(r['threads'])) for r, _ in hit])}",
                                tuple((int(r["message_size"]), int(r["threads"])) for r, _ in hit),
                                {"enobufs_share": shares}, mode))
    return findings


def detail_table(found: list[CellPair], a_mode: str, b_mode: str) -> list[str]:
    """Per cell: each metric's ratio A/B and what it resolved to, with the repetitions that would tell."""
    if not found:
        return []
    metrics = [o.metric for o in found[0].outcomes]

    def word(o: Outcome) -> str:
        if o.kind == "missing":
            return "—"
        extra = {"unresolved": f"within noise{f', ~{o.needed} reps' if o.needed else ''}", "link": "at the link"}
        return f"×{num(o.ratio)} ({extra.get(o.kind, o.kind)})"

    rows = [[size_text(p.cell[0]), str(p.cell[1]), *(word(o) for o in p.outcomes), p.verdict] for p in found]
    return [f"Per cell, {a_mode} / {b_mode} (mean over mean; better or worse where the 95% intervals do not "
            f"overlap; \"~n reps\": the repetitions per cell that would resolve it at the observed spread):", "",
            md_table(["size", "threads", *(derive.METRICS[m].label for m in metrics), f"{a_mode} is"], rows)]


ZERO_VS_ONE = "From which message size does zero_copy beat one_copy?"
VS_TWO = "From which size does one_copy beat two_copy, and zero_copy beat two_copy?"


def zero_vs_one(ctx: Context) -> Answer:
    if not {"zero_copy", "one_copy"} <= ctx.modes:
        return refused(ZERO_VS_ONE, "it needs stream cells of both zero_copy and one_copy.")
    findings, found = comparison(ctx, "zero_copy", "one_copy")
    if not found:
        return refused(ZERO_VS_ONE, "no size and thread count has both zero_copy and one_copy measured.")
    findings += zero_copy_caveats(ctx, ctx.stream, ("zero_copy",))
    note = ctx.cpu_metric_note()
    return Answer(ZERO_VS_ONE, tuple(findings), tuple(detail_table(found, "zero_copy", "one_copy") + (["", note] if note else [])))


def vs_two_copy(ctx: Context) -> Answer:
    findings, details = [], []
    for better in ("one_copy", "zero_copy"):
        if not {better, "two_copy"} <= ctx.modes:
            details.append(f"- {better} vs two_copy: {refused(VS_TWO, 'it needs stream cells of both.').sentence}")
            continue
        found_here, found = comparison(ctx, better, "two_copy", label=better)
        findings += found_here
        details += [f"**{better} vs two_copy**", "", *detail_table(found, better, "two_copy"), ""]
    if not findings:
        return refused(VS_TWO, "it needs stream cells of two_copy and of one_copy or zero_copy.")
    if "zero_copy" in ctx.modes and "two_copy" in ctx.modes:
        findings += zero_copy_caveats(ctx, ctx.stream, ("zero_copy",))
    note = ctx.cpu_metric_note()
    return Answer(VS_TWO, tuple(findings), tuple(details + ([note] if note else [])))


URING = "Does sending through io_uring pay, and from which size?"
URING_MODES = ("io_uring", "io_uring_zc")
# Each io_uring mode against the socket call it replaces, and io_uring's zero-copy against its copy.
URING_PAIRS = (("io_uring", "one_copy"), ("io_uring_zc", "zero_copy"), ("io_uring_zc", "io_uring"))


def uring_pays(ctx: Context) -> Answer | None:
    """Asked only by runs with an io_uring mode: each pair of URING_PAIRS measured, with the
    io_uring_zc cells the kernel copied named."""
    if not set(URING_MODES) & ctx.modes:
        return None
    findings, details = [], []
    for better, than in URING_PAIRS:
        if not {better, than} <= ctx.modes:
            continue
        found_here, found = comparison(ctx, better, than, label=f"{better} vs {than}")
        findings += found_here
        details += [f"**{better} vs {than}**", "", *detail_table(found, better, than), ""]
    if not findings:
        measured = ", ".join(sorted(set(URING_MODES) & ctx.modes))
        return refused(URING, f"it has stream cells of {measured} but of none of the modes to compare them with "
                       f"({'; '.join(f'{a} with {b}' for a, b in URING_PAIRS)}).")
    findings += zero_copy_caveats(ctx, ctx.stream, ("io_uring_zc",))
    note = ctx.cpu_metric_note()
    return Answer(URING, tuple(findings), tuple(details + ([note] if note else [])))



