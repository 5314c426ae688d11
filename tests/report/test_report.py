import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.report import answers, formatting, write as report, markdown as reportmd, runfolder
from orchestrator.rows.results import read_results
from orchestrator.errors import OrchestrateError

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"
SECTIONS = [
    "## Setup", "### Hosts", "### Link", "### Config", "## How the numbers are made", "## Tables",
    "## Failed, degraded and unstable cells", "## Plots", "## The study's questions",
    "### From which message size does zero_copy beat one_copy?",
    "### How does throughput scale with threads?",
    "### Was the zero-copy real, or copied?",
    "### From which size does one_copy beat two_copy, and zero_copy beat two_copy?",
    "### Which cache level's misses fall most, per byte?",
    "### How does thread count interact with cache misses and context switches?",
]


def run_copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(RUNS / name, tmp_path / name))


def test_hardware_run_report(tmp_path):
    run = run_copy(tmp_path, "20261120T101500Z-lab-hw-a1b2")
    md = report.write_report(run)
    assert md == run / "report.md"
    text = md.read_text()
    for section in SECTIONS:
        assert section in text, section
    assert (run / "report.html").read_text().count("<table>") >= 5
    summary = pd.read_csv(run / "summary.csv")
    assert len(summary) == 54 and summary["cell"].is_unique
    for name in reportmd.PLOT_TITLES:
        assert f"plots/{name}.png" in text
        assert (run / "plots" / f"{name}.png").stat().st_size > 0
        assert (run / "plots" / f"{name}.svg").stat().st_size > 0
    assert "Xeon" in text and "mlx5_core" in text and "sat at the rate the cells saturate at (23.4 Gbit/s)" in text
    assert "**L1** misses fall most, with zero_copy" in text
    assert "18 real zero-copy" in text and "Real zero-copy in every cell" in text
    assert "stream-one_copy-4096B-2t`: 1 of 3 repetitions failed" in text
    assert "`stream-two_copy-4096B-2t`: unstable" in text
    assert answers.NOT_ANSWERABLE not in text


def test_vm_run_report_is_honest_about_missing_data(tmp_path):
    run = run_copy(tmp_path, "20261125T090000Z-vm-e5f6")
    text = report.write_report(run).read_text()
    for section in SECTIONS:
        assert section in text, section
    assert "No rr cells in this run" in text
    assert "L1 and LLC misses were not counted" in text
    assert "not counted" in text
    assert "**The copied cells are not zero-copy results**" in text
    assert "Local link (loopback or veth)" in text
    assert "server NIC offloads on: generic-receive-offload" in text
    # a copied zero_copy cell never appears under the bare name in a table row
    assert "| zero_copy |" not in text


def test_crossover_on_fixture():
    run = runfolder.load_run(RUNS / "20261120T101500Z-lab-hw-a1b2")
    from orchestrator.report import stats

    from orchestrator.report.answers import modes
    from orchestrator.report.answers.context import Context

    summary = stats.summarize(run.results)
    found = modes.pairs(Context.of(run, summary), "zero_copy", "one_copy", ("cycles_per_byte",))
    assert modes.starts(found) == {1: 16384, 2: 16384, 4: 16384}


def test_missing_run_folder_is_a_user_error(tmp_path):
    with pytest.raises(OrchestrateError, match="no such run folder"):
        report.write_report(tmp_path / "nope")


def test_missing_host_facts_are_noted(tmp_path):
    run = run_copy(tmp_path, "20261125T090000Z-vm-e5f6")
    (run / "hosts" / "client.json").unlink()
    text = report.write_report(run).read_text()
    assert "hosts/client.json is missing" in text


def test_single_repetition_and_multiplexed_counters_are_said(tmp_path):
    run = run_copy(tmp_path, "20261120T101500Z-lab-hw-a1b2")
    results = pd.read_csv(run / "results.csv", dtype=str, keep_default_na=False)
    results = results[results["repetition"] == "1"].copy()
    results["server_llc_load_misses_run_pct"] = "62.5"
    results.to_csv(run / "results.csv", index=False)
    text = report.write_report(run).read_text()
    assert "perf multiplexed `server_llc_load_misses` (ran 62% of the time at worst)" in text
    assert "54 cells have a single successful repetition" in text
    assert "(n=1)" in text
    assert "one repetition per cell: no interval to judge by" in text
    summary = pd.read_csv(run / "summary.csv")
    assert summary["throughput_gbps_ci_low"].isna().all()
    assert not summary["unstable"].any()


