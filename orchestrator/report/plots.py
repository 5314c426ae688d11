"""The study's plots, drawn from summary rows (one per cell) as PNG and SVG.

Figures are built with matplotlib's object API on the Agg canvas, so nothing depends on a
display or on pyplot's global state. Modes differ by marker and line style as well as by
colour, so the plots read in grayscale print. A metric the hosts did not count is drawn as
a note saying so, never as a line at zero.
"""

from __future__ import annotations

import hashlib
import io
import json

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import derive
from ..rows.durable import disk_error, write_atomic
from ..experiment.units import format_size
from ..version import __version__

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn (new_figure), not with this module
    from matplotlib.figure import Figure

NOT_SUPPORTED = "not supported on these hosts"

# Okabe-Ito colours, plus a distinct marker and dash per mode for grayscale.
MODE_STYLES: dict[str, dict[str, str]] = {
    "two_copy": {"color": "#000000", "marker": "o", "linestyle": "-"},
    "one_copy": {"color": "#0072B2", "marker": "s", "linestyle": "--"},
    "zero_copy": {"color": "#D55E00", "marker": "^", "linestyle": ":"},
    "sendfile": {"color": "#009E73", "marker": "D", "linestyle": "-."},
    "io_uring": {"color": "#CC79A7", "marker": "v", "linestyle": "--"},
    "io_uring_zc": {"color": "#E69F00", "marker": "P", "linestyle": ":"},
}
# Sideways offset between modes, in octaves of the x axis.
DODGE = 0.05
_FALLBACK_STYLE = {"color": "#666666", "marker": "x", "linestyle": "-"}

STYLE = {
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 10,
    "lines.linewidth": 1.8,
    "lines.markersize": 6.5,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "svg.fonttype": "none",
}


def new_figure(**options) -> Figure:
    """A Figure on the Agg canvas. matplotlib is imported here, at the first figure drawn: a report
    whose figures are all drawn already (save_drawn) never loads it, half a second saved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**options)
    FigureCanvasAgg(fig)
    return fig


def style() -> AbstractContextManager:
    """matplotlib's settings for these figures (STYLE), for a `with` block."""
    import matplotlib

    return matplotlib.rc_context(STYLE)


def _has(data: pd.DataFrame, metric: str) -> bool:
    column = f"{metric}_mean"
    return column in data.columns and data[column].notna().any()


def _line_label(group: pd.DataFrame, mode: str) -> str:
    labels = set(group["mode_label"]) if "mode_label" in group.columns else {mode}
    if len(labels) == 1:
        return labels.pop()
    # Copied at some points only: those points are drawn hollow, and the legend says so.
    return f"{mode} (hollow: kernel copied)"


def _draw_lines(ax, data: pd.DataFrame, x: str, metric: str) -> bool:
    """One line per mode with 95% CI error bars; returns whether anything was drawn."""
    drawn = False
    modes = sorted(data["mode"].unique(), key=derive.mode_rank)
    for index, mode in enumerate(modes):
        group = data[data["mode"] == mode].sort_values(x)
        group = group[group[f"{metric}_mean"].notna()]
        if group.empty:
            continue
        style = MODE_STYLES.get(mode, _FALLBACK_STYLE)
        mean = group[f"{metric}_mean"].to_numpy(float)
        # n = 1 has no interval: no bar rather than a bar of zero width that looks certain.
        low = np.nan_to_num(mean - group[f"{metric}_ci_low"].to_numpy(float), nan=0.0).clip(min=0)
        high = np.nan_to_num(group[f"{metric}_ci_high"].to_numpy(float) - mean, nan=0.0).clip(min=0)
        copied = group["copied"].to_numpy(bool) if "copied" in group.columns else np.zeros(len(group), bool)
        # Nudge each mode sideways on the log2 axis so overlapping error bars stay apart.
        xs = group[x].to_numpy(float) * 2 ** ((index - (len(modes) - 1) / 2) * DODGE)
        ax.errorbar(
            xs, mean, yerr=[low, high], capsize=3, label=_line_label(group, mode),
            markerfacecolor="white" if copied.all() else style["color"], **style,
        )
        if copied.any() and not copied.all():
            ax.plot(xs[copied], mean[copied], linestyle="none", marker=style["marker"],
                    color=style["color"], markerfacecolor="white")
        drawn = True
    return drawn


