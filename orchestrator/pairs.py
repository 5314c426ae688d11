"""One run on several host pairs (issue 13): each pair against a baseline pair, cell by cell, and
the host facts that set the pairs apart.

The per-cell comparison is `compare`'s own (compare.compare_cells: means with 95% intervals, the
ratio with its interval, Welch's test), applied to the baseline pair as A and each other pair as B.
"""

from __future__ import annotations

import pandas as pd

from . import compare, derive
from .errors import ConfigError
from .formatting import md_table
from .roles import ROLES
from .runfolder import RunData, flatten, pair_view

# Facts a reader compares pairs by first (facts.py's names); shown even where the pairs agree.
KEY_FACTS = ("cpu_model", "cores", "kernel", "nic.interface", "nic.driver", "nic.driver_version", "nic.firmware",
             "nic.speed", "nic.mtu")
CSV_NAME = "pairs.csv"


def is_multi_pair(run: RunData) -> bool:
    return len(run.pairs) > 1


def baseline_pair(run: RunData, requested: str | None = None) -> str:
    """The pair the others are divided by: `requested` (`--baseline NAME`), else the run's first pair."""
    if requested is None:
        return run.pairs[0]
    if requested not in run.pairs:
        raise ConfigError(f"--baseline {requested!r}: this run has no such pair; its pairs are {', '.join(run.pairs)}")
    return requested


def _verdict(text: str, pair: str, baseline: str) -> str:
    # compare's verdicts speak of A and B; here A is the baseline pair and B the pair on the row.
    return (text.replace("B better", f"better than {baseline}").replace("B worse", f"worse than {baseline}")
            .replace("A counted", f"{baseline} counted").replace(", B ", f", {pair} "))


def ratio_table(run: RunData, baseline: str) -> pd.DataFrame:
    """One row per (pair other than the baseline, cell, metric) that both measured; compare's columns
    (`a_*` the baseline, `b_*` the pair, `ratio` = pair / baseline), led by `pair` and `baseline`."""
    base = compare.ok_rows(pair_view(run, baseline))
    frames = []
    for pair in run.pairs:
        if pair == baseline:
            continue
        table = compare.compare_cells(base, compare.ok_rows(pair_view(run, pair)))
        table = table.sort_values("cell", kind="stable").reset_index(drop=True)  # metrics stay in compare's order
        table["verdict"] = [_verdict(v, pair, baseline) for v in table["verdict"]]
        table["cell"] = [c.replace("(A: ", f"({baseline}: ").replace("; B: ", f"; {pair}: ") for c in table["cell"]]
        table.insert(0, "baseline", baseline)
        table.insert(0, "pair", pair)
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=["pair", "baseline", *compare.compare_cells(base.iloc[0:0], base.iloc[0:0]).columns])
    return pd.concat(frames, ignore_index=True)


def host_facts(run: RunData) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): one row per host fact, one column per pair; the key facts, then every other
    fact on which the pairs differ (NIC offloads included). The last column says whether they differ."""
    flat = {pair: {f"{role}.{k}": v for role in ROLES for k, v in flatten(run.pair_hosts.get(pair, {}).get(role, {})).items()}
            for pair in run.pairs}
    keys = list(dict.fromkeys(k for pair in run.pairs for k in flat[pair]))
    rows = []
    for key in keys:
        values = [flat[pair].get(key, "—") for pair in run.pairs]
        differs = len(set(values)) > 1
        if differs or key.split(".", 1)[1] in KEY_FACTS:
            rows.append([key, *values, "differs" if differs else ""])
    return ["fact", *run.pairs, ""], rows


def section(run: RunData, baseline: str, table: pd.DataFrame, requested: bool) -> str:
    """report.md's "Pairs compared" section: the baseline and why, the ratio table, the host facts."""
    why = ("chosen with `--baseline`" if requested else
           f"the first pair in {run.pair_order}; choose another with `orchestrate report RUN --baseline NAME`")
    lines = ["## Pairs compared", "",
             f"This run ran the same cells on {len(run.pairs)} host pairs: {', '.join(run.pairs)} ({run.pair_order}). "
             f"The baseline is **{baseline}** ({why}).", "",
             f"### Each pair against {baseline}", "",
             f"Per cell, throughput and the per-byte costs the hosts counted (metrics not counted are left out): "
             f"the baseline's and the pair's means ± the half-width of their 95% intervals, the ratio pair / "
             f"{baseline} with its 95% interval, and Welch's test, as `orchestrate compare` gives for two runs. "
             f"`{CSV_NAME}` has the same rows as plain numbers.", ""]
    if table.empty:
        lines += [f"No cell was measured on both {baseline} and another pair.", ""]
    else:
        rows = [[r["pair"], r["cell"], derive.METRICS[r["metric"]].label if r["metric"] in derive.METRICS else r["metric"],
                 compare.mean_ci_text(r, "a"), compare.mean_ci_text(r, "b"), compare.ratio_text(r),
                 "—" if pd.isna(r["p_value"]) else f"{r['p_value']:.3g}", r["verdict"]] for _, r in table.iterrows()]
        lines += [md_table(["pair", "cell", "metric", baseline, "pair's", f"pair / {baseline} [95% CI]",
                            "Welch p", "verdict"], rows), ""]
    headers, rows = host_facts(run)
    lines += ["### Host facts per pair", "",
              "What facts.py recorded on each pair's hosts, side by side: the main facts, and every other fact "
              "on which the pairs differ.", ""]
    lines += [md_table(headers, rows) if rows else "No host facts were recorded.", ""]
    return "\n".join(lines)
