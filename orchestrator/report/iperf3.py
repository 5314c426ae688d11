"""The report's "Against iperf3" section: per stream cell of ours with an iperf3 reference cell at
the same settings, ours ÷ iperf3 with its 95% interval (the reference cells' rows are rows/iperf3.py's)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from . import stats
from ..experiment import iperf3 as experiment_iperf3
from ..experiment.iperf3 import KEYS, MODE, PAIR_FIELDS, PAIR_MODE
from ..rows import zerocopy

# Ours ÷ iperf3 outside these is flagged for a look.
LOW, HIGH = 0.8, 1.25


def without_reference(summary: pd.DataFrame, config: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The report's tables and plots compare our modes over the matrix's cells; the reference, and
    the one_copy cells at one field the run added for it (per the run's `config`), have their own section."""
    if summary.empty or "mode" not in summary:
        return summary
    keep = summary["mode"].astype(str) != MODE
    if config and "fields" in summary:
        matrix = config.get("matrix") or {}

        def dimension(key: str) -> list:
            values = matrix.get(key)
            return list(values) if isinstance(values, list) else [config.get(key)]

        added = [experiment_iperf3.is_added_pair(dimension, config.get("reference"), m, f)
                 for m, f in zip(summary["mode"].astype(str), pd.to_numeric(summary["fields"], errors="coerce"))]
        keep &= ~pd.Series(added, index=summary.index, dtype=bool)
    return summary[keep].reset_index(drop=True)


def ratio_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per stream cell of ours that has an iperf3 cell at the same settings: both mean
    throughputs and ours ÷ iperf3 with its 95% interval (stats.ratio), over ok repetitions."""
    columns = ["mode", "fields", *KEYS, "ours_n", "ours_gbps", "iperf3_n", "iperf3_gbps",
               "ratio", "ratio_ci_low", "ratio_ci_high", "look"]
    if results.empty or MODE not in set(results["mode"].astype(str)):
        return pd.DataFrame(columns=columns)
    ok = results[(results["status"].astype(str) == "ok") & (results["workload"].astype(str) == "stream")]
    keys = [k for k in KEYS if k in ok.columns]
    reference = {key: group["throughput_gbps"].dropna().astype(float).tolist()
                 for key, group in ok[ok["mode"].astype(str) == MODE].groupby(keys, sort=True)}
    rows = []
    ours = ok[ok["mode"].astype(str) != MODE]
    for key, group in ours.groupby(["mode", "fields", *keys], sort=False):
        theirs = reference.get(tuple(key[2:]))
        values = group["throughput_gbps"].dropna().astype(float).tolist()
        if not theirs or not values:
            continue
        result = stats.ratio(theirs, values)
        look = not math.isnan(result.ratio) and not LOW <= result.ratio <= HIGH
        # A zero_copy cell the kernel copied is never shown as zero-copy (zerocopy.label).
        copied = group["zerocopy_copied_fraction"].max() if "zerocopy_copied_fraction" in group else math.nan
        key = (zerocopy.label(str(key[0]), copied), *key[1:])
        rows.append([*key, len(values), stats.estimate(values).mean, len(theirs), stats.estimate(theirs).mean,
                     result.ratio, result.ci_low, result.ci_high, look])
    table = pd.DataFrame(rows, columns=columns)
    # one_copy first: it is the fair comparison (one call per message, as iperf3).
    rank = {"one_copy": 0, "two_copy": 1, "zero_copy": 2, "sendfile": 3, "io_uring": 4, "io_uring_zc": 5}
    return table.sort_values(["mode", "fields", "message_size", "threads"], kind="stable",
                             key=lambda c: c.map(lambda m: rank.get(m.split(" ")[0].rstrip(":"), 9)) if c.name == "mode" else c).reset_index(drop=True)


def _num(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.3g}"


def _size(value: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"


# iperf3 runs a thread per -P stream from this version on; before it, one thread drives them all.
THREADED_FROM = (3, 16)


def _threading(refs: pd.DataFrame) -> str:
    """What the run's iperf3 does with `-P`, from the version its rows recorded."""
    found = sorted(set(refs["iperf3_version"].dropna().astype(str))) if "iperf3_version" in refs else []
    versions = [tuple(int(n) for n in m.groups()) for v in found if (m := re.search(r"(\d+)\.(\d+)", v))]
    named = ", ".join(found)
    if versions and all(v >= THREADED_FROM for v in versions):
        return (f"This run's iperf3 ({named}) runs one thread per `-P` stream, as ours runs one per connection; "
                "its ratios at several streams are still given apart from the one-stream ones.")
    which = f"This run's iperf3 ({named})" if versions else \
        "iperf3 before 3.16 (this run's rows do not record which iperf3 ran: older rows lack `iperf3_version`)"
    return (f"{which} drives every `-P` stream from one thread, while ours runs one thread per connection: at "
            "two streams and more, the ratio measures that difference in threading, not what copies cost.")