def note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", wrap=True,
            fontsize=11, style="italic", color="#333333")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _log2_axis(ax, values: Sequence[float], formatter: Callable[[float], str]) -> None:
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log", base=2)
    ticks = sorted(set(values))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([formatter(t) for t in ticks])


def _size_label(value: float) -> str:
    return format_size(int(value))


def _threads_label(value: float) -> str:
    return str(int(value))


X_AXES = {
    "message_size": ("Message size", _size_label),
    "threads": ("Threads (connections)", _threads_label),
}


def _grid_figure(
    data: pd.DataFrame,
    *,
    title: str,
    x: str,
    panel: str,
    rows: Sequence[tuple[str, str]],
    empty_note: str,
    sharey_rows: bool = True,
) -> Figure:
    """Rows of panels: one row per (metric, y label), one panel per value of `panel`; when the rows
    come from several host pairs (summary `pair`), those rows once per pair, the pair named in each
    panel's title, and each metric's y axis shared across pairs so that their heights compare."""
    from matplotlib.ticker import StrMethodFormatter

    if data.empty:
        fig = new_figure(figsize=(8, 2.6), layout="constrained")
        fig.suptitle(title, fontsize=13)
        note(fig.subplots(), empty_note)
        return fig
    panel_values = sorted(data[panel].unique())
    ncols = len(panel_values)
    pairs = list(dict.fromkeys(data["pair"])) if "pair" in data.columns else []
    # (pair or None, metric, y label) per row of panels; one pair draws exactly as before pairs existed.
    grid = [(pair, m, y) for pair in pairs for m, y in rows] if len(pairs) > 1 else [(None, m, y) for m, y in rows]
    nrows = len(grid)
    # Wide enough for the title even with one panel; at most 14 in, to fit a page in landscape.
    fig = new_figure(figsize=(max(7.0, min(3.4 * ncols, 14) + 0.6), 3.1 * nrows + 1.2), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False, sharex=True))
    fig.suptitle(title, fontsize=13)
    xlabel, formatter = X_AXES[x]
    handles: dict[str, object] = {}
    for r, (pair, metric, ylabel) in enumerate(grid):
        rows_of = data if pair is None else data[data["pair"] == pair]
        supported = _has(rows_of, metric)
        for c in range(ncols):
            ax = axes[r][c]
            value = panel_values[c]
            if pair is not None and (r == 0 or grid[r - 1][0] != pair):
                ax.set_title(f"{pair}: {_panel_title(panel, value)}")
            elif r == 0:
                ax.set_title(_panel_title(panel, value))
            if not supported:
                note(ax, f"{ylabel.split(' (')[0]}:\n{NOT_SUPPORTED}")
                continue
            if not _draw_lines(ax, rows_of[rows_of[panel] == value], x, metric):
                note(ax, "no data for this panel")
                continue
            _log2_axis(ax, data[x].to_numpy(float), formatter)
            # Room at both ends so the nudged outermost points are not cut by the frame.
            ax.margins(x=0.1)
            ax.set_ylim(bottom=0)
            if ax.get_ylim()[1] >= 10_000:
                ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
            if c == 0:
                ax.set_ylabel(ylabel if pair is None else f"{pair}\n{ylabel}")
            if r == nrows - 1:
                ax.set_xlabel(xlabel)
            for handle, label in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(label, handle)
    for metric, _ in rows:
        same = [r for r, (_, m, _) in enumerate(grid) if m == metric]
        # Across the pairs always, so their heights compare; across the panels when sharey_rows.
        groups = [[(r, c) for r in same for c in range(ncols)]] if sharey_rows else \
            [[(r, c) for r in same] for c in range(ncols)] if len(same) > 1 else []
        for group in groups:
            drawn = [axes[r][c] for r, c in group if axes[r][c].has_data()]
            if drawn:
                top = max(axes[r][c].get_ylim()[1] for r, c in group)
                for ax in drawn:
                    ax.set_ylim(0, top)
                    if len(pairs) > 1 and top >= 10_000:  # raised by another pair's panel: same tick labels
                        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
                   ncols=min(4, len(handles)), frameon=False)
    return fig


