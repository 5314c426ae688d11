"""Was the zero-copy real, or copied? From the kernel's completion reports per cell
(`zerocopy_copied_fraction`), with the sends that hit ENOBUFS and their share."""

from __future__ import annotations

from collections import Counter

from ...rows import zerocopy
from ...rows.zerocopy import Copying
from ..formatting import num
from ..runfolder import is_local_link
from .context import Context
from .model import Answer, Finding, refused
from .modes import zero_copy_caveats

QUESTION = "Was the zero-copy real, or copied?"


def zero_copy_real(ctx: Context) -> Answer:
    cells = ctx.summary[ctx.summary["mode"] == "zero_copy"] if not ctx.summary.empty else ctx.summary
    if cells.empty:
        return refused(QUESTION, "it has no zero_copy cells.")
    fractions = cells["zerocopy_copied_fraction_max"]
    if fractions.isna().all():
        return refused(QUESTION, "no zero_copy completions were counted, so whether the kernel copied is unknown; "
                       "these cells are labelled unverified.")
    seen = Counter(zerocopy.copying("zero_copy", f) for f in fractions)
    counts = {kind: seen[kind] for kind in Copying}
    total = len(cells)
    detail = [f"- Of {total} zero_copy cells: {counts[Copying.NONE_COPIED]} real zero-copy (no send copied), "
              f"{counts[Copying.PARTLY_COPIED]} partly copied, {counts[Copying.COPIED]} copied (at least half of the "
              f"sends), {counts[Copying.UNVERIFIED]} unverified; the copied fraction runs from {num(fractions.min())} "
              f"to {num(fractions.max())}."]
    if counts[Copying.COPIED]:
        why = ("The data stays on this machine (loopback or veth), and the kernel always copies MSG_ZEROCOPY data "
               "delivered to a local socket." if is_local_link(ctx.run)
               else "The kernel reported SO_EE_CODE_ZEROCOPY_COPIED: the NIC or route could not send from pinned pages.")
        detail.append(f"- **The copied cells are not zero-copy results**, and the tables and plots label them so. {why}")
    cell = tuple((int(r["message_size"]), int(r["threads"])) for _, r in cells.iterrows())
    numbers = {"copied_fraction": (float(fractions.min()), float(fractions.max()))}
    if counts[Copying.COPIED] == total:
        head = Finding("copied", "copied in every cell", cell, numbers, "zero_copy")
    elif counts[Copying.NONE_COPIED] == total:
        head = Finding("real", "real zero-copy in every cell: the kernel copied no send", cell, numbers, "zero_copy")
    else:
        parts = [f"{n} {word}" for n, word in ((counts[Copying.NONE_COPIED], "real"),
                                              (counts[Copying.PARTLY_COPIED], "partly copied"),
                                              (counts[Copying.COPIED], "copied"),
                                              (counts[Copying.UNVERIFIED], "unverified")) if n]
        head = Finding("mixed", f"{', '.join(parts)} of {total} cells (copied fraction {num(fractions.min())} to "
                       f"{num(fractions.max())})", cell, numbers, "zero_copy")
    findings = [head]
    if counts[Copying.COPIED] == total and is_local_link(ctx.run):
        findings.append(Finding("why", "the data never left this machine, and the kernel copies MSG_ZEROCOPY data "
                                "for a local socket", (), {}, "zero_copy"))
    findings += [f for f in zero_copy_caveats(ctx, cells) if f.kind == "enobufs"]
    return Answer(QUESTION, tuple(findings), tuple(detail))
