"""Numbers and markdown tables as the report prints them: significant figures, a mean with
its 95% interval, message sizes, and "not counted" where a host had no counter."""

from __future__ import annotations

import math

import pandas as pd

from ..experiment.units import format_size

NOT_COUNTED = "not counted"


def num(value: float, digits: int = 3) -> str:
    """`digits` significant figures, with thousands separators rather than exponents."""
    if value is None or pd.isna(value):
        return "—"
    if value == 0:
        return "0"
    if abs(value) >= 1e12 or abs(value) < 1e-3:
        return f"{value:.{digits}g}"
    places = digits - 1 - int(math.floor(math.log10(abs(value))))
    return f"{round(value, places):,.{max(0, places)}f}"


def with_ci(row: pd.Series, metric: str, digits: int = 3) -> str:
    mean = row.get(f"{metric}_mean", math.nan)
    if pd.isna(mean):
        return "—"
    low, high = row.get(f"{metric}_ci_low", math.nan), row.get(f"{metric}_ci_high", math.nan)
    if pd.isna(low):
        return f"{num(mean, digits)} (n=1)" if row.get(f"{metric}_n", 0) == 1 else num(mean, digits)
    return f"{num(mean, digits)} ± {num((high - low) / 2, 2)}"


def is_counted(summary: pd.DataFrame, metric: str) -> bool:
    column = f"{metric}_mean"
    return column in summary.columns and summary[column].notna().any()


def cell_value(summary: pd.DataFrame, row: pd.Series, metric: str, digits: int = 3) -> str:
    return with_ci(row, metric, digits) if is_counted(summary, metric) else NOT_COUNTED


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    def clean(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(clean(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def size_text(value: float) -> str:
    return format_size(int(value))


def sizes_text(sizes: list[int]) -> str:
    return ", ".join(size_text(s) for s in sizes)