def _panel_title(panel: str, value: object) -> str:
    if panel == "message_size":
        return f"{format_size(int(value))} messages"
    if panel == "threads":
        return f"{int(value)} thread{'s' if int(value) != 1 else ''}"
    return f"{panel} = {value}"


def _workload(summary: pd.DataFrame, workload: str) -> pd.DataFrame:
    if summary.empty or "workload" not in summary.columns:
        return summary.iloc[0:0]
    return summary[summary["workload"] == workload]


def throughput_vs_size(summary: pd.DataFrame) -> Figure:
    return _grid_figure(
        _workload(summary, "stream"), title="Throughput vs message size (stream, receiver's window, 95% CI)",
        x="message_size", panel="threads", rows=[("throughput_gbps", "Throughput (Gbit/s)")],
        empty_note="no stream cells in this run",
    )


def throughput_vs_threads(summary: pd.DataFrame) -> Figure:
    return _grid_figure(
        _workload(summary, "stream"), title="Throughput vs threads (stream, 95% CI)",
        x="threads", panel="message_size", rows=[("throughput_gbps", "Throughput (Gbit/s)")],
        empty_note="no stream cells in this run",
    )


LATENCY_ROWS = [("latency_p50_us", "p50 latency (µs)"), ("latency_p99_us", "p99 latency (µs)")]


def latency_vs_threads(summary: pd.DataFrame) -> Figure:
    return _grid_figure(
        _workload(summary, "rr"), title="Request/response latency vs threads (rr, 95% CI)",
        x="threads", panel="message_size", rows=LATENCY_ROWS, empty_note="no rr cells in this run",
        sharey_rows=False,
    )


def latency_vs_size(summary: pd.DataFrame) -> Figure:
    return _grid_figure(
        _workload(summary, "rr"), title="Request/response latency vs message size (rr, 95% CI)",
        x="message_size", panel="threads", rows=LATENCY_ROWS, empty_note="no rr cells in this run",
        sharey_rows=False,
    )


def _user_only(data: pd.DataFrame, *metrics: str) -> str:
    """" (user space only)" when perf counted user space only for any cell of these counter
    metrics (summary `<metric>_perf_counts`): such counts leave out the kernel, where copies happen."""
    for metric in metrics:
        column = f"{metric}_perf_counts"
        if column in data.columns and data[column].astype(str).eq(derive.USER_ONLY).any():
            return " (user space only)"
    return ""


def cpu_per_byte_vs_size(summary: pd.DataFrame) -> Figure:
    stream = _workload(summary, "stream")
    if _has(stream, "cycles_per_byte"):
        return _grid_figure(
            stream, title="CPU cycles per byte vs message size (sender + receiver)" + _user_only(stream, "cycles_per_byte"),
            x="message_size", panel="threads", rows=[("cycles_per_byte", "Cycles per byte")],
            empty_note="no stream cells in this run",
        )
    return _grid_figure(
        stream, title=f"CPU time per byte vs message size (sender + receiver)\ncycles {NOT_SUPPORTED}: CPU time from rusage instead",
        x="message_size", panel="threads", rows=[("cpu_ns_per_byte", "CPU time per byte (ns/B)")],
        empty_note="no stream cells in this run",
    )


