"""iperf3 as a reference in the same run: `reference: iperf3` in an experiment, and the settings
at which iperf3 can run it.

For each message size and thread count of the stream cells (and each sender, nodelay and buffer
setting they vary), the plan gets an iperf3 cell with mode `iperf3`. It runs on the same two
hosts, through the same SSH sessions, gate, perf stat, warm-up and window as our agents (the
commands are run/iperf3.py's); its `-J` output becomes a row of the same results.csv schema
(rows/iperf3.py), and the report gives ours ÷ iperf3 per cell with a 95% interval
(report/iperf3.py). Each reference cell pairs with a one_copy cell at `fields: 1`, added to the
plan when the matrix lacks it; the report's headline ratio is that pair's at one stream.

This module takes the experiment's values, not the experiment: config.py's validator calls it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

MODE = "iperf3"
# What iperf3 pairs with at equal settings: one_copy makes one sendmsg per message, and at one
# field that is one buffer per call, as iperf3's one write of `-l` bytes. The run adds these cells
# when the matrix lacks them (paired_parameters), named with their fields (`...-fields=1-r1`).
PAIR_MODE, PAIR_FIELDS = "one_copy", 1
# The cell keys an iperf3 cell takes over from the stream cells it is the reference for; it
# always sends one buffer per write (fields 1).
KEYS = ("message_size", "threads", "sender", "nodelay", "sndbuf", "rcvbuf")
# iperf3's own limits (iperf 3.12 refuses beyond them): -l, -O, -i; -t and -O take whole seconds.
MAX_BLOCK = 1 << 20
MAX_OMIT = 600
MIN_INTERVAL, MAX_INTERVAL = 0.1, 60.0

# What a cell parameter takes: Experiment.dimension.
Dimension = Callable[[str], list]


def settings_problems(dimension: Dimension, duration: float, warmup: float) -> list[str]:
    """Why iperf3 could not run at the experiment's settings (config.py's validator)."""
    problems = []
    if "stream" not in dimension("workload"):
        problems.append("iperf3 is a reference for stream cells, and the experiment has none")
    for name, value, top in (("duration", duration, 86400), ("warmup", warmup, MAX_OMIT)):
        if value != int(value) or value > top:
            problems.append(f"iperf3 takes {name} in whole seconds up to {top} (-t, -O); {name} is {value:g}s")
    if max(dimension("message_size")) > MAX_BLOCK:
        problems.append(f"iperf3 writes at most {MAX_BLOCK} bytes per call (-l); use message sizes up to 1MiB")
    for sndbuf, rcvbuf in itertools.product(dimension("sndbuf"), dimension("rcvbuf")):
        if sndbuf != rcvbuf:
            problems.append("iperf3 sets both socket buffers to one value (-w): sndbuf and rcvbuf must be equal")
            break
    return problems


def cell_parameters(dimension: Dimension, reference: str | None) -> list[dict[str, Any]]:
    """The reference cells' parameters (plan.expand adds repetitions): one per combination of
    KEYS among the stream cells, each sending one buffer per write (fields 1)."""
    if reference != MODE or "stream" not in dimension("workload"):
        return []
    return [{"workload": "stream", "mode": MODE, "fields": 1, "receive": "copy", "uring_buffers": "plain", **dict(zip(KEYS, combo))}
            for combo in itertools.product(*(dimension(k) for k in KEYS))]


def matrix_has_pair(dimension: Dimension) -> bool:
    """Whether the matrix itself has the one_copy cells at one field that iperf3 pairs with."""
    return PAIR_MODE in dimension("mode") and PAIR_FIELDS in dimension("fields")


def paired_parameters(dimension: Dimension, reference: str | None) -> list[dict[str, Any]]:
    """The one_copy cells at `fields: 1` the run adds beside the reference cells, one per
    reference cell, when the matrix lacks them (plan.expand adds repetitions); else none."""
    if matrix_has_pair(dimension):
        return []
    return [{**params, "mode": PAIR_MODE, "fields": PAIR_FIELDS} for params in cell_parameters(dimension, reference)]


def is_added_pair(dimension: Dimension, reference: str | None, mode: object, fields: object) -> bool:
    """Whether a cell of a run is one the run added for iperf3 (not one of the matrix's cells)."""
    return (reference == MODE and mode == PAIR_MODE and fields == PAIR_FIELDS
            and bool(paired_parameters(dimension, reference)))
