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
