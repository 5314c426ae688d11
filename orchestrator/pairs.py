"""One run on several host pairs (issue 13): each pair against a baseline pair, cell by cell, and
the host facts that set the pairs apart.

The per-cell comparison is `compare`'s own (compare.compare_cells: means with 95% intervals, the
ratio with its interval, Welch's test), applied to the baseline pair as A and each other pair as B.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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


def check_baseline(requested: str | None, pairs: Sequence[str]) -> None:
    """`--baseline NAME` must name one of the run's pairs: checked by `run` before any cell, and by
    the report."""
    if requested is not None and requested not in pairs:
        raise ConfigError(f"--baseline {requested!r}: this run has no such pair; its pairs are {', '.join(pairs)}")


def baseline_pair(run: RunData, requested: str | None = None) -> str:
    """The pair the others are divided by: `requested` (`--baseline NAME`), else the run's first pair."""
    check_baseline(requested, run.pairs)
    return run.pairs[0] if requested is None else requested


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


def glance(table: pd.DataFrame) -> pd.DataFrame:
    """The ratio table in one row per (pair, metric): over the cells both measured, the geometric
    mean of pair / baseline (ratios average on a log scale: 2x and 0.5x cancel) with the smallest
    and largest, and how many cells Welch's test calls better, worse, or no clear difference; the
    rest had too few repetitions, or counts that cannot be compared."""
    rows = []
    for (pair, metric), group in table.groupby(["pair", "metric"], sort=False):
        ratios = group["ratio"].astype(float)
        ratios = ratios[ratios > 0]
        verdicts = group["verdict"].astype(str)
        rows.append({
            "pair": pair, "metric": metric, "cells": len(group),
            "geomean_ratio": float(np.exp(np.log(ratios).mean())) if len(ratios) else float("nan"),
            "min_ratio": float(ratios.min()) if len(ratios) else float("nan"),
            "max_ratio": float(ratios.max()) if len(ratios) else float("nan"),
            "better": int(verdicts.str.startswith("better than").sum()),
            "worse": int(verdicts.str.startswith("worse than").sum()),
            "no_clear_difference": int(verdicts.str.startswith("no clear difference").sum()),
        })
    frame = pd.DataFrame(rows, columns=["pair", "metric", "cells", "geomean_ratio", "min_ratio", "max_ratio",
                                        "better", "worse", "no_clear_difference"])
    frame["undecided"] = frame["cells"] - frame["better"] - frame["worse"] - frame["no_clear_difference"]
    return frame


def missing_pairs(run: RunData) -> list[str]:
    """Pairs the run's inventory names that have no row in results.csv: they failed before their
    first cell (preflight, an unreachable host), so the report says so instead of leaving them out."""
    named = run.inventory.get("pairs") if isinstance(run.inventory.get("pairs"), dict) else {}
    return [str(p) for p in named if str(p) not in run.pairs]


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


@dataclass(frozen=True)
class Section:
    """The "Pairs compared" section in its three parts: the answer (baseline, missing pairs, the
    table at a glance), the host facts side by side, and the per-cell detail, which report.html
    folds away (it has a row per pair, cell and metric)."""

    head: str
    facts: str
    detail_title: str
    detail: str

    def markdown(self) -> str:
        return "\n".join([self.head, self.facts, f"### {self.detail_title}", "", self.detail])


def section(run: RunData, baseline: str, table: pd.DataFrame, requested: bool) -> Section:
    """The "Pairs compared" section: the baseline and why, the pairs at a glance, the host facts,
    and the ratio table cell by cell (report.md gives all three in that order)."""
    why = ("chosen with `--baseline`" if requested else
           f"the first pair in {run.pair_order}; choose another with `orchestrate report RUN --baseline NAME`")
    head = ["## Pairs compared", "",
            f"This run ran the same cells on {len(run.pairs)} host pairs: {', '.join(run.pairs)} ({run.pair_order}). "
            f"The baseline is **{baseline}** ({why}).", ""]
    missing = missing_pairs(run)
    if missing:
        head += [f"The inventory also named {', '.join(missing)}: no cell of {'it' if len(missing) == 1 else 'theirs'} "
                 f"was measured (the pair failed before its first cell; `run.log` says why, and "
                 f"`orchestrate run --resume {run.path.name}` runs it once its hosts are back).", ""]
    summary = glance(table)
    if not summary.empty:
        def ratio(value: float) -> str:
            return "—" if pd.isna(value) else f"{value:.3g}"

        rows = [[r["pair"], _label(r["metric"]), str(r["cells"]), ratio(r["geomean_ratio"]),
                 f"{ratio(r['min_ratio'])} – {ratio(r['max_ratio'])}",
                 str(r["better"]), str(r["worse"]), str(r["no_clear_difference"]), str(r["undecided"])]
                for _, r in summary.iterrows()]
        head += ["### At a glance", "",
                 f"Per pair and metric, over the cells measured on both: the geometric mean of pair / {baseline} "
                 f"and its range, and how many cells Welch's test (p < 0.05, as cell by cell below) calls better or "
                 f"worse than {baseline}; \"undecided\" cells had too few repetitions or counts that cannot be compared.",
                 "", md_table(["pair", "metric", "cells", f"geomean pair / {baseline}", "range", "better", "worse",
                               "no clear difference", "undecided"], rows), ""]
    headers, rows = host_facts(run)
    facts = ["### Host facts per pair", "",
             "What facts.py recorded on each pair's hosts, side by side: the main facts, and every other fact "
             "on which the pairs differ.", "",
             md_table(headers, rows) if rows else "No host facts were recorded.", ""]
    detail = [f"Per cell, throughput and the per-byte costs the hosts counted (metrics not counted are left out): "
              f"the baseline's and the pair's means ± the half-width of their 95% intervals, the ratio pair / "
              f"{baseline} with its 95% interval, and Welch's test, as `orchestrate compare` gives for two runs. "
              f"`{CSV_NAME}` has the same rows as plain numbers.", ""]
    if table.empty:
        detail += [f"No cell was measured on both {baseline} and another pair.", ""]
    else:
        rows = [[r["pair"], r["cell"], _label(r["metric"]), compare.mean_ci_text(r, "a"), compare.mean_ci_text(r, "b"),
                 compare.ratio_text(r), "—" if pd.isna(r["p_value"]) else f"{r['p_value']:.3g}", r["verdict"]]
                for _, r in table.iterrows()]
        detail += [md_table(["pair", "cell", "metric", baseline, "pair's", f"pair / {baseline} [95% CI]",
                             "Welch p", "verdict"], rows), ""]
    return Section("\n".join(head), "\n".join(facts), f"Each pair against {baseline}, cell by cell", "\n".join(detail))


def _label(metric: str) -> str:
    return derive.METRICS[metric].label if metric in derive.METRICS else metric
