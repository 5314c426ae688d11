from pathlib import Path
import xml.etree.ElementTree as ET

import pytest

from orchestrator.report import plots, stats
from orchestrator.rows.results import read_results

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def summary_of(name: str):
    return stats.summarize(read_results(RUNS / name / "results.csv"))


@pytest.mark.parametrize(
    "run", ["20261120T101500Z-lab-hw-a1b2", "20261125T090000Z-vm-e5f6", "20261125T222925Z-vmcheck-598f"]
)
def test_every_plot_written_as_png_and_svg(tmp_path, run):
    written = plots.write_plots(summary_of(run), tmp_path)
    assert set(written) == set(plots.PLOTS)
    for name, paths in written.items():
        png, svg = paths
        assert png.read_bytes().startswith(PNG_MAGIC), name
        assert png.stat().st_size > 10_000, name
        ET.parse(svg)  # well-formed SVG
        assert svg.stat().st_size > 2_000, name


def svg_text(path: Path) -> str:
    return path.read_text()


def test_unsupported_counters_are_said_not_drawn(tmp_path):
    written = plots.write_plots(summary_of("20261125T090000Z-vm-e5f6"), tmp_path)
    cache = svg_text(written["cache_misses_vs_size"][1])
    assert plots.NOT_SUPPORTED in cache
    # no lines in the unsupported panels: the mode legend is absent
    assert "two_copy" not in cache
    cpu = svg_text(written["cpu_per_byte_vs_size"][1])
    assert "CPU time per byte" in cpu and plots.NOT_SUPPORTED in cpu
    assert "no rr cells in this run" in svg_text(written["latency_vs_threads"][1])
    # the copied zero-copy cells are labelled as such in the legend
    assert "copied (not zero-copy)" in svg_text(written["throughput_vs_size"][1])


def test_counted_metrics_are_drawn(tmp_path):
    written = plots.write_plots(summary_of("20261120T101500Z-lab-hw-a1b2"), tmp_path)
    cache = svg_text(written["cache_misses_vs_size"][1])
    assert plots.NOT_SUPPORTED not in cache
    assert "zero_copy" in cache and "copied" not in cache
    assert "Cycles per byte" in svg_text(written["cpu_per_byte_vs_size"][1])
    assert "p99 latency" in svg_text(written["latency_vs_size"][1])


def test_a_figure_is_drawn_again_only_when_its_data_or_its_files_changed(tmp_path):
    """A real run's plots, written twice: the second time nothing is drawn (the files keep their
    bytes and times); an edited or removed file, a changed row, or a .drawn.json that is not ours
    is drawn again."""
    summary = summary_of("20261206T023809Z-labfull-87e3")
    first = plots.write_plots(summary, tmp_path)
    times = {p: p.stat().st_mtime_ns for paths in first.values() for p in paths}
    assert plots.write_plots(summary, tmp_path) == first
    assert {p: p.stat().st_mtime_ns for p in times} == times  # nothing written again

    svg = first["throughput_vs_size"][1]
    svg.write_text(svg.read_text().replace("Throughput", "Edited"))  # a hand edit
    first["latency_vs_size"][0].unlink()  # a removal
    again = plots.write_plots(summary, tmp_path)
    assert "Edited" not in svg.read_text() and again["latency_vs_size"][0].is_file()
    redrawn = {p for p in times if p.stat().st_mtime_ns != times[p]}
    assert redrawn == {*first["throughput_vs_size"], *first["latency_vs_size"]}

    times = {p: p.stat().st_mtime_ns for p in times}
    changed = summary.copy()
    changed.loc[0, "throughput_gbps_mean"] = changed.loc[0, "throughput_gbps_mean"] * 2
    plots.write_plots(changed, tmp_path)
    assert all(p.stat().st_mtime_ns != times[p] for p in times)  # the key is the whole summary's

    (tmp_path / plots.DRAWN).write_text("[not what plots.py writes")
    times = {p: p.stat().st_mtime_ns for p in times}
    plots.write_plots(changed, tmp_path)
    assert all(p.stat().st_mtime_ns != times[p] for p in times)


FULL_RUN = RUNS / "20261206T051817Z-lab-study-0bb2"  # a real full.yml lab run: 48 stream cells, 10 intervals each


def _over_time_cells(count: int, scale: float = 1.0, suffix: str = ""):
    """The recorded full run's intervals for its first `count` cells; bytes times `scale` (a slow
    link's tick labels), and `suffix` put into the cell ids before the repetition (a variant's)."""
    import pandas as pd

    series = pd.read_csv(FULL_RUN / "intervals.csv")
    cells = sorted(series["cell_id"].str.replace(r"-r\d+$", "", regex=True).unique())[:count]
    series = series[series["cell_id"].str.replace(r"-r\d+$", "", regex=True).isin(cells)].copy()
    series["bytes"] = series["bytes"] * scale
    series["cell_id"] = series["cell_id"].str.replace(r"(-r\d+)$", suffix + r"\1", regex=True)
    return series


@pytest.mark.parametrize("count,scale,suffix", [
    (1, 1.0, ""), (2, 1e-4, ""), (5, 1.0, ""), (5, 1.0, "-sender=client-nodelay=false"), (48, 1.0, "")])
def test_throughput_over_time_text_fits_its_hand_laid_grid(count, scale, suffix):
    """The grid is laid out from character counts, not measured text: drawn, no y tick label or
    unit runs into another panel or off the page, no panel title into its neighbour's or the
    figure's title, on the recorded full run's intervals (a few cells, a slow link's small
    figures, a variant's long cell ids, all 48 cells)."""
    with plots.style():
        fig = plots.throughput_over_time(_over_time_cells(count, scale, suffix))
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == count
    frames = [ax.get_window_extent(renderer) for ax in axes]
    titles = [ax.title.get_window_extent(renderer) for ax in axes]
    top = fig._suptitle.get_window_extent(renderer)
    for k, ax in enumerate(axes):
        low, high = ax.get_ylim()  # the labels drawn: those of ticks inside the panel's range
        labels = [t.get_window_extent(renderer) for t, at in zip(ax.get_yticklabels(), ax.get_yticks())
                  if low <= at <= high and t.get_text()]
        if ax.get_ylabel():
            labels.append(ax.yaxis.label.get_window_extent(renderer))
            unit = labels[-1]
            assert all(unit.x1 <= box.x0 + 1 for box in labels[:-1]), (k, "the unit runs into the tick labels")
        for box in labels:
            assert box.x0 >= 0, (k, "a y label runs off the page")
            assert not any(box.overlaps(frame) for j, frame in enumerate(frames) if j != k), (k, "into another panel")
        assert not titles[k].overlaps(top), (k, "a panel title runs into the figure's title")
        assert titles[k].x0 >= 0 and titles[k].x1 <= fig.bbox.width
        assert ax.title.get_fontsize() >= 7, (k, "a long cell id is wrapped before it is shrunk unreadable")
        assert not any(titles[k].overlaps(other) for j, other in enumerate(titles) if j != k), (k, "titles collide")
        assert not any(titles[k].overlaps(frame) for frame in frames), (k, "a title runs into a panel")
    assert top.x0 >= 0 and top.x1 <= fig.bbox.width, "the figure's title runs off the page"