def cache_misses_vs_size(summary: pd.DataFrame) -> Figure:
    return _grid_figure(
        _workload(summary, "stream"), title="Cache misses per KiB moved vs message size (sender + receiver)"
        + _user_only(_workload(summary, "stream"), "l1_misses_per_kib", "llc_misses_per_kib"),
        x="message_size", panel="threads",
        rows=[("l1_misses_per_kib", "L1-dcache load misses per KiB"), ("llc_misses_per_kib", "LLC load misses per KiB")],
        empty_note="no stream cells in this run", sharey_rows=False,
    )


def context_switches_vs_threads(summary: pd.DataFrame) -> Figure:
    stream = _workload(summary, "stream")
    if _has(stream, "context_switches_per_s") or not _has(stream, "rusage_context_switches_per_s"):
        metric, source = "context_switches_per_s", "perf" + _user_only(stream, "context_switches_per_s")
    else:
        metric, source = "rusage_context_switches_per_s", f"rusage; perf's context-switches {NOT_SUPPORTED}"
    return _grid_figure(
        stream, title=f"Context switches per second vs threads (stream, both sides, {source})",
        x="threads", panel="message_size", rows=[(metric, "Context switches per second")],
        empty_note="no stream cells in this run",
    )


PLOTS: dict[str, Callable[[pd.DataFrame], Figure]] = {
    "throughput_vs_size": throughput_vs_size,
    "throughput_vs_threads": throughput_vs_threads,
    "latency_vs_threads": latency_vs_threads,
    "latency_vs_size": latency_vs_size,
    "cpu_per_byte_vs_size": cpu_per_byte_vs_size,
    "cache_misses_vs_size": cache_misses_vs_size,
    "context_switches_vs_threads": context_switches_vs_threads,
}


# Drawing is most of a report's time, and `orchestrate report` on a run whose report exists draws
# the same figures again. A figure is drawn again only when what it is drawn from changed: the
# data, the drawing code (this package's sources), matplotlib, or the files themselves (an edit or
# a removal). plots/.drawn.json keeps, per figure, the key of its inputs and the digest of each file.
DRAWN = ".drawn.json"
SUFFIXES = (".png", ".svg")
_SOURCES = Path(__file__).resolve().parent


