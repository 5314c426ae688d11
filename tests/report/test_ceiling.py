"""Cells bounded by the link (report/ceiling.py), on recorded runs: a plateau the cells saturate at,
a qdisc's rate from the host facts, and a NIC speed that the cells beat and so is no ceiling."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from orchestrator.report import answers, ceiling, evidence, iperf3, markdown, runfolder, stats

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"


def _means(run_dir: Path) -> pd.Series:
    """This test's own per-cell mean throughput of the stream cells, iperf3's left out."""
    rows = pd.read_csv(run_dir / "results.csv")
    rows = rows[(rows["status"] == "ok") & (rows["workload"] == "stream") & (rows["mode"] != "iperf3")]
    return rows.groupby(rows["cell_id"].str.replace(r"-r\d+$", "", regex=True))["throughput_gbps"].mean()


def _bounded(run_dir: Path) -> dict:
    run = runfolder.load_run(run_dir)
    return ceiling.bounded_cells(run, iperf3.without_reference(stats.summarize(run.results)))


def test_a_plateau_that_cells_of_several_modes_reach_is_the_ceiling():
    run_dir = RUNS / "20261120T101500Z-lab-hw-a1b2"  # 25 GbE; the cells saturate below it
    means = _means(run_dir)
    at = means[means >= 0.95 * means.max()]
    assert len(at) >= 3 and at.index.str.split("-").str[1].nunique() >= 2 and means.max() < 0.95 * 25
    bounded = _bounded(run_dir)
    assert sorted(bounded) == sorted(at.index)
    assert {c.source for c in bounded.values()} == {"the rate the cells saturate at"}


def test_nothing_bounds_loopback_nor_a_veth_whose_nominal_speed_the_cells_beat():
    assert _bounded(RUNS / "20261206T051731Z-quick-033a") == {}
    lab = RUNS / "20261206T023809Z-labfull-87e3"
    facts = json.loads((lab / "hosts" / "server.json").read_text())
    assert facts["nic"]["speed"] == "10000Mb/s" and _means(lab).max() > 10.5
    assert _bounded(lab) == {}


def test_a_shaped_link_bounds_the_cells_at_its_rate(tmp_path):
    """The lab run's hosts given a tbf root qdisc at 9 Gbit/s (host facts `nic.qdisc`, `nic.qdisc_rate_mbit`,
    as a shaped lab records them): the cells at 95% of it or more are bounded by the link, in the tables'
    flags, the TCP section's "bounded by" and the answers. The veth's nominal 10 Gbit/s, which cells beat,
    is no ceiling."""
    run_dir = Path(shutil.copytree(RUNS / "20261206T023809Z-labfull-87e3", tmp_path / "run"))
    for role in ("server", "client"):
        path = run_dir / "hosts" / f"{role}.json"
        facts = json.loads(path.read_text())
        facts["nic"].update(qdisc="tbf", qdisc_rate_mbit=9000.0)
        path.write_text(json.dumps(facts))
    means = _means(run_dir)
    assert means.max() > 10.5  # faster than the veth's "10000Mb/s"
    held = sorted(means[means >= 0.95 * 9].index)
    assert held and len(held) < len(means)
    bounded = _bounded(run_dir)
    assert sorted(bounded) == held
    assert {c.text() for c in bounded.values()} == {"the tbf qdisc rate (9 Gbit/s)"}
    results = pd.read_csv(run_dir / "results.csv")
    section = evidence.tcp_section(results, bounded)
    for cell in held:
        line = next(line for line in section.splitlines() if line.startswith(f"| `{cell}` |"))
        assert "the link" in line
    run = runfolder.load_run(run_dir)
    summary = iperf3.without_reference(stats.summarize(run.results))
    tables = markdown.stream_tables(summary, conditions_flags=markdown.condition_flags(run, summary))
    assert tables.count("at the link (the tbf qdisc rate, 9 Gbit/s)") == len(held)
    shows = answers.summary_section(run, summary)
    assert "the tbf qdisc rate (9 Gbit/s): the link was the limit there, not the copies" in shows
    # The setup's link facts name the shaping beside the NIC's nominal speed.
    assert "- Shaped by the data interface's tbf qdisc: 9.00 Gbit/s (slower than the NIC: the qdisc is the link's ceiling)" \
        in markdown.setup_section(run)


def test_a_plateau_just_under_a_qdisc_rate_is_named_by_the_qdisc():
    """A real run over a lab shaped to 1000 Mbit/s by tbf: the cells saturate at 0.99 Gbit/s, just
    under the qdisc's rate, so the ceiling is named by its cause, the qdisc, not as a bare plateau."""
    run_dir = RUNS / "20261206T052758Z-quick-7003"
    facts = json.loads((run_dir / "hosts" / "server.json").read_text())
    assert facts["nic"]["qdisc"] == "tbf" and facts["nic"]["qdisc_rate_mbit"] == 1000
    means = _means(run_dir)
    assert 0.95 <= means.max() < 1.0
    bounded = _bounded(run_dir)
    assert sorted(bounded) == sorted(means[means >= 0.95].index)
    assert {c.text() for c in bounded.values()} == {"the tbf qdisc rate (1 Gbit/s)"}
