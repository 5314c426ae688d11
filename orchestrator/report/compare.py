"""`orchestrate compare RUN_A RUN_B`: the same cells of two runs side by side.

Meant for reproducing a lab run on new hardware: per cell and metric, both means with
their intervals, the ratio B/A with its 95% interval, and Welch's test of whether the two
differ; plus where the two runs' configs and hosts differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from . import derive, plots, stats
from ..rows import layout, zerocopy
from ..rows.durable import write_atomic
from ..errors import ConfigError, NoCommonCells
from ..experiment.plan import load_plan
from ..roles import ROLES
from .runfolder import RunData, flatten, load_run, pair_view

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
    # One row per cell and metric that both runs measured.
    table: pd.DataFrame
    config_differences: list[str]
    host_differences: list[str] = field(default_factory=list)
    unknown_facts: list[str] = field(default_factory=list)  # host facts one side could not read: not compared
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    plot_paths: list[Path] = field(default_factory=list)
    out_dir: Path | None = None
    # The host pair of each run compared, when that run ran on several (else None: its only pair).
    pair_a: str | None = None
    pair_b: str | None = None

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
        """The table as people read it: cell, metric, A, B, B/A with its interval, verdict."""
        return [[row["cell"], row["metric"], mean_ci_text(row, "a"), mean_ci_text(row, "b"), ratio_text(row), row["verdict"]]
                for _, row in self.table.iterrows()]

    def difference_sections(self) -> list[tuple[str, list[str]]]:
        return [("Config differences", self.config_differences), ("Host differences", self.host_differences),
                ("Host facts unknown on one side (not compared)", self.unknown_facts),
                ("Cells only in A", self.only_in_a), ("Cells only in B", self.only_in_b)]

    def markdown(self) -> str:
        lines = [f"# B = {self.label_b} vs A = {self.label_a}", "",
                 "Per cell and metric: both means ± the half-width of their 95% intervals, the ratio B/A with its "
                 "95% interval, and the verdict of Welch's test. compare.csv has the same rows as plain numbers.", ""]
        lines.append(_markdown_table(TEXT_COLUMNS, self.text_rows()))
        lines.append("")
        for title, entries in self.difference_sections():
            if entries:
                lines += [f"## {title}", "", *(f"- {entry}" for entry in entries), ""]
        if not self.config_differences:
            lines += ["The two runs' configs are the same.", ""]
        if self.plot_paths:
            lines += ["## Plot", "", f"![Throughput ratio B/A]({self.plot_paths[0].name})", ""]
        return "\n".join(lines)


TEXT_COLUMNS = ["cell", "metric", "A", "B", "B/A [95% CI]", "verdict"]


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


def better_verdict(label_b: str = "B") -> str:
    """The verdict of a cell where side B measured better (Welch's test: p < 0.05)."""
    return f"{label_b} better"


def worse_verdict(label_b: str = "B") -> str:
    return f"{label_b} worse"


def _verdict(metric: str, result: stats.Ratio, a_n: int, b_n: int, label_b: str) -> str:
    if a_n < 2 or b_n < 2:
        return "too few repetitions to tell"
    if not result.differs():
        return NO_CLEAR_DIFFERENCE
    better = (result.ratio > 1) == derive.METRICS[metric].higher_is_better
    return better_verdict(label_b) if better else worse_verdict(label_b)


def _differences(a: dict, b: dict, what: str) -> list[str]:
    flat_a, flat_b = flatten(a), flatten(b)
    lines = []
    for key in dict.fromkeys([*flat_a, *flat_b]):
        va, vb = flat_a.get(key), flat_b.get(key)
        if va == vb:
            continue
        if va is None:
            lines.append(f"{what}{key}: only in B ({vb})")
        elif vb is None:
            lines.append(f"{what}{key}: only in A ({va})")
        else:
            lines.append(f"{what}{key}: A {va}, B {vb}")
    return lines


_BLANK = ("", "—")  # what flatten makes of a fact a run recorded as empty or null
UNKNOWN = "unknown"  # the host facts' key for the facts a host could not read (remote/facts.py writes it)


def _host_differences(a: dict, b: dict, what: str) -> tuple[list[str], list[str]]:
    """Host facts that differ, and facts one side could not read. A fact that side's host facts
    list as unknown (with why), or left blank (runs before they said why), is
    unknown there: never a change."""
    why = {side: {k: str(v) for k, v in (facts.get(UNKNOWN) or {}).items()} if isinstance(facts.get(UNKNOWN), dict) else {}
           for side, facts in (("A", a), ("B", b))}
    flat = {"A": {k: v for k, v in flatten(a).items() if not k.startswith(f"{UNKNOWN}.")},
            "B": {k: v for k, v in flatten(b).items() if not k.startswith(f"{UNKNOWN}.")}}
    changed, unknown = [], []
    for key in dict.fromkeys([*flat["A"], *flat["B"], *why["A"], *why["B"]]):
        va, vb = flat["A"].get(key), flat["B"].get(key)
        blind = [side for side, value in (("A", va), ("B", vb))
                 if key in why[side] or any(key.startswith(f"{w}.") for w in why[side]) or value in _BLANK]
        if blind:
            reasons = ", ".join(f"{side}: {why[side].get(key, 'not recorded')}" for side in blind)
            unknown.append(f"{what}{key}: unknown ({reasons})")
        elif va != vb:
            changed += _differences({key: va} if va is not None else {}, {key: vb} if vb is not None else {}, what)
    return changed, unknown


def compare_cells(a: pd.DataFrame, b: pd.DataFrame, label_a: str = "A", label_b: str = "B") -> pd.DataFrame:
    """Per cell both sides measured, per COMPARED_METRICS: both means with their intervals, B/A with
    its interval and Welch's p (stats.ratio), and a verdict. `a` and `b` are `ok_rows`; used for two
    runs here, and for each pair against the baseline pair of one run (pairs.py). The verdicts and
    the cell notes name the sides `label_a` and `label_b` (a pair's name, say)."""
    rows = []
    a_cells, b_cells = a.groupby("cell", sort=False), dict(tuple(b.groupby("cell", sort=False)))
    for cell, group_a in a_cells:
        group_b = b_cells.get(cell)
        if group_b is None:
            continue
        # A zero_copy cell that one run's kernel copied is not the same technique as one it did not.
        mode_a, mode_b = _mode_label(group_a), _mode_label(group_b)
        shown = cell if mode_a == mode_b == group_a["mode"].iloc[0] else f"{cell} ({label_a}: {mode_a}; {label_b}: {mode_b})"
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
                "cell": shown, "metric": metric,
                "a_n": est_a.n, "a_mean": est_a.mean, "a_ci_low": est_a.ci_low, "a_ci_high": est_a.ci_high,
                "b_n": est_b.n, "b_mean": est_b.mean, "b_ci_low": est_b.ci_low, "b_ci_high": est_b.ci_high,
                "ratio": result.ratio, "ratio_ci_low": result.ci_low, "ratio_ci_high": result.ci_high,
                "p_value": result.p_value, "verdict": verdict,
            })
    return pd.DataFrame(rows, columns=[
        "cell", "metric", "a_n", "a_mean", "a_ci_low", "a_ci_high", "b_n", "b_mean", "b_ci_low", "b_ci_high",
        "ratio", "ratio_ci_low", "ratio_ci_high", "p_value", "verdict"])


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