def _code_digest() -> bytes:
    digest = hashlib.sha256(f"{__version__} {metadata.version('matplotlib')}".encode())
    for path in sorted(_SOURCES.glob("*.py")) + [Path(format_size.__code__.co_filename)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.digest()


def input_key(name: str, *inputs: object) -> str:
    """What a figure is drawn from, as one digest: its name, the drawing code, and its inputs
    (DataFrames by their values, index, columns and types; anything else by its repr)."""
    digest = hashlib.sha256(_code_digest() + name.encode())
    for item in inputs:
        if isinstance(item, pd.DataFrame):
            digest.update(repr((list(item.columns), [str(t) for t in item.dtypes], len(item))).encode())
            try:
                digest.update(pd.util.hash_pandas_object(item, index=True).to_numpy().tobytes())
            except TypeError:  # a column of lists or dicts: hashed by its text
                digest.update(item.to_csv().encode())
        else:
            digest.update(repr(item).encode())
    return digest.hexdigest()


def _file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _drawn(out_dir: Path) -> dict[str, dict[str, str]]:
    """plots/.drawn.json, or nothing when it is missing or not what this module writes."""
    try:
        data = json.loads((out_dir / DRAWN).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and all(isinstance(x, str) for x in v.values())}


def already_drawn(out_dir: Path, name: str, key: str) -> list[Path] | None:
    """`name`'s PNG and SVG when the files in `out_dir` were drawn from `key` and are as drawn."""
    entry = _drawn(Path(out_dir)).get(name)
    if not entry or entry.get("key") != key:
        return None
    paths = [Path(out_dir) / f"{name}{suffix}" for suffix in SUFFIXES]
    if any(_file_digest(path) != entry.get(path.suffix) for path in paths):
        return None
    return paths


def _remember(out_dir: Path, found: Mapping[str, tuple[str, list[Path]]], redo: str | None) -> None:
    """Adds each drawn figure's (key, paths) to plots/.drawn.json, written once for them all."""
    drawn = _drawn(out_dir)
    for name, (key, paths) in found.items():
        drawn[name] = {"key": key, **{path.suffix: _file_digest(path) or "" for path in paths}}
    write_atomic(out_dir / DRAWN, json.dumps(drawn, indent=1, sort_keys=True), redo=redo)


def save_drawn(figures: Mapping[str, tuple[Callable[[], Figure], str]], out_dir: Path,
               redo: str | None = None) -> dict[str, list[Path]]:
    """Each figure's PNG and SVG by name, from (the function that draws it, the key of its inputs:
    input_key); one already drawn from that key is left as it is."""
    out_dir = Path(out_dir)
    written: dict[str, list[Path]] = {}
    drawn: dict[str, tuple[str, list[Path]]] = {}
    for name, (make, key) in figures.items():
        found = already_drawn(out_dir, name, key)
        if found is None:
            with style():
                fig = make()
            found = save(fig, out_dir, name, redo)
            drawn[name] = (key, found)
        written[name] = found
    if drawn:
        _remember(out_dir, drawn, redo)
    return written


def save(fig: Figure, out_dir: Path, name: str, redo: str | None = None) -> list[Path]:
    """Write `name.png` and `name.svg`; returns both paths. A folder that cannot be made or a
    file that cannot be written is a DiskError (`redo`: the command to run again)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise disk_error(out_dir, exc, redo=redo) from None
    paths = []
    with style():
        for suffix, options in zip(SUFFIXES, ({"dpi": 150}, {})):
            path = out_dir / f"{name}{suffix}"
            buffer = io.BytesIO()  # rendered in memory, then written whole: no half a plot on a full disk
            fig.savefig(buffer, format=suffix[1:], **options)
            write_atomic(path, buffer.getvalue(), redo=redo)
            paths.append(path)
            # The layout the first format was drawn with is kept (in inches, so at any dpi): the
            # constrained layout, most of a figure's drawing time, is not worked out twice.
            fig.set_layout_engine("none")
    return paths


def write_plots(summary: pd.DataFrame, out_dir: Path) -> dict[str, list[Path]]:
    """Every plot of the study, from summary rows, as `out_dir/<name>.png` and `.svg`."""
    # (make=make: each lambda keeps its own plot function)
    return save_drawn({name: (lambda make=make: make(summary), input_key(name, summary))
                       for name, make in PLOTS.items()}, Path(out_dir))


def throughput_over_time(series: pd.DataFrame, stalled: Mapping[str, Iterable[int]] | None = None) -> Figure:
    """Small multiples of intervals.csv: one panel per cell, throughput per interval with the
    connections summed, the median over repetitions as a line and their min-max as a band.
    `stalled` maps a repetition's cell id to its stalled intervals (decided by stall.py's rule,
    not here): each is drawn as a red dot, and the panel's title turns red."""
    stalled = stalled or {}
    if series.empty:
        fig = new_figure(figsize=(8, 2.6), layout="constrained")
        fig.suptitle("Throughput over time", fontsize=13)
        note(fig.subplots(), "no per-interval samples in this run")
        return fig
    summed = (series.groupby(["cell_id", "repetition", "interval"], sort=True)
              .agg(start=("t_start_s", "min"), end=("t_end_s", "max"), moved=("bytes", "sum"))
              .reset_index())  # fmt: skip
    summed["cell"] = summed["cell_id"].astype(str).str.replace(r"-r\d+(?=-|$)", "", regex=True)
    length = summed["end"] - summed["start"]
    summed["gbps"] = (summed["moved"] * 8 / length.where(length > 0) / 1e9)
    summed["mid"] = (summed["start"] + summed["end"]) / 2
    cells = sorted(summed["cell"].unique())
    ncols = min(4, len(cells))
    nrows = -(-len(cells) // ncols)
    width, height = max(7.0, 3.4 * ncols), 2.4 * nrows + 1.0
    fig = new_figure(figsize=(width, height))
    # One time axis for every panel (the cells share the run's window length), labelled once under
    # the grid: half of the figure's text, and so of its drawing time, was repeated x labels.
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
    title = "Throughput over time, per cell (connections summed; line: median of repetitions, band: min-max; red: a stall)"
    two_lines = width < _TEXT_INCHES * len(title) * 11 / 8.5
    fig.suptitle(title.replace(" (", "\n(") if two_lines else title, fontsize=11, y=1 - 0.12 / height, va="top")
    fig.supxlabel("Seconds into the window", fontsize=9, y=0.08 / height, va="bottom")
    panel_inches = (width - 1.0) / ncols - 0.7  # about: the panels' widths once laid out below
    wrapped = False
    for k, ax in enumerate(axes.flat):
        if k >= len(cells):
            ax.set_visible(False)
            continue
        if k + ncols >= len(cells):  # the lowest panel drawn in its column shows the time ticks
            ax.xaxis.set_tick_params(labelbottom=True)
        cell = cells[k]
        data = summed[summed["cell"] == cell]
        per = data.groupby("interval").agg(mid=("mid", "median"), med=("gbps", "median"),
                                           low=("gbps", "min"), high=("gbps", "max"))  # fmt: skip
        mode = str(series.loc[series["cell_id"].isin(data["cell_id"]), "mode"].iloc[0])
        style = MODE_STYLES.get(mode, _FALLBACK_STYLE)
        ax.fill_between(per["mid"], per["low"], per["high"], color=style["color"], alpha=0.2, linewidth=0)
        ax.plot(per["mid"], per["med"], color=style["color"], marker=".", linestyle="-")
        marks = [(c, i) for c, found in stalled.items() for i in found]
        flagged = data[[(c, i) in marks for c, i in zip(data["cell_id"], data["interval"])]]
        if not flagged.empty:
            ax.plot(flagged["mid"], flagged["gbps"], "o", color="#CC0000", markersize=7, linestyle="none", clip_on=False)
        # A long cell id (a variant's settings in it) goes on two lines, then smaller, rather than
        # run into its neighbour's.
        lines = _title_lines(cell, panel_inches)
        wrapped = wrapped or len(lines) > 1
        size = max(5.5, min(8.5, 8.5 * panel_inches / (_TEXT_INCHES * max(map(len, lines)))))
        ax.set_title("\n".join(lines), fontsize=size, color="#CC0000" if not flagged.empty else "black")
        ax.set_ylim(bottom=0)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)  # no offset text to collide with the title
        if k % ncols == 0:
            ax.set_ylabel("Gbit/s")
    labels = max(_tick_label_chars(ax) for ax in axes.flat[:len(cells)])
    fig.subplots_adjust(**_grid_margins(width, height, nrows, ncols, labels * _DIGIT_INCHES, two_lines, wrapped))
    return fig


