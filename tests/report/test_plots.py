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
