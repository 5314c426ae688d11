"""Was the zero-copy real, or copied? From the kernel's completion reports per cell
(`zerocopy_copied_fraction`), for each zero-copy send mode the run measured (rows/zerocopy.py's
ZERO_COPY_MODES: MSG_ZEROCOPY's and io_uring's), with the sends that hit ENOBUFS and their share."""

from __future__ import annotations

from collections import Counter

import pandas as pd

from ...rows import zerocopy
from ...rows.zerocopy import ZERO_COPY_MODES, Copying
from ..formatting import num
from ..runfolder import is_local_link
from .context import Context
from .model import Answer, Finding, refused
from .modes import zero_copy_caveats

QUESTION = "Was the zero-copy real, or copied?"


def zero_copy_real(ctx: Context) -> Answer:
    summary = ctx.summary
    cells = summary[summary["mode"].isin(list(ZERO_COPY_MODES))] if not summary.empty else summary
    if cells.empty:
        return refused(QUESTION, f"it has no {' or '.join(ZERO_COPY_MODES)} cells.")
    if cells["zerocopy_copied_fraction_max"].isna().all():
        return refused(QUESTION, "no zero-copy completions were counted, so whether the kernel copied is unknown; "
                       "these cells are labelled unverified.")
    modes = [m for m in ZERO_COPY_MODES if (cells["mode"] == m).any()]
    findings: list[Finding] = []
    detail: list[str] = []
    for mode in modes:
        found, lines = _one_mode(ctx, cells[cells["mode"] == mode], mode, named=len(modes) > 1)
        findings += found
        detail += lines
    findings += [f for f in zero_copy_caveats(ctx, cells) if f.kind == "enobufs"]
    return Answer(QUESTION, tuple(findings), tuple(detail))


def _one_mode(ctx: Context, cells: pd.DataFrame, mode: str, named: bool) -> tuple[list[Finding], list[str]]:
    """The findings and detail lines for one mode's cells; `named`: the clauses start with the
    mode, because the answer covers more than one."""
    interface, flag = ZERO_COPY_MODES[mode]
    fractions = cells["zerocopy_copied_fraction_max"]
    seen = Counter(zerocopy.copying(mode, f) for f in fractions)
    counts = {kind: seen[kind] for kind in Copying}
    total = len(cells)
    known = fractions.dropna()
    spread = f"; the copied fraction runs from {num(known.min())} to {num(known.max())}" if len(known) else ""
    detail = [f"- Of {total} {mode} cells: {counts[Copying.NONE_COPIED]} real zero-copy (no send copied), "
              f"{counts[Copying.PARTLY_COPIED]} partly copied, {counts[Copying.COPIED]} copied (at least half of the "
              f"sends), {counts[Copying.UNVERIFIED]} unverified{spread}."]
    if counts[Copying.COPIED]:
        why = (f"The data stays on this machine (loopback or veth), and the kernel always copies {interface} data "
               "delivered to a local socket." if is_local_link(ctx.run)
               else f"The kernel reported {flag}: the NIC or route could not send from pinned pages.")
        which = f"copied {mode} cells" if named else "copied cells"
        detail.append(f"- **The {which} are not zero-copy results**, and the tables and plots label them so. {why}")
    cell = tuple((int(r["message_size"]), int(r["threads"])) for _, r in cells.iterrows())
    numbers = {"copied_fraction": (float(known.min()), float(known.max()))} if len(known) else {}
    lead = f"{mode}: " if named else ""
    if counts[Copying.COPIED] == total:
        head = Finding("copied", f"{lead}copied in every cell", cell, numbers, mode)
    elif counts[Copying.NONE_COPIED] == total:
        head = Finding("real", f"{lead}real zero-copy in every cell: the kernel copied no send", cell, numbers, mode)
    else:
        parts = [f"{n} {word}" for n, word in ((counts[Copying.NONE_COPIED], "real"),
                                              (counts[Copying.PARTLY_COPIED], "partly copied"),
                                              (counts[Copying.COPIED], "copied"),
                                              (counts[Copying.UNVERIFIED], "unverified")) if n]
        head = Finding("mixed", f"{lead}{', '.join(parts)} of {total} cells{spread.replace('; the', ' (the')}"
                       f"{')' if spread else ''}", cell, numbers, mode)
    findings = [head]
    if counts[Copying.COPIED] == total and is_local_link(ctx.run):
        findings.append(Finding("why", f"the data never left this machine, and the kernel copies {interface} data "
                                "for a local socket", (), {}, mode))
    return findings, detail