def _title_lines(cell: str, inches: float) -> list[str]:
    """A cell id as one line, or as two split at the dash nearest its middle when one line is wider
    than `inches` at the panel title's size."""
    if _TEXT_INCHES * len(cell) <= inches or "-" not in cell:
        return [cell]
    cut = min((i for i, ch in enumerate(cell) if ch == "-"), key=lambda i: abs(i - len(cell) / 2))
    return [cell[:cut], cell[cut:]]


# What a character of this figure's text takes, in inches per point of font size, to lay it out
# without measuring each text (matplotlib's DejaVu Sans: digits 0.64 em, mixed text about 0.6 em).
_DIGIT_INCHES = 0.64 * 9.5 / 72  # a y tick label's digit, at its 9.5 pt
_TEXT_INCHES = 0.6 * 8.5 / 72  # a character of a panel title, at 8.5 pt


def _tick_label_chars(ax) -> int:
    """The longest y tick label of a panel, in characters, as its locator and formatter will make them."""
    low, high = ax.get_ylim()
    ticks = [t for t in ax.yaxis.get_major_locator().tick_values(low, high) if low <= t <= high]
    return max((len(label) for label in ax.yaxis.get_major_formatter().format_ticks(ticks)), default=1)


def _grid_margins(width: float, height: float, nrows: int, ncols: int, labels: float, two_lines: bool,
                  wrapped: bool) -> dict[str, float]:
    """Margins, in inches, for the grid of small multiples: room for the title above (one line or
    two), the y tick labels (`labels` inches wide at most) and unit at the left and between
    panels, each panel's title (`wrapped`: some on two lines) and time ticks between rows, the time
    label below. Laid out by hand
    because the constrained layout took two thirds of this figure's drawing time (it measures every
    panel's text); the widths here come from character counts."""
    title = 0.15 if wrapped else 0  # a panel title's second line
    left, right, bottom, down = 0.45 + labels, 0.2, 0.65, 0.6 + title  # inches
    top, across = 0.65 + (0.2 if two_lines else 0) + title, 0.3 + labels
    panel_w = (width - left - right - (ncols - 1) * across) / ncols
    panel_h = (height - top - bottom - (nrows - 1) * down) / nrows
    return {"left": left / width, "right": 1 - right / width, "top": 1 - top / height, "bottom": bottom / height,
            "wspace": across / panel_w, "hspace": down / panel_h}