def test_number_formatting():
    assert formatting.num(float("nan")) == "—"
    assert formatting.num(171234.0) == "171,000"
    assert formatting.num(0.41234) == "0.412"
    assert formatting.num(23.449) == "23.4"
    assert formatting.num(0.0) == "0"


CELLS = Path(__file__).parents[1] / "fixtures" / "cells"


# The events the recorded cells' perf counted (tests/fixtures/cells/README.md).
RECORDED_EVENTS = ("cycles", "instructions", "L1-dcache-load-misses", "LLC-load-misses", "context-switches",
                   "cpu-migrations", "task-clock")


def recorded_cell(folder: Path):
    """The plan's cell of a recorded cell folder, from its hand-written identity.json."""
    import json

    from orchestrator.experiment.plan import Cell

    identity = json.loads((folder / "identity.json").read_text())
    varied = ("sender",) if identity["sender"] != "server" else ()
    return Cell(**{k: identity[k] for k in ("workload", "mode", "message_size", "threads", "fields", "sender",
                                            "nodelay", "sndbuf", "rcvbuf", "repetition")},
                receive=identity.get("receive", "copy"), uring_buffers=identity.get("uring_buffers", "plain"),
                varied=varied)


def recorded_cells_run(tmp_path: Path) -> Path:
    """A run folder whose results.csv the run's own reader (cellrow.read_cell) built from the cell
    files recorded with the real agent and perf (tests/fixtures/cells)."""
    from orchestrator.rows.cellrow import RowSettings, read_cell
    from orchestrator.rows.results import ResultsTable

    run = tmp_path / "20251125T220000Z-fixture-a1b2"
    run.mkdir()
    results = ResultsTable(run / "results.csv")
    settings = RowSettings(run.name, "process", RECORDED_EVENTS, warmup=0.5, checks=None)
    for folder in sorted(p for p in CELLS.iterdir() if p.is_dir()):
        results.append(read_cell(folder, recorded_cell(folder), settings).row)
    return run


HW_PERF = Path(__file__).parents[1] / "fixtures" / "perf" / "hw_cells"


def hardware_cells(tmp_path: Path) -> Path:
    """The recorded cells with their perf files swapped for a hardware host's (hand-written in
    recorded layout, tests/fixtures/perf/README.md): cycles and cache misses are counted."""
    cells = Path(shutil.copytree(CELLS, tmp_path / "hw-cells"))
    for perf in HW_PERF.glob("*/*.perf.csv"):
        shutil.copyfile(perf, cells / perf.parent.name / perf.name)
    return cells


