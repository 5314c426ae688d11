"""The columns that name a cell, stated once: the matrix keys, the summary's and results.csv's
identity columns, and what a reader of results.csv requires are all made from these.

Each column comes with the type results.csv holds it as (`results.read_results` types it so).
It imports nothing from the package, so any module may use it.
"""

from __future__ import annotations

# Every cell has these, and its id always names them (plan.Cell.cell_id); every results.csv
# has had them, so a reader can require them.
BASIC: dict[str, type] = {"workload": str, "mode": str, "message_size": int, "threads": int}
# The other per-cell parameters; a cell id names one only when the matrix varies it.
OPTIONS: dict[str, type] = {"fields": int, "sender": str, "nodelay": bool, "sndbuf": int, "rcvbuf": int,
                           "receive": str, "uring_buffers": str}
# Not a matrix key, but recorded in each row because it changes what the counts mean.
RECORDED: dict[str, type] = {"perf_scope": str}
# What tells one results.csv row from another beyond the cell's parameters.
RUN_AND_CELL: dict[str, type] = {"run_id": str, "cell_id": str}
# The host pair a row ran on: not a matrix key (every pair runs the same cells), but it tells rows
# apart. A file written before pairs existed has no such column and means this pair, which is also
# the name of the one pair of an inventory with one server and one client.
PAIR: dict[str, type] = {"pair": str}
DEFAULT_PAIR = "default"
REPETITION: dict[str, type] = {"repetition": int}

# The matrix keys (config.Matrix), in the order cell ids and tables list them.
CELL_KEYS = (*BASIC, *OPTIONS)
# What names a cell apart from its repetition and its pair (one summary row per pair and cell).
CELL_COLUMNS = (*CELL_KEYS, *RECORDED)
# What names one summary row: the pair, then the cell.
SUMMARY_KEYS = (*PAIR, *CELL_COLUMNS)
# The parameters beyond workload, mode, size and threads: when a run varies one, tables, plots
# and answers are given once per combination, since comparing modes across them would mix cells.
VARIANT_COLUMNS = (*OPTIONS, *RECORDED)
# results.csv's first columns, in file order, with their types.
IDENTITY_TYPES: dict[str, type] = {**RUN_AND_CELL, **PAIR, **BASIC, **REPETITION, **OPTIONS, **RECORDED}
IDENTITY_COLUMNS = tuple(IDENTITY_TYPES)
# What every analysis step needs of a results.csv row; the options and the pair came later, so
# older files may lack them (a missing pair reads as DEFAULT_PAIR: `with_pair`).
REQUIRED_COLUMNS = ("cell_id", *BASIC, *REPETITION, "status")


def identity_columns_of(kind: type) -> frozenset[str]:
    """The identity columns results.csv holds as `kind` (int, str or bool)."""
    return frozenset(name for name, held_as in IDENTITY_TYPES.items() if held_as is kind)


def with_pair(frame):
    """results.csv or intervals.csv rows with a `pair` column: rows of a file from before pairs
    existed (no such column, or an empty value) ran on the one pair, DEFAULT_PAIR."""
    if "pair" not in frame.columns:
        position = list(frame.columns).index("cell_id") + 1 if "cell_id" in frame.columns else 0
        frame = frame.copy()
        frame.insert(position, "pair", DEFAULT_PAIR)
        frame["pair"] = frame["pair"].astype("string")
        return frame
    if frame["pair"].isna().any():
        frame = frame.assign(pair=frame["pair"].fillna(DEFAULT_PAIR))
    return frame