def _ratio_plot(table: pd.DataFrame, run_a: str, run_b: str) -> Figure:
    data = table[table["metric"] == "throughput_gbps"]
    height = max(3.0, 0.28 * len(data) + 1.6)
    with matplotlib.rc_context(plots.STYLE):
        fig = Figure(figsize=(8.5, height), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        fig.suptitle(f"Throughput ratio B/A per cell (95% CI)\nA = {run_a}\nB = {run_b}", fontsize=11)
        if data.empty:
            plots.note(ax, "no cell with throughput in both runs")
            return fig
        y = np.arange(len(data))
        ratio = data["ratio"].to_numpy(float)
        low = np.nan_to_num(ratio - data["ratio_ci_low"].to_numpy(float), nan=0.0).clip(min=0)
        high = np.nan_to_num(data["ratio_ci_high"].to_numpy(float) - ratio, nan=0.0).clip(min=0)
        ax.errorbar(ratio, y, xerr=[low, high], fmt="o", color="black", capsize=3)
        ax.axvline(1.0, color="#777777", linestyle="--", linewidth=1)
        ax.set_yticks(y, data["cell"].tolist(), fontsize=8.5)
        ax.invert_yaxis()
        ax.set_xlabel("B / A throughput (1 = same)")
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
    table = compare_cells(rows_a, rows_b)
    host_differences, unknown_facts = [], []
    for role in ROLES:
        changed, unknown = _host_differences(a.hosts.get(role, {}), b.hosts.get(role, {}), f"{role}.")
        host_differences += changed
        unknown_facts += unknown
    out = Path(out_dir) if out_dir is not None else default_out_dir(a.path, b.path, pair_a, pair_b)
    comparison = Comparison(
        run_a=a.run_id, run_b=b.run_id, table=table,
        config_differences=_differences(a.config, b.config, ""),
        host_differences=host_differences, unknown_facts=unknown_facts,
        only_in_a=sorted(cells_a - cells_b), only_in_b=sorted(cells_b - cells_a),
        out_dir=out, pair_a=pair_a, pair_b=pair_b,
    )
    redo = f"orchestrate compare {a.path} {b.path} --out {out}" + (f" --pair {pair}" if pair else "")
    comparison.plot_paths = plots.save(_ratio_plot(table, a.run_id, b.run_id), out, "compare_throughput", redo)
    write_atomic(out / layout.COMPARE_CSV, table.to_csv(index=False), redo=redo)
    write_atomic(out / layout.COMPARE_MD, comparison.markdown(), redo=redo)
    return comparison
