"""`orchestrate compare RUN_A RUN_B`: the same cells of two runs side by side.

Meant for reproducing a lab run on new hardware: first what changed between the two runs' hosts
(ranked by how much it matters to the study, changes.py) and what moved; then per cell and metric,
both means with their intervals and the ratio B/A with its 95% interval from Welch's t on the log
values, whose interval alone decides the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import ceiling, changes, derive, plots, stats
from ..experiment.units import format_size
from ..rows import layout, zerocopy
from ..rows.durable import write_atomic
from ..errors import ConfigError, NoCommonCells
from ..experiment.plan import load_plan
from .runfolder import RunData, load_run, pair_view

if TYPE_CHECKING:  # matplotlib is loaded when the plot is drawn: `orchestrate report` imports this module
    from matplotlib.figure import Figure

COMPARED_METRICS = (
    "throughput_gbps",
    "cpu_s_per_gb",
    "cycles_per_byte",
    "transactions_per_s",
    "latency_p50_us",
    "latency_p99_us",
)


@dataclass
class Comparison:
    run_a: str
    run_b: str
    # One row per cell and metric that both runs measured, in the experiment's order.
    table: pd.DataFrame
    config_differences: list[str]
    host_differences: list[str] = field(default_factory=list)  # the ranked changes, as text
    unknown_facts: list[str] = field(default_factory=list)  # host facts one side could not read: not compared
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    plot_paths: list[Path] = field(default_factory=list)
    out_dir: Path | None = None
    # The host pair of each run compared, when that run ran on several (else None: its only pair).
    pair_a: str | None = None
    pair_b: str | None = None
    changes: list[changes.Change] = field(default_factory=list)  # host facts then config, ranked
    identity: list[str] = field(default_factory=list)  # facts that name where each ran: noise

    @property
    def label_a(self) -> str:
        return self.run_a if self.pair_a is None else f"{self.run_a} (pair {self.pair_a})"

    @property
    def label_b(self) -> str:
        return self.run_b if self.pair_b is None else f"{self.run_b} (pair {self.pair_b})"

    def files(self) -> list[Path]:
        """What was written: compare.md, compare.csv and the plot, all in out_dir."""
        assert self.out_dir is not None
        return [self.out_dir / layout.COMPARE_MD, self.out_dir / layout.COMPARE_CSV, *self.plot_paths]

    def text_rows(self) -> list[list[str]]:
        """The table as people read it: cell, note, metric, A, B, B/A with its interval, verdict."""
        return [[row["cell_id"], row["note"], row["metric"], mean_ci_text(row, "a"), mean_ci_text(row, "b"),
                 ratio_text(row), row["verdict"]]
                for _, row in self.table.iterrows()]

    def difference_sections(self) -> list[tuple[str, list[str]]]:
        return [("Cells only in A", self.only_in_a), ("Cells only in B", self.only_in_b)]

    def what_changed(self) -> list[str]:
        lines = ["## What changed", ""]
        if not self.changes:
            lines += ["Nothing that describes the hosts or the experiment: no host fact and no setting differs.", ""]
        else:
            lines += ["Ranked by how much each matters to a study of data copies: the link first, then the CPU, "
                      "the kernel and its settings, how perf counted, the account, the versions, other offloads; "
                      "then the experiment's own settings.", ""]
            for group, entries in changes.grouped(self.changes):
                lines += [f"**{group}**", "", *(f"- {entry.text()}" for entry in entries), ""]
        for title, entries in ((f"Where each ran ({len(self.identity)} host names, addresses, paths and hashes: "
                                "they name the hosts, not what they are)", self.identity),
                               (f"Host facts unknown on one side, so not compared ({len(self.unknown_facts)})",
                                self.unknown_facts)):
            if entries:
                lines += ["<details>", f"<summary>{title}</summary>", "", *(f"- {e}" for e in entries), "",
                          "</details>", ""]
        return lines

    def what_moved(self) -> list[str]:
        lines = ["## What moved", ""]
        counts = moved_counts(self.table)
        if counts.empty:
            return lines + ["No metric was measured in both runs.", ""]
        lines += ["Per metric, the cells whose 95% interval of B/A lies wholly above or below 1 (better or worse "
                  "for B), the cells whose interval holds 1 (no clear difference), and those with no interval.", ""]
        lines += [_markdown_table(["metric", "cells", "B better", "B worse", "no clear difference", "cannot tell"],
                                  [[derive.METRICS[r.metric].label if r.metric in derive.METRICS else r.metric,
                                    r.cells, r.better, r.worse, r.same, r.undecided] for r in counts.itertuples()]), ""]
        largest = largest_changes(self.table)
        if largest:
            lines += ["The largest changes:", "", *(f"- {sentence}" for sentence in largest), ""]
        else:
            lines += ["No cell changed beyond its noise.", ""]
        return lines

    def markdown(self) -> str:
        lines = [f"# B = {self.label_b} vs A = {self.label_a}", ""]
        lines += self.what_changed()
        lines += self.what_moved()
        lines += ["## Cell by cell", "",
                  "Per cell (in the experiment's order) and metric: both means ± the half-width of their 95% "
                  "intervals, and B/A with its 95% interval from Welch's t on the log values (the ratio of the "
                  "geometric means). The verdict is that interval's: better or worse when it excludes 1. "
                  "compare.csv has the same rows as plain numbers, with `cell_id` as in results.csv (without "
                  "the repetition).", ""]
        lines.append(_markdown_table(TEXT_COLUMNS, self.text_rows()))
        lines.append("")
        for title, entries in self.difference_sections():
            if entries:
                lines += [f"## {title}", "", *(f"- {entry}" for entry in entries), ""]
        if self.plot_paths:
            lines += ["## Plot", "", f"![Throughput ratio B/A]({self.plot_paths[0].name})", ""]
        return "\n".join(lines)


TEXT_COLUMNS = ["cell", "note", "metric", "A", "B", "B/A [95% CI]", "verdict"]


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    def clean(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows])


def _fmt(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.3g}"


def mean_ci_text(row: pd.Series, side: str) -> str:
    mean, low, high = row[f"{side}_mean"], row[f"{side}_ci_low"], row[f"{side}_ci_high"]
    if pd.isna(low):
        return f"{_fmt(mean)} (n={int(row[f'{side}_n'])})"
    return f"{_fmt(mean)} ± {_fmt((high - low) / 2)}"


def ratio_text(row: pd.Series) -> str:
    if pd.isna(row["ratio_ci_low"]):
        return f"{_fmt(row['ratio'])}"
    return f"{_fmt(row['ratio'])} [{_fmt(row['ratio_ci_low'])}, {_fmt(row['ratio_ci_high'])}]"


NO_CLEAR_DIFFERENCE = "no clear difference"
TOO_FEW = "too few repetitions to tell"
NO_INTERVAL = "cannot tell: a value is zero or negative"


def better_verdict(label_b: str = "B") -> str:
    """The verdict of a cell where side B measured better: B/A's interval excludes 1 on B's good side."""
    return f"{label_b} better"


def worse_verdict(label_b: str = "B") -> str:
    return f"{label_b} worse"


def _verdict(metric: str, result: stats.Ratio, a_n: int, b_n: int, label_b: str) -> str:
    """The interval's verdict, and nothing else's: better or worse exactly when it excludes 1."""
    if a_n < 2 or b_n < 2:
        return TOO_FEW
    if np.isnan(result.ci_low):
        return NO_INTERVAL
    if not result.differs():
        return NO_CLEAR_DIFFERENCE
    better = (result.ratio > 1) == derive.METRICS[metric].higher_is_better
    return better_verdict(label_b) if better else worse_verdict(label_b)


CELL_DIMENSIONS = ("workload", "mode", "message_size", "threads")
TABLE_COLUMNS = ["cell_id", "note", *CELL_DIMENSIONS, "metric",
                 "a_n", "a_mean", "a_ci_low", "a_ci_high", "b_n", "b_mean", "b_ci_low", "b_ci_high",
                 "ratio", "ratio_ci_low", "ratio_ci_high", "p_value", "verdict"]


def compare_cells(a: pd.DataFrame, b: pd.DataFrame, label_a: str = "A", label_b: str = "B") -> pd.DataFrame:
    """Per cell both sides measured, per COMPARED_METRICS: both means with their intervals, B/A with
    its interval and the p-value of the same test (stats.ratio), and the interval's verdict. `a` and
    `b` are `ok_rows`; used for two runs here, and for each pair against the baseline pair of one run
    (pairs.py). Rows come in the experiment's order (workload, mode, size, threads); `cell_id` is
    results.csv's without the repetition, and `note` says what sets the cell apart on one side (a
    zero_copy cell one kernel copied). The verdicts and notes name the sides `label_a` and `label_b`."""
    rows = []
    a_cells, b_cells = a.groupby("cell", sort=False), dict(tuple(b.groupby("cell", sort=False)))
    for cell, group_a in a_cells:
        group_b = b_cells.get(cell)
        if group_b is None:
            continue
        # A zero_copy cell that one run's kernel copied is not the same technique as one it did not.
        mode_a, mode_b = _mode_label(group_a), _mode_label(group_b)
        if mode_a != mode_b:
            note = f"{label_a}: {mode_a}; {label_b}: {mode_b}"
        else:
            note = "" if mode_a == group_a["mode"].iloc[0] else f"both: {mode_a}"
        first = group_a.iloc[0]
        for metric in COMPARED_METRICS:
            values_a = group_a[metric].dropna().tolist()
            values_b = group_b[metric].dropna().tolist()
            if not values_a or not values_b:
                continue
            est_a, est_b = stats.estimate(values_a), stats.estimate(values_b)
            result = stats.ratio(values_a, values_b)
            verdict = _verdict(metric, result, est_a.n, est_b.n, label_b)
            if metric in derive.COUNTER_METRICS:
                counts_a, counts_b = _counts(group_a, metric), _counts(group_b, metric)
                if (counts_a == derive.USER_ONLY) != (counts_b == derive.USER_ONLY):
                    # A user-space-only count beside a whole one: the ratio would measure the kernel's share.
                    verdict = f"not comparable: {label_a} counted {_covers(counts_a)}, {label_b} {_covers(counts_b)}"
                    result = stats.Ratio(float("nan"), float("nan"), float("nan"), float("nan"))
                elif counts_a == derive.USER_ONLY:
                    verdict += " (both counted user space only)"
            rows.append({
                "cell_id": cell, "note": note, **{k: first[k] for k in CELL_DIMENSIONS}, "metric": metric,
                "a_n": est_a.n, "a_mean": est_a.mean, "a_ci_low": est_a.ci_low, "a_ci_high": est_a.ci_high,
                "b_n": est_b.n, "b_mean": est_b.mean, "b_ci_low": est_b.ci_low, "b_ci_high": est_b.ci_high,
                "ratio": result.ratio, "ratio_ci_low": result.ci_low, "ratio_ci_high": result.ci_high,
                "p_value": result.p_value, "verdict": verdict,
            })
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if table.empty:
        return table
    order = {metric: i for i, metric in enumerate(COMPARED_METRICS)}
    keys = {"mode": derive.mode_rank, "metric": order.get}
    return table.sort_values(["workload", "mode", "message_size", "threads", "cell_id", "metric"], kind="stable",
                             key=lambda col: col.map(keys[col.name]) if col.name in keys else col
                             ).reset_index(drop=True)


def _at_the_link(table: pd.DataFrame, a: RunData, b: RunData) -> pd.DataFrame:
    """Each cell's note names a side whose throughput sat at its link's ceiling (ceiling.py): a change
    there says how fast the link was, not what the copies cost."""
    if table.empty:
        return table
    held = {side: ceiling.bounded_cells(run, run.summary) for side, run in (("A", a), ("B", b))}
    notes = []
    for _, row in table.iterrows():
        parts = [str(row["note"])] if row["note"] else []
        parts += [f"{side} at its link's ceiling, {held[side][row['cell_id']].text()}"
                  for side in ("A", "B") if row["cell_id"] in held[side]]
        notes.append("; ".join(parts))
    return table.assign(note=notes)


def moved_counts(table: pd.DataFrame, label_b: str = "B") -> pd.DataFrame:
    """Per metric (COMPARED_METRICS' order): how many cells B/A's interval calls better, worse or no
    clear difference, and how many it cannot tell (too few repetitions, counts not comparable)."""
    rows = []
    for metric in COMPARED_METRICS:
        verdicts = table.loc[table["metric"] == metric, "verdict"].astype(str)
        if verdicts.empty:
            continue
        better = int(verdicts.str.startswith(better_verdict(label_b)).sum())
        worse = int(verdicts.str.startswith(worse_verdict(label_b)).sum())
        same = int(verdicts.str.startswith(NO_CLEAR_DIFFERENCE).sum())
        rows.append({"metric": metric, "cells": len(verdicts), "better": better, "worse": worse, "same": same,
                     "undecided": len(verdicts) - better - worse - same})
    return pd.DataFrame(rows, columns=["metric", "cells", "better", "worse", "same", "undecided"])


def short_label(row: pd.Series, workloads: int = 1) -> str:
    """`two_copy 64KiB ×1` (with the workload when the table has several, and the options the cell
    varies beyond these as its id spells them: `sender=client nodelay=false`)."""
    basic = f"{row['mode']} {format_size(int(row['message_size']))} ×{int(row['threads'])}"
    options = str(row["cell_id"]).split(f"-{int(row['threads'])}t", 1)[-1].lstrip("-").replace("-", " ")
    return " ".join(p for p in ((str(row["workload"]) if workloads > 1 else ""), basic, options) if p)


def largest_changes(table: pd.DataFrame, count: int = 5, label_b: str = "B") -> list[str]:
    """One sentence each for the `count` cells and metrics that changed most (by |log B/A|) among those
    whose interval excludes 1."""
    verdicts = table["verdict"].astype(str)
    moved = table[(verdicts.str.startswith(better_verdict(label_b)) | verdicts.str.startswith(worse_verdict(label_b)))
                  & (table["ratio"] > 0)]
    if moved.empty:
        return []
    moved = moved.assign(size=np.abs(np.log(moved["ratio"].astype(float)))).nlargest(count, "size")
    workloads = table["workload"].nunique()
    sentences = []
    for _, row in moved.iterrows():
        label = derive.METRICS[row["metric"]].label if row["metric"] in derive.METRICS else row["metric"]
        way = "rose" if row["ratio"] > 1 else "fell"
        factor = row["ratio"] if row["ratio"] > 1 else 1 / row["ratio"]
        note = f"; {row['note']}" if row["note"] else ""
        sentences.append(f"{short_label(row, workloads)}: {label} {way} {factor:.3g}-fold, from {_fmt(row['a_mean'])} "
                         f"to {_fmt(row['b_mean'])} (B/A {ratio_text(row)}; {row['verdict']}{note}).")
    return sentences


def _counts(rows: pd.DataFrame, metric: str) -> str:
    column = f"{metric}_perf_counts"
    return derive.combine_counts(rows[column].tolist()) if column in rows else ""


def _covers(counts: str) -> str:
    return "user space only" if counts == derive.USER_ONLY else "user and kernel space"


def _mode_label(rows: pd.DataFrame) -> str:
    fraction = rows["zerocopy_copied_fraction"].max() if "zerocopy_copied_fraction" in rows else float("nan")
    return zerocopy.label(str(rows["mode"].iloc[0]), fraction)


def ok_rows(run: RunData) -> pd.DataFrame:
    derived = derive.derive_metrics(run.results)
    derived = derived[derived["status"].astype(str) == "ok"]
    return derived.assign(cell=derived["cell_id"].astype(str).map(stats.cell_key))


# The ratio axis never reaches past these, so one wild interval cannot squash the rest: intervals that
# run off it end in an arrow at the edge.
_AXIS_FLOOR, _AXIS_CEILING = 1 / 1000, 1000
_VERDICT_COLORS = {"better": "#009E73", "worse": "#D55E00"}


def _axis_range(ratios: np.ndarray) -> tuple[float, float]:
    """A log axis around 1 and every point, padded by half a decade, never past the floor and ceiling:
    set by the points, not the intervals."""
    points = ratios[np.isfinite(ratios) & (ratios > 0)]
    low = min(1.0, float(points.min()) if points.size else 1.0) / 3
    high = max(1.0, float(points.max()) if points.size else 1.0) * 3
    return max(low, _AXIS_FLOOR), min(high, _AXIS_CEILING)


def _ratio_plot(table: pd.DataFrame, run_a: str, run_b: str) -> Figure:
    data = table[table["metric"] == "throughput_gbps"]
    height = max(3.0, 0.26 * len(data) + 1.8)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    with plots.style():
        fig = plots.new_figure(figsize=(7.5, height), layout="constrained")
        ax = fig.subplots()
        ax.set_title(f"Throughput B/A per cell, 95% interval\nA = {run_a}\nB = {run_b}", fontsize=9, loc="left")
        if data.empty:
            plots.note(ax, "no cell with throughput in both runs")
            return fig
        workloads = data["workload"].nunique()
        y = np.arange(len(data))
        ratio = data["ratio"].to_numpy(float)
        ratio_low, ratio_high = data["ratio_ci_low"].to_numpy(float), data["ratio_ci_high"].to_numpy(float)
        left, right = _axis_range(ratio)
        ax.set_xscale("log")
        ax.set_xlim(left, right)
        # Ticks read as plain ratios (0.2, 0.5, 1, 2), not powers of ten.
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axvline(1.0, color="#777777", linestyle="--", linewidth=1)
        for i, (point, low, high, verdict) in enumerate(zip(ratio, ratio_low, ratio_high, data["verdict"].astype(str))):
            if not np.isfinite(point) or point <= 0:
                continue
            color = next((c for word, c in _VERDICT_COLORS.items() if verdict.startswith(f"B {word}")), "#444444")
            if np.isfinite(low) and np.isfinite(high):
                ax.plot([max(low, left), min(high, right)], [i, i], color=color, linewidth=1.6)
                # An interval that runs off the axis ends in an arrow at the edge.
                if low < left:
                    ax.plot([left], [i], marker="<", color=color, markersize=6, clip_on=False)
                if high > right:
                    ax.plot([right], [i], marker=">", color=color, markersize=6, clip_on=False)
            ax.plot([min(max(point, left), right)], [i], marker="o", color=color, markersize=5)
        ax.set_yticks(y, [short_label(row, workloads) for _, row in data.iterrows()], fontsize=8)
        ax.set_ylim(len(data) - 0.5, -0.5)
        ax.set_xlabel("B / A throughput, log scale (1 = same; arrow: interval runs off the axis)", fontsize=8.5)
        ax.grid(True, axis="x", which="major", color="#dddddd", linewidth=0.6)
    return fig


def default_out_dir(run_a: Path, run_b: Path, pair_a: str | None = None, pair_b: str | None = None) -> Path:
    """`compare/<A>_vs_<B>/` beside run B's folder: named after both runs, and inside neither; with
    the pairs compared as `<A>.<pair>` (a pair name has no dot), so two pairs' comparisons of the
    same runs do not overwrite each other."""
    a = Path(run_a).name + (f".{pair_a}" if pair_a else "")
    b = Path(run_b).name + (f".{pair_b}" if pair_b else "")
    return Path(run_b).parent / "compare" / f"{a}_vs_{b}"


def split_pair(pair: str | None) -> tuple[str | None, str | None]:
    """`--pair NAME` names the pair in both runs; `--pair A_NAME:B_NAME` one in each (a run
    reproduced on new hardware has pairs of other names)."""
    if pair is None:
        return None, None
    a, _, b = pair.partition(":")
    return a or None, (b if _ else a) or None


def _one_pair(run: RunData, pair: str | None) -> tuple[RunData, str | None]:
    """The pair of a run that compare sets against the other run's, and its name when the run
    has several: the one asked for, or the run's only one (whatever name was asked for the other
    run). Pooling several pairs' rows would make one cell of different hosts."""
    if len(run.pairs) == 1 and (pair is None or pair not in run.pairs):
        return run, None
    if pair is not None:
        return pair_view(run, pair), pair if len(run.pairs) > 1 else None
    raise ConfigError(f"{run.path.name} ran on {len(run.pairs)} host pairs ({', '.join(run.pairs)}): name one "
                      "with --pair NAME, or --pair A_NAME:B_NAME for a pair of each run (its report compares "
                      "the pairs with each other)")