def write_throughput_over_time(series: pd.DataFrame, stalled: Mapping[str, Iterable[int]], out_dir: Path) -> list[Path]:
    """`throughput_over_time.png` and `.svg` in `out_dir`."""
    stalled = {str(k): sorted(v) for k, v in sorted(stalled.items())}
    name = "throughput_over_time"
    return save_drawn({name: (lambda: throughput_over_time(series, stalled), input_key(name, series, stalled))},
                      Path(out_dir))[name]


# "Where the CPU went": the host's CPU time in the window by kind, per GB moved.
CPU_KINDS = (("user", "#0072B2"), ("system", "#D55E00"), ("softirq", "#009E73"), ("irq", "#CC79A7"))


def where_cpu_went(bars: pd.DataFrame) -> Figure:
    """Stacked horizontal bars, one per (cell, host): CPU seconds per GB split into user, system,
    softirq and irq. `bars` has `label` and `<kind>_s_per_gb` columns (evidence.cpu_bars)."""
    if bars.empty:
        fig = new_figure(figsize=(8, 2.6), layout="constrained")
        fig.suptitle("Where the CPU went", fontsize=13)
        note(fig.subplots(), "no host counters in this run")
        return fig
    fig = new_figure(figsize=(9, 1.2 + 0.32 * len(bars)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(bars))[::-1]
    left = np.zeros(len(bars))
    for kind, colour in CPU_KINDS:
        values = bars[f"{kind}_s_per_gb"].to_numpy(float)
        ax.barh(y, np.nan_to_num(values), left=left, color=colour, label=kind,
                hatch={"user": "", "system": "//", "softirq": "..", "irq": "xx"}[kind])
        left += np.nan_to_num(values)
    ax.set_yticks(y, bars["label"].tolist(), fontsize=8.5)
    ax.set_xlabel("Host CPU seconds per GB moved (window, all CPUs)")
    ax.legend(loc="lower right", ncols=4, fontsize=9)
    fig.suptitle("Where the CPU went", fontsize=13)
    return fig


def write_where_cpu_went(bars: pd.DataFrame, out_dir: Path) -> list[Path]:
    name = "where_cpu_went"
    return save_drawn({name: (lambda: where_cpu_went(bars), input_key(name, bars))}, Path(out_dir))[name]