def test_report_on_rows_from_the_real_row_writer(tmp_path, monkeypatch):
    from orchestrator.report import derive, stats

    monkeypatch.setattr(f"{__name__}.CELLS", hardware_cells(tmp_path))
    run = recorded_cells_run(tmp_path)
    text = report.write_report(run).read_text()
    for section in SECTIONS:
        assert section in text, section
    assert "config.yml is missing" in text and "hosts/server.json is missing" in text
    rows = derive.derive_metrics(read_results(run / "results.csv")).set_index("cell_id")
    # the client sends in this cell: the sender's figures are the client_* columns
    zero = rows.loc["stream-zero_copy-65536B-1t-sender=client-r1"]
    assert zero["sender_cpu_s"] == zero["client_cpu_s"]
    assert zero["sender_cpu_s_per_gb"] == pytest.approx(zero["client_cpu_s"] / (zero["bytes_received"] / 1e9))
    # By hand from the fixture files: the client's cycles over the server's bytes received.
    assert zero["sender_cycles_per_byte"] == pytest.approx(7_203_629_000 / 5_856_296_960)
    # cycles per byte is the two sides' sum where both were counted, and missing (never 0) otherwise
    both = rows["server_cycles"].notna() & rows["client_cycles"].notna() & (rows["workload"] == "stream")
    assert list(rows.index[both & (rows["status"] == "ok")]) == ["stream-one_copy-65536B-2t-r1"]
    expected = (rows["server_cycles"] + rows["client_cycles"]) / rows["bytes_received"]
    pd.testing.assert_series_equal(rows.loc[both, "cycles_per_byte"], expected[both].astype(float), check_names=False)
    assert rows.loc[~both, "cycles_per_byte"].isna().all() and (~both).sum() == 3
    one = rows.loc["stream-one_copy-65536B-2t-r1"]
    # server (sender) and client (receiver) counts from the perf files, over the client's bytes
    assert one["cycles_per_byte"] == pytest.approx((2_872_769_000 + 11_494_237_000) / 13_738_180_608)
    assert one["l1_misses_per_kib"] == pytest.approx((31_583_126 + 178_830_041) / (13_738_180_608 / 1024))
    assert one["llc_misses_per_kib"] == pytest.approx((412_145 + 21_467_905) / (13_738_180_608 / 1024))
    assert one["context_switches_per_s"] == pytest.approx((8573 + 9334) / (0.5 + 2.001218))
    # ... and the report states them, rounded to three figures
    assert "| one_copy | 64KiB | 2 | 0.209 (n=1) | 0.837 (n=1) | 15.7 (n=1) | 1.63 (n=1) | 7,160 (n=1) |" in text
    assert "| zero_copy: copied (not zero-copy) | 64KiB | 1 | 1.23 (n=1) | not counted |" in text
    summary = stats.summarize(read_results(run / "results.csv")).set_index("cell")
    assert summary.loc["stream-zero_copy-65536B-1t-sender=client", "mode_label"] == "zero_copy: copied (not zero-copy)"
    assert summary.loc["stream-two_copy-4096B-1t", "failed"] == 1
    assert "1 of 1 repetitions failed" in text


def test_report_on_the_real_recorded_vm_run(tmp_path):
    run = run_copy(tmp_path, "20261125T222925Z-vmcheck-598f")
    text = report.write_report(run).read_text()
    for section in SECTIONS:
        assert section in text, section
    summary = pd.read_csv(run / "summary.csv")
    assert len(summary) == 32 and (summary["repetitions"] == 2).all()
    assert set(summary["mode"]) == {"two_copy", "one_copy", "zero_copy", "sendfile"}
    zero = summary[summary["mode"] == "zero_copy"]
    assert (zero["mode_label"] == "zero_copy: copied (not zero-copy)").all()
    assert "**The copied cells are not zero-copy results**" in text
    assert "L1 and LLC misses were not counted" in text
    assert "their 95% intervals use t = 12.7" in text
    assert summary["latency_p50_us_mean"].notna().sum() == 16  # the rr cells


def test_a_run_varying_sender_and_nodelay_reports_each_combination_apart(tmp_path):
    run_dir = run_copy(tmp_path, "20261125T231027Z-variants-85df")
    text = report.write_report(run_dir).read_text()
    for sender in ("server", "client"):
        for nodelay in ("False", "True"):
            label = f"sender={sender}, nodelay={nodelay}"
            assert f"# With {label}" in text
            folder = run_dir / "plots" / f"sender={sender}_nodelay={nodelay}"
            assert (folder / "throughput_vs_size.png").stat().st_size > 0
    assert text.count("## The study's questions") == 4
    assert "zero_copy: copied (not zero-copy)" in text


def _markdown(run_dir: Path) -> str:
    """report.md's text without drawing the plots (named as if they were drawn)."""
    from orchestrator.report import stats

    run = runfolder.load_run(run_dir)
    return reportmd.render_markdown(run, stats.summarize(run.results), {"": list(reportmd.PLOT_TITLES)})