def _table(table: pd.DataFrame) -> list[str]:
    rows = []
    for _, r in table.iterrows():
        ci = f"[{_num(r['ratio_ci_low'])}, {_num(r['ratio_ci_high'])}]" if not pd.isna(r["ratio_ci_low"]) else \
            f"(n={r['ours_n']}/{r['iperf3_n']}: no interval)"
        extra = ", ".join(f"{k}={r[k]}" for k in ("sender", "nodelay", "sndbuf") if table[k].nunique() > 1)
        rows.append([str(r["mode"]) + (f" ({extra})" if extra else ""), _size(int(r["message_size"])),
                     str(r["threads"]), str(r["fields"]), _num(r["ours_gbps"]), _num(r["iperf3_gbps"]),
                     f"{_num(r['ratio'])} {ci}", "**for a look**" if r["look"] else ""])
    header = ["mode", "size", "threads", "fields", "ours Gbit/s", "iperf3 Gbit/s", "ours ÷ iperf3 [95% CI]", "flag"]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def equal_settings(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ratio_table at equal settings: one_copy at one field, one stream."""
    if table.empty:
        return table
    return table[(table["mode"] == PAIR_MODE) & (table["fields"] == PAIR_FIELDS) & (table["threads"] == 1)]


def headline(table: pd.DataFrame) -> str:
    """The one sentence the section leads with: the one-stream ratio at equal settings, or why there is none."""
    fair = equal_settings(table)
    if fair.empty:
        ours = table[table["mode"] == PAIR_MODE]["fields"]
        sent = f"its one_copy sent {', '.join(str(f) for f in sorted(set(ours)))} buffers per sendmsg" if len(ours) \
            else "it has no one_copy cell"
        cells = "no one_copy cell at `fields: 1` and one stream" if (table["threads"] == 1).any() or table.empty \
            else "no one-stream cell"
        return (f"**No headline ratio: the settings were unequal.** This run has {cells} beside iperf3 ({sent}; "
                "iperf3 writes one buffer per call). A run of this orchestrate adds those cells.")
    where = ", ".join(f"{_num(r['ratio'])} at {_size(int(r['message_size']))}" for _, r in fair.iterrows())
    flagged = int(fair["look"].sum())
    return (f"**At equal settings, one stream: ours ÷ iperf3 is {where}** (one_copy at `fields: 1`, one buffer "
            f"per call as iperf3; {len(fair)} cell(s), {flagged} flagged).")


def section(results: pd.DataFrame) -> str:
    """The report's "Against iperf3" section; empty when the run has no reference cells."""
    if results.empty or MODE not in set(results["mode"].astype(str)):
        return ""
    table = ratio_table(results)
    refs = results[results["mode"].astype(str) == MODE]
    lines = ["## Against iperf3 (reference cells in the same run)", "",
             "Each row: our receiver's throughput over iperf3's at the same message size (`-l`), connections "
             "(`-P`), sender (`-R` when the server sends), TCP_NODELAY (`-N` exactly when nodelay is on) and socket "
             "buffers (`-w`), on the same hosts, with the same warm-up (`-O`) and window (`-t`), under the same "
             "perf stat. Ours ÷ iperf3 is the ratio of the geometric mean throughputs with its 95% interval "
             "(Welch's t on the log values, as `orchestrate compare`).", "",
             "**one_copy at `fields: 1` is the comparison at equal settings**: iperf3 makes one write of the "
             "message size per call, and one_copy at one field one sendmsg of one buffer per message; the run adds "
             "those cells when its matrix lacks them. one_copy at more fields also gathers several iovecs per "
             "call, and two_copy makes one send per field, so their ratios carry that too. A ratio below "
             f"{LOW:g}× or above {HIGH:g}× is flagged for a look.", ""]
    if table.empty:
        lines += ["No cell of ours and of iperf3 both succeeded at the same settings: no ratio.", ""]
    else:
        lines += [headline(table), ""]
        one, many = table[table["threads"] == 1], table[table["threads"] != 1]
        if not one.empty:
            lines += ["### One stream", "",
                      "At small messages the ratio also moves with where the scheduler puts the two ends: on "
                      "loopback, 1 KiB × 1 measured 0.43 with sender and receiver on two CPUs and 1.68 on one "
                      "(README, \"Figures measured here\"), because iperf3's slower receiver lets writes coalesce "
                      "into larger packets. A flag there asks for a look at CPU placement and load before the agents.",
                      "", *_table(one)]
        if not many.empty:
            lines += ["### Several streams (`-P 2` and up): kept apart", "", _threading(refs), "", *_table(many)]
    bad = refs[refs["status"].astype(str) != "ok"]
    if len(bad):
        lines += [f"iperf3 repetitions not ok ({len(bad)} of {len(refs)}), left out of the ratios:", ""]
        lines += [f"- `{r['cell_id']}` {r['status']}: {r['error']}" for _, r in bad.iterrows()]
        lines.append("")
    return "\n".join(lines)