def compare_runs(run_a: Path, run_b: Path, out_dir: Path | None = None, pair: str | None = None) -> Comparison:
    """Compare two run folders (one host pair of each: `pair`, split by `split_pair`, or each run's
    only one); writes
    compare.md, compare.csv and the plot into out_dir (default: `default_out_dir`). Raises
    NoCommonCells, writing nothing, when they share no cell."""
    for run_dir in (Path(run_a), Path(run_b)):
        if (run_dir / layout.PLAN).exists():  # results.csv's version is checked as it is read
            load_plan(run_dir / layout.PLAN)
    (a, pair_a), (b, pair_b) = (_one_pair(load_run(Path(path)), name) for path, name in zip((run_a, run_b), split_pair(pair)))
    cells_a, cells_b = set(a.results["cell_id"].map(stats.cell_key)), set(b.results["cell_id"].map(stats.cell_key))
    if not cells_a & cells_b:
        raise NoCommonCells(f"{a.path.name} and {b.path.name} share no cell: nothing to compare "
                            f"(A has {len(cells_a)} cells, B has {len(cells_b)}; cells are named like "
                            f"{min(cells_a or cells_b or {'?'})})")
    rows_a, rows_b = ok_rows(a), ok_rows(b)
    table = _at_the_link(compare_cells(rows_a, rows_b), a, b)
    hosts = changes.host_changes(a.hosts, b.hosts)
    config = changes.config_changes(a.config, b.config)
    out = Path(out_dir) if out_dir is not None else default_out_dir(a.path, b.path, pair_a, pair_b)
    comparison = Comparison(
        run_a=a.run_id, run_b=b.run_id, table=table,
        config_differences=[change.text() for change in config],
        host_differences=[change.text() for change in hosts.changes], unknown_facts=hosts.unknown,
        only_in_a=sorted(cells_a - cells_b), only_in_b=sorted(cells_b - cells_a),
        out_dir=out, pair_a=pair_a, pair_b=pair_b, changes=[*hosts.changes, *config], identity=hosts.identity,
    )
    redo = f"orchestrate compare {a.path} {b.path} --out {out}" + (f" --pair {pair}" if pair else "")
    comparison.plot_paths = plots.save(_ratio_plot(table, a.run_id, b.run_id), out, "compare_throughput", redo)
    write_atomic(out / layout.COMPARE_CSV, table.to_csv(index=False), redo=redo)
    write_atomic(out / layout.COMPARE_MD, comparison.markdown(), redo=redo)
    return comparison