def test_user_space_only_counts_are_never_passed_off_as_whole(tmp_path):
    run = run_copy(tmp_path, "20261120T101500Z-lab-hw-a1b2")
    whole = " ".join(_markdown(run).split())
    assert "(user space only)" not in whole and "**User space only:**" not in whole and "Cycles per byte" in whole
    results = pd.read_csv(run / "results.csv", dtype=str, keep_default_na=False)
    assert (results["sender"] == "server").all() and results["server_cycles"].ne("").any()
    results["server_perf_counts"] = "user"        # the sender: perf_access user-only there
    results["client_perf_counts"] = "user+kernel"
    results.to_csv(run / "results.csv", index=False)
    text = " ".join(_markdown(run).split())
    # next to the counter figures
    assert "| sender cycles/B (user space only) | receiver cycles/B |" in text
    assert ("**User space only:** perf counted user space only on the server (perf_access: user-only): kernel time, "
            "where the copies happen, is not in the cycle and cache-miss counts; they are not whole counts.") in text
    # the cycle questions read CPU time (user + system) instead, and say why
    zero_vs_one = text.split("### From which message size does zero_copy beat one_copy?")[1].split("###")[0]
    assert "CPU time per byte (both sides)" in zero_vs_one and "Cycles per byte" not in zero_vs_one
    assert "cycles were counted in user space only" in zero_vs_one
    vs_two = text.split("### From which size does one_copy beat two_copy")[1].split("###")[0]
    assert "cycles were counted in user space only" in vs_two and "Cycles per byte" not in vs_two
    # the cache-miss questions keep their answers, with the caveat
    cache = text.split("### Which cache level's misses fall most, per byte?")[1].split("###")[0]
    assert "misses fall most" in cache and "perf counted user space only on the server" in cache
    threads = text.split("### How does thread count interact with cache misses and context switches?")[1]
    assert "the miss ratios cover user space only" in threads
    assert "Caveats for this run" in text and "Per-byte CPU cost is read from CPU time" in text
    # and under the plots that can show those counts
    for name in reportmd.COUNTER_PLOTS:
        after = text.split(f"/{name}.svg)")[1].split("###")[0]
        assert "*User space only:* perf counted user space only on the server" in after
    assert "*User space only:*" not in text.split("/throughput_vs_size.svg)")[1].split("###")[0]


def test_every_section_and_every_figure_of_a_real_lab_run(tmp_path):
    """The recorded lab run has every section report.md can have, and report.html carries every
    figure itself, the evidence sections' too (markdown writes their `alt` before `src`)."""
    run_dir = run_copy(tmp_path, "20261206T023809Z-labfull-87e3")
    text = report.write_report(run_dir).read_text()
    for section in SECTIONS + ["## What this run shows", "### Caveats for this run", "## Throughput over time",
                               "## TCP: retransmits and limits", "## Where the CPU went", "## Against iperf3",
                               "### Stream: throughput and CPU", "### Stream: hardware and software counters",
                               "### Request/response"]:
        assert section in text, section
    assert "![Throughput over time](plots/throughput_over_time.png)" in text  # report.md keeps its files
    assert "![Where the CPU went](plots/where_cpu_went.png)" in text
    page = (run_dir / "report.html").read_text()
    tags = re.findall(r"<img\b[^>]*>", page)
    assert len(tags) == 1 + len(reportmd.PLOT_TITLES) + 2  # headline, every plot, over time, CPU
    assert all(re.search(r'\ssrc="data:image/svg\+xml;base64,', tag) for tag in tags), [t[:80] for t in tags]
    for title in ("Throughput over time", "Where the CPU went"):
        assert re.search(rf'<img alt="{title}" src="data:image/svg\+xml;base64,', page), title
    assert "plots/" not in page


def test_html_report_stands_alone_and_opens_with_the_answer(tmp_path):
    run_dir = run_copy(tmp_path, "20261120T101500Z-lab-hw-a1b2")
    report.write_report(run_dir)
    page = (run_dir / "report.html").read_text()
    # Nothing is fetched: every image is a data URI, no stylesheet or script comes from elsewhere.
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) == 1 + len(reportmd.PLOT_TITLES)  # the headline figure, then every plot
    assert all(src.startswith("data:image/svg+xml;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:|//|plots/)', page)
    # The answer first: the summary, the headline figure and the problem cells come before setup and method.
    order = [page.index(marker) for marker in (
        "What this run shows", 'class="headline"', "Failed, degraded and unstable cells", "<summary>Tables",
        "<summary>Setup", "<summary>How the numbers are made")]
    assert order == sorted(order)
    summary = page[page.index("What this run shows"):page.index('class="headline"')]
    assert summary.count("<li>") == 6 and "<strong>L1</strong> misses fall most" in summary
    assert "@media print" in page and "addEventListener(\"click\"" in page
    # The markdown report keeps its sections and its relative plots.
    assert "## What this run shows" in (run_dir / "report.md").read_text()
