"""Statistics over repetitions: mean, spread, Student-t confidence intervals, and ratios."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special  # Student's t from scipy.special: scipy.stats costs a second more to import

from . import derive
from ..experiment import dimensions
from ..rows import zerocopy
from ..roles import ROLES

CONFIDENCE = 0.95
# Repetitions that disagree by more than this coefficient of variation flag their cell.
CV_THRESHOLD = 0.10

# The columns that name a cell apart from its repetition, in the order tables list them.
CELL_COLUMNS = dimensions.CELL_COLUMNS

_REPETITION = re.compile(r"-r\d+(?=-|\Z)")


@dataclass(frozen=True)
class Estimate:
    """The mean of n repetitions with its sample standard deviation and Student-t interval.

    With fewer than two values there is no spread to estimate: std, the interval and the
    coefficient of variation are NaN, never 0.
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2

    @property
    def cv(self) -> float:
        if self.n < 2 or self.mean == 0 or math.isnan(self.mean):
            return math.nan
        return self.std / abs(self.mean)


def _present(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


def estimate(values: Iterable[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean and a two-sided Student-t interval over the non-missing values."""
    data = np.asarray(_present(values), dtype=float)
    n = len(data)
    if n == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if n == 1:
        return Estimate(1, mean, math.nan, math.nan, math.nan)
    std = float(data.std(ddof=1))
    half = float(special.stdtrit(n - 1, (1 + confidence) / 2)) * std / math.sqrt(n)
    return Estimate(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Ratio:
    """B over A with its confidence interval, both from one statistic: Welch's t on the log values.

    `ratio` is the ratio of the geometric means (exp of the mean log difference), the centre of the
    interval; `p_value` is the same test's, so `differs()` (the interval excludes 1) and p < 0.05
    always agree. Without an interval (a side with one value, or a value that is not positive) the
    ratio is that of the plain means and nothing can be told.
    """

    ratio: float
    ci_low: float
    ci_high: float
    p_value: float

    def differs(self) -> bool:
        """Whether the interval excludes 1 (never, where there is no interval)."""
        return not math.isnan(self.ci_low) and (self.ci_low > 1 or self.ci_high < 1)


def ratio(a_values: Iterable[float], b_values: Iterable[float], confidence: float = CONFIDENCE) -> Ratio:
    """B / A from Welch's t-test on log(B) and log(A) (scipy's, with its Welch-Satterthwaite degrees
    of freedom): the interval is exp of the test's own interval for the mean log difference, so a
    ratio of several times whose interval excludes 1 is never called "no clear difference".

    The log scale keeps the interval positive and symmetric in "times faster/slower".
    """
    a_data, b_data = _present(a_values), _present(b_values)
    a, b = estimate(a_data), estimate(b_data)
    plain = b.mean / a.mean if a.n and b.n and a.mean != 0 else math.nan
    if a.n < 2 or b.n < 2 or min(a_data + b_data) <= 0:
        return Ratio(plain, math.nan, math.nan, math.nan)
    log_a, log_b = np.log(a_data), np.log(b_data)
    centre = math.exp(float(log_b.mean() - log_a.mean()))
    if log_a.std() == 0 and log_b.std() == 0:
        # Identical repetitions on each side: no spread, so the interval is the point.
        return Ratio(centre, centre, centre, 1.0 if centre == 1 else 0.0)
    difference, se, dof = welch(log_a, log_b)
    t = float(special.stdtrit(dof, (1 + confidence) / 2))
    p_value = float(2 * special.stdtr(dof, -abs(difference) / se))
    return Ratio(centre, math.exp(difference - t * se), math.exp(difference + t * se), p_value)


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Welch's t on two samples: mean(b) - mean(a), its standard error and the
    Welch-Satterthwaite degrees of freedom; what scipy.stats.ttest_ind(equal_var=False) uses,
    written out because scipy.stats costs a second to import."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(b.mean() - a.mean()), math.sqrt(va + vb), float(dof)


def cell_key(cell_id: str) -> str:
    """The cell id without its repetition: `stream-one_copy-65536B-4t-r2` -> `stream-one_copy-65536B-4t`."""
    return _REPETITION.sub("", cell_id, count=1)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per pair and cell over its repetitions (results.csv rows, derived or not); a run
    on one pair has one row per cell, its `pair` "default".

    Per metric: `<metric>_mean`, `_std`, `_ci_low`, `_ci_high`, `_cv` and `_n` (repetitions
    that measured it); per perf-counter metric also `<metric>_perf_counts` (`user` when any side
    it adds up counted user space only), beside the cell's `server_perf_counts`/`client_perf_counts`. Failed and degraded repetitions are left out of every statistic and
    counted in `failed` and `degraded`. `unstable` marks a cell whose primary metric varies by more than 10%.
    """
    derived = derive.derive_metrics(results)
    derived = dimensions.with_pair(derived.assign(cell=derived["cell_id"].astype(str).map(cell_key)))
    rows: list[dict[str, object]] = []
    # The same cell on two pairs is two rows: pairs are compared, never pooled.
    for (_, cell), group in derived.groupby(["pair", "cell"], sort=False):
        first = group.iloc[0]
        ok = group[group["status"].astype(str) == "ok"]
        row: dict[str, object] = {"cell": cell}
        for name in dimensions.SUMMARY_KEYS:
            if name in group.columns:
                row[name] = first[name]
        row["repetitions"] = len(group)
        row["ok"] = len(ok)
        # degraded: measured, but the checks doubt it (docs/results-schema.md); left out like failed.
        row["degraded"] = int((group["status"].astype(str) == "degraded").sum())
        row["failed"] = len(group) - len(ok) - row["degraded"]
        row["errors"] = "; ".join(sorted({str(e) for e in group.loc[group["status"] != "ok", "error"].dropna()})) if "error" in group else ""
        unstable: list[str] = []
        # What perf counted (results.csv `<role>_perf_counts`), and so what each counter metric
        # covers: `user` marks a user-space-only count, never to be read as a whole one.
        for role in ROLES:
            if f"{role}_perf_counts" in group.columns:
                row[f"{role}_perf_counts"] = derive.combine_counts(ok[f"{role}_perf_counts"].tolist())
        for metric in derive.COUNTER_METRICS:
            row[f"{metric}_perf_counts"] = derive.combine_counts(ok[f"{metric}_perf_counts"].tolist())
        for metric in derive.METRICS:
            est = estimate(ok[metric].tolist())
            row[f"{metric}_mean"] = est.mean
            row[f"{metric}_std"] = est.std
            row[f"{metric}_ci_low"] = est.ci_low
            row[f"{metric}_ci_high"] = est.ci_high
            row[f"{metric}_cv"] = est.cv
            row[f"{metric}_n"] = est.n
            if not math.isnan(est.cv) and est.cv > CV_THRESHOLD and metric != "zerocopy_copied_fraction":
                unstable.append(metric)
        # The worst repetition decides: one copied repetition is enough to doubt the cell.
        copied = ok["zerocopy_copied_fraction"].max() if len(ok) else math.nan
        row["zerocopy_copied_fraction_max"] = copied
        # The receive side's worst repetition, likewise: one unmapped repetition doubts the cell.
        has = "receive_mapped_fraction" in ok.columns and len(ok)
        row["receive_mapped_fraction_min"] = ok["receive_mapped_fraction"].min() if has else math.nan
        row["tcp_pmtu_min"] = ok["tcp_pmtu"].min() if "tcp_pmtu" in ok.columns and len(ok) else math.nan
        row["mode_label"] = zerocopy.label(str(first["mode"]), copied)
        row["copied"] = zerocopy.copying(str(first["mode"]), copied) is zerocopy.Copying.COPIED
        row["unstable"] = any(m in derive.PRIMARY_METRICS for m in unstable)
        row["unstable_metrics"] = " ".join(unstable)
        rows.append(row)
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    order = [c for c in (*dimensions.PAIR, *dimensions.BASIC) if c in summary.columns]
    return summary.sort_values(
        order, kind="stable", key=lambda col: col.map(derive.mode_rank) if col.name == "mode" else col
    ).reset_index(drop=True)
