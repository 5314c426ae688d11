"""Variant grouping: when a run varies a cell parameter beyond mode, size and threads, its
cells are read once per combination of those parameters (tables, plots and answers alike)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..experiment.dimensions import VARIANT_COLUMNS

if TYPE_CHECKING:  # the CLI reads VARIANT_COLUMNS without loading pandas
    import pandas as pd


def variants(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per combination of the varied extra parameters; one unlabelled group if none vary."""
    varied = [c for c in VARIANT_COLUMNS if c in summary and summary[c].nunique(dropna=False) > 1]
    if not varied:
        return [("", summary)]
    return [(", ".join(f"{k}={v}" for k, v in zip(varied, key)), group.reset_index(drop=True))
            for key, group in summary.groupby(varied, sort=True, dropna=False)]


def variant_folder(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", label)
