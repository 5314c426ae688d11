"""The report's "Against iperf3" section: per stream cell of ours with an iperf3 reference cell at
the same settings, ours ÷ iperf3 with its 95% interval (the reference cells' rows are rows/iperf3.py's)."""

from __future__ import annotations

import math

import pandas as pd

from . import stats
from ..experiment.iperf3 import KEYS, MODE
from ..rows import zerocopy

# Ours ÷ iperf3 outside these is flagged for a look.
LOW, HIGH = 0.8, 1.25


def without_reference(summary: pd.DataFrame) -> pd.DataFrame:
    """The report's tables and plots compare our modes; the reference has its own section."""
    if summary.empty or "mode" not in summary:
        return summary
    return summary[summary["mode"].astype(str) != MODE].reset_index(drop=True)


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
    rank = {"one_copy": 0, "two_copy": 1, "zero_copy": 2, "sendfile": 3}
    return table.sort_values(["mode", "message_size", "threads"], kind="stable",
                             key=lambda c: c.map(lambda m: rank.get(m.split(" ")[0].rstrip(":"), 9)) if c.name == "mode" else c).reset_index(drop=True)


def _num(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.3g}"


def _size(value: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"


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
             "perf stat. Ours ÷ iperf3 is the ratio of mean throughputs with its 95% interval (log-scale delta "
             "method, as `orchestrate compare`).", "",
             "**one_copy is the fair comparison**: iperf3 makes one write of the message size per call, and "
             "one_copy one sendmsg per message. two_copy makes one send per field (`fields`), so its ratio also "
             f"carries the extra system calls. A ratio below {LOW:g}× or above {HIGH:g}× is flagged for a look.", "",
             "At small messages and one connection the ratio also moves with where the scheduler puts the two "
             "ends: on loopback, 1 KiB × 1 measured 0.43 with sender and receiver on two CPUs and 1.68 on one "
             "(README, \"Figures measured here\"), because iperf3's slower receiver lets writes coalesce into "
             "larger packets. A flag there asks for a look at CPU placement and load before the agents.", ""]
    if table.empty:
        lines += ["No cell of ours and of iperf3 both succeeded at the same settings: no ratio.", ""]
    else:
        rows = []
        for _, r in table.iterrows():
            ci = f"[{_num(r['ratio_ci_low'])}, {_num(r['ratio_ci_high'])}]" if not pd.isna(r["ratio_ci_low"]) else \
                f"(n={r['ours_n']}/{r['iperf3_n']}: no interval)"
            extra = ", ".join(f"{k}={r[k]}" for k in ("sender", "nodelay", "sndbuf") if table[k].nunique() > 1)
            rows.append([str(r["mode"]) + (f" ({extra})" if extra else ""), _size(int(r["message_size"])),
                         str(r["threads"]), str(r["fields"]), _num(r["ours_gbps"]), _num(r["iperf3_gbps"]),
                         f"{_num(r['ratio'])} {ci}", "**for a look**" if r["look"] else ""])
        header = ["mode", "size", "threads", "fields", "ours Gbit/s", "iperf3 Gbit/s", "ours ÷ iperf3 [95% CI]", "flag"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
        fair = table[table["mode"] == "one_copy"]
        if not fair.empty:
            lines += [f"one_copy ÷ iperf3 ranges from {_num(fair['ratio'].min())} to {_num(fair['ratio'].max())} "
                      f"over {len(fair)} cell(s); {int(fair['look'].sum())} flagged.", ""]
    bad = refs[refs["status"].astype(str) != "ok"]
    if len(bad):
        lines += [f"iperf3 repetitions not ok ({len(bad)} of {len(refs)}), left out of the ratios:", ""]
        lines += [f"- `{r['cell_id']}` {r['status']}: {r['error']}" for _, r in bad.iterrows()]
        lines.append("")
    return "\n".join(lines)
