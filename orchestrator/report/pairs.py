"""One run on several host pairs: each pair against a baseline pair, cell by cell, and
the host facts that set the pairs apart. The analysis only: markdown.py words it for report.md.

The per-cell comparison is `compare`'s own (compare.compare_cells: means with 95% intervals, the
ratio with its interval from Welch's t on the log values, which decides the verdict), applied to the baseline pair as A and each other pair as B.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import compare
from ..errors import ConfigError
from ..roles import ROLES
from .runfolder import RunData, flatten, pair_view

# Facts a reader compares pairs by first (facts.py's names); shown even where the pairs agree.
KEY_FACTS = ("cpu_model", "cores", "kernel", "nic.interface", "nic.driver", "nic.driver_version", "nic.firmware",
             "nic.speed", "nic.mtu")
# Facts that say where a pair ran, not what it is (another host, address or folder): they differ
# between any two pairs, so they are listed apart and never called a difference. Besides these,
# any fact named like a path or folder (`..._path`, `..._dir`, `workdir`) is one.
IDENTITY_FACTS = ("hostname", "ssh_target", "data_address", "nic.addresses", "agent_path")


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


def ratio_table(run: RunData, baseline: str) -> pd.DataFrame:
    """One row per (pair other than the baseline, cell, metric) that both measured; compare's columns
    (`a_*` the baseline, `b_*` the pair, `ratio` = pair / baseline), led by `pair` and `baseline`."""
    base = compare.ok_rows(pair_view(run, baseline))
    frames = []
    for pair in run.pairs:
        if pair == baseline:
            continue
        # The baseline is side A, the pair on the row side B: compare words its verdicts and notes with their names.
        table = compare.compare_cells(base, compare.ok_rows(pair_view(run, pair)), baseline, pair)
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
            "better": int(verdicts.str.startswith(compare.better_verdict(pair)).sum()),
            "worse": int(verdicts.str.startswith(compare.worse_verdict(pair)).sum()),
            "no_clear_difference": int(verdicts.str.startswith(compare.NO_CLEAR_DIFFERENCE).sum()),
        })
    frame = pd.DataFrame(rows, columns=["pair", "metric", "cells", "geomean_ratio", "min_ratio", "max_ratio",
                                        "better", "worse", "no_clear_difference"])
    frame["undecided"] = frame["cells"] - frame["better"] - frame["worse"] - frame["no_clear_difference"]
    return frame


def missing_pairs(run: RunData) -> list[str]:
    """Pairs the run's inventory names that have no row in results.csv: they failed before finishing
    any cell (preflight, an unreachable host, a crash in the first cell), so the report says so
    instead of leaving them out."""
    named = run.inventory.get("pairs") if isinstance(run.inventory.get("pairs"), dict) else {}
    return [str(p) for p in named if str(p) not in run.pairs]


def is_identity_fact(name: str) -> bool:
    """Whether a host fact (named without its role: `nic.mtu`) says where a pair ran."""
    last = name.rsplit(".", 1)[-1]
    return name in IDENTITY_FACTS or last == "workdir" or last.endswith(("_path", "_dir"))


def _flat_facts(run: RunData) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Each pair's host facts as `role.fact` keys, and every key in the order first recorded."""
    flat = {pair: {f"{role}.{k}": v for role in ROLES for k, v in flatten(run.pair_hosts.get(pair, {}).get(role, {})).items()}
            for pair in run.pairs}
    return flat, list(dict.fromkeys(k for pair in run.pairs for k in flat[pair]))


def host_facts(run: RunData) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): one row per host fact of the hardware, software or settings, one column per
    pair; the key facts, then every other fact on which the pairs differ (NIC offloads included).
    The last column says whether they differ. Identity facts are `where_facts`'."""
    flat, keys = _flat_facts(run)
    rows = []
    for key in keys:
        name = key.split(".", 1)[1]
        if is_identity_fact(name):
            continue
        values = [flat[pair].get(key, "—") for pair in run.pairs]
        differs = len(set(values)) > 1
        if differs or name in KEY_FACTS:
            rows.append([key, *values, "differs" if differs else ""])
    return ["fact", *run.pairs, ""], rows


def where_facts(run: RunData) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): the identity facts (IDENTITY_FACTS, paths) recorded, one column per pair."""
    flat, keys = _flat_facts(run)
    return ["fact", *run.pairs], [[key, *(flat[pair].get(key, "—") for pair in run.pairs)]
                                  for key in keys if is_identity_fact(key.split(".", 1)[1])]
