"""The analysis side of several host pairs, on recorded fixtures: the pair column's
default, one summary row per pair and cell, host facts per pair, each pair's ratio to a baseline
pair (checked against a hand computation), `--baseline`, the host-facts table, and a one-pair
report that is as it was. `pairs3` is made by tests/fixtures/runs/make_pairs_fixture.py."""

from __future__ import annotations

import importlib.util
import io
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scistats

from orchestrator import cli
from orchestrator.report import derive, pairs, plots, write as report, runfolder, stats
from orchestrator.experiment import dimensions
from orchestrator.rows import results
from orchestrator.errors import ConfigError, ExitStatus

from ..conftest import require

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"
ONE_PAIR = "20261125T222925Z-vmcheck-598f"  # recorded before pairs existed: no pair column
PAIRS3 = "pairs3"
FACTORS = {"gen1": 1.0, "gen2": 1.5, "gen3": 0.6}  # make_pairs_fixture.PAIRS


@pytest.fixture(scope="module")
def pairs_report(tmp_path_factory) -> Path:
    """pairs3's report, written once for the tests that read it."""
    run_dir = Path(shutil.copytree(RUNS / PAIRS3, tmp_path_factory.mktemp("pairs") / PAIRS3))
    report.write_report(run_dir)
    return run_dir


def test_rows_without_a_pair_column_read_as_the_default_pair():
    frame = results.read_results(RUNS / ONE_PAIR / "results.csv")
    assert len(frame) == 64
    assert set(frame["pair"]) == {"default"}
    assert list(frame.columns).index("pair") == list(frame.columns).index("cell_id") + 1
    series = dimensions.with_pair(pd.DataFrame({"cell_id": ["a", "b"], "bytes": [1, 2]}))
    assert list(series.columns) == ["cell_id", "pair", "bytes"] and list(series["pair"]) == ["default", "default"]


def test_an_empty_pair_value_reads_as_the_default_pair(tmp_path):
    text = (RUNS / PAIRS3 / "results.csv").read_text().splitlines()
    header = text[0].split(",")
    column = header.index("pair")
    blank = [",".join("" if i == column else v for i, v in enumerate(line.split(","))) for line in text[1:3]]
    (tmp_path / "results.csv").write_text("\n".join([text[0], *blank]) + "\n")
    frame = results.read_results(tmp_path / "results.csv")
    assert list(frame["pair"]) == ["default", "default"]


def test_pair_is_an_identity_column_but_not_a_cell_dimension():
    assert dimensions.IDENTITY_COLUMNS[:3] == ("run_id", "cell_id", "pair")
    assert "pair" not in dimensions.CELL_KEYS and "pair" not in dimensions.CELL_COLUMNS
    assert dimensions.SUMMARY_KEYS == ("pair", *dimensions.CELL_COLUMNS)


def test_summary_has_one_row_per_pair_and_cell():
    one = stats.summarize(runfolder.load_run(RUNS / ONE_PAIR).results)
    assert set(one["pair"]) == {"default"} and one["cell"].is_unique and len(one) == 32
    summary = stats.summarize(runfolder.load_run(RUNS / PAIRS3).results)
    assert len(summary) == 3 * 32
    assert not summary.duplicated(["pair", "cell"]).any()
    by = summary.set_index(["pair", "cell"])["throughput_gbps_mean"]
    cell = "stream-one_copy-65536B-1t"
    assert by[("gen1", cell)] > 0
    # The fixture scales each pair's bytes: the means keep the factor (to the rounding of byte counts).
    assert by[("gen2", cell)] / by[("gen1", cell)] == pytest.approx(1.5, rel=1e-6)
    assert by[("gen3", cell)] / by[("gen1", cell)] == pytest.approx(0.6, rel=1e-6)


def test_host_facts_are_loaded_per_pair():
    run = runfolder.load_run(RUNS / PAIRS3)
    assert run.pairs == ["gen1", "gen2", "gen3"] and run.pair_order == "the inventory's order"
    assert {p: run.pair_hosts[p]["server"]["nic"]["mtu"] for p in run.pairs} == {"gen1": 1500, "gen2": 9000,
                                                                                   "gen3": 65536}
    assert run.notes == []
    view = runfolder.pair_view(run, "gen2")
    assert set(view.results["pair"]) == {"gen2"} and len(view.results) == 64
    assert view.hosts["client"]["nic"]["mtu"] == 9000
    assert view.inventory["server"]["data_address"] == "127.0.0.1"
    one = runfolder.load_run(RUNS / ONE_PAIR)
    assert one.pairs == ["default"] and one.hosts["server"]["nic"]["mtu"] == 65536


def test_pairs_the_inventory_does_not_name_are_in_alphabetical_order(tmp_path):
    run_dir = Path(shutil.copytree(RUNS / PAIRS3, tmp_path / "run"))
    (run_dir / "inventory.yml").unlink()
    run = runfolder.load_run(run_dir)
    assert run.pairs == ["gen1", "gen2", "gen3"] and run.pair_order == "alphabetical order"
    assert "inventory.yml is missing" in run.notes


def _welch_by_hand(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """ratio, CI low, CI high and p of Welch's t on the log values, written out from the formulas
    (stats.ratio's docstring): one statistic for the interval and the p-value."""
    la, lb = np.log(a), np.log(b)
    qa, qb = np.var(la, ddof=1) / len(a), np.var(lb, ddof=1) / len(b)
    se = math.sqrt(qa + qb)
    dof = (qa + qb) ** 2 / (qa**2 / (len(a) - 1) + qb**2 / (len(b) - 1))
    diff = np.mean(lb) - np.mean(la)
    t = scistats.t.ppf(0.975, dof)
    p = 2 * scistats.t.sf(abs(diff / se), dof)
    return math.exp(diff), math.exp(diff - t * se), math.exp(diff + t * se), p


@pytest.mark.parametrize("metric", ["throughput_gbps", "cpu_s_per_gb"])
def test_ratio_table_matches_a_hand_computation(metric):
    run = runfolder.load_run(RUNS / PAIRS3)
    got = pairs.ratio_table(run, "gen1")
    assert set(got["pair"]) == {"gen2", "gen3"} and set(got["baseline"]) == {"gen1"}
    derived = derive.derive_metrics(run.results)
    cell = "stream-one_copy-65536B-1t"
    for pair in ("gen2", "gen3"):
        def values(p: str) -> list[float]:
            rows = derived[(derived["pair"] == p) & (derived["cell_id"].map(stats.cell_key) == cell)
                           & (derived["status"] == "ok")]
            return rows[metric].astype(float).tolist()

        a, b = values("gen1"), values(pair)
        assert len(a) == 2 and len(b) == 2
        ratio, low, high, p = _welch_by_hand(a, b)
        row = got[(got["pair"] == pair) & (got["cell_id"] == cell) & (got["metric"] == metric)].iloc[0]
        expected = FACTORS[pair] if metric == "throughput_gbps" else 1 / FACTORS[pair]  # CPU time is not scaled
        assert row["ratio"] == pytest.approx(ratio, rel=1e-9) and row["ratio"] == pytest.approx(expected, rel=1e-4)
        assert not math.isnan(row["ratio_ci_low"]) and not math.isnan(row["ratio_ci_high"])
        assert row["ratio_ci_low"] == pytest.approx(low, rel=1e-9)
        assert row["ratio_ci_high"] == pytest.approx(high, rel=1e-9)
        assert row["ratio_ci_low"] < row["ratio"] < row["ratio_ci_high"]
        assert 0 <= row["p_value"] <= 1 and row["p_value"] == pytest.approx(p, rel=1e-9)


def test_ratio_table_leaves_out_metrics_the_hosts_did_not_count():
    # The VM had no hardware counters: cycles per byte is not in the table, CPU time per GB is.
    got = pairs.ratio_table(runfolder.load_run(RUNS / PAIRS3), "gen1")
    assert "cycles_per_byte" not in set(got["metric"])
    assert {"throughput_gbps", "cpu_s_per_gb"} <= set(got["metric"])



def test_glance_sums_up_each_pair_against_the_baseline():
    table = pairs.ratio_table(runfolder.load_run(RUNS / PAIRS3), "gen1")
    got = pairs.glance(table)
    assert set(got["pair"]) == {"gen2", "gen3"}
    for _, row in got.iterrows():
        detail = table[(table["pair"] == row["pair"]) & (table["metric"] == row["metric"])]
        assert row["cells"] == len(detail) > 0
        assert row["better"] + row["worse"] + row["no_clear_difference"] + row["undecided"] == row["cells"]
        assert row["min_ratio"] <= row["geomean_ratio"] <= row["max_ratio"]
    throughput = got.set_index(["pair", "metric"]).loc[("gen2", "throughput_gbps")]
    assert throughput["geomean_ratio"] == pytest.approx(FACTORS["gen2"], rel=1e-4)
    # gen2 moved 1.5x the bytes: Welch calls some cells better and none worse, on throughput and CPU per GB alike.
    cpu = got.set_index(["pair", "metric"]).loc[("gen2", "cpu_s_per_gb")]
    assert throughput["better"] > 0 and throughput["worse"] == 0 and cpu["better"] > 0 and cpu["worse"] == 0
    slower = got.set_index(["pair", "metric"]).loc[("gen3", "throughput_gbps")]
    assert slower["geomean_ratio"] == pytest.approx(FACTORS["gen3"], rel=1e-4) and slower["worse"] > 0 == slower["better"]


def test_a_pair_without_rows_is_named_in_the_report(tmp_path):
    """A pair that failed before finishing any cell has no row: the report says so, and how to finish it."""
    import yaml

    run_dir = Path(shutil.copytree(RUNS / PAIRS3, tmp_path / "run"))
    inventory = yaml.safe_load((run_dir / "inventory.yml").read_text())
    inventory["pairs"]["gen4"] = inventory["pairs"]["gen3"]
    (run_dir / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    report.write_report(run_dir)
    md = (run_dir / "report.md").read_text()
    assert "The inventory also named gen4: no cell of it was measured (the pair failed before finishing any cell;" in md
    # The folder's absolute path, so that the command works pasted in any directory.
    assert run_dir.is_absolute() and f"`orchestrate run --resume {run_dir.resolve()}` runs it" in md
    assert "# Pair gen4" not in md


def test_the_resume_hint_is_a_path_a_shell_takes_whole(tmp_path, monkeypatch):
    """A relative folder given to `report` still gives an absolute path; a space in it is quoted."""
    import shlex

    import yaml

    run_dir = Path(shutil.copytree(RUNS / PAIRS3, tmp_path / "my runs" / "run"))
    inventory = yaml.safe_load((run_dir / "inventory.yml").read_text())
    inventory["pairs"]["gen4"] = inventory["pairs"]["gen3"]
    (run_dir / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    report.write_report(Path("my runs") / "run")
    md = (run_dir / "report.md").read_text()
    [command] = [part for part in md.split("`") if part.startswith("orchestrate run --resume")]
    assert shlex.split(command) == ["orchestrate", "run", "--resume", str(run_dir.resolve())]

def test_report_of_several_pairs(pairs_report):
    md = (pairs_report / "report.md").read_text()
    assert "## Pairs compared" in md
    assert "The baseline is **gen1** (the first pair in the inventory's order" in md
    for pair in ("gen1", "gen2", "gen3"):
        assert f"# Pair {pair}\n" in md
    # The host-facts table: one column per pair, the MTU row marked as differing.
    assert "| fact | gen1 | gen2 | gen3 |  |" in md
    assert "| server.nic.mtu | 1500 | 9000 | 65536 | differs |" in md
    assert "| server.cpu_model | AMD EPYC | AMD EPYC | AMD EPYC |  |" in md
    # At a glance, before the per-cell detail: gen2's throughput is 1.5x gen1's over all 32 cells.
    assert md.index("### At a glance") < md.index("### Each pair against gen1")
    assert "| gen2 | Throughput | 32 | 1.5 | 1.5 – 1.5 |" in md
    ratio_rows = [line for line in md.splitlines() if line.startswith("| gen2 | stream-one_copy-65536B-1t | Throughput")]
    assert len(ratio_rows) == 1 and "| 1.5 [" in ratio_rows[0]
    # compare words the verdicts with the pairs' names: gen3 (0.6x the bytes) is worse than the baseline.
    assert "| gen3 worse |" in md and "| B worse |" not in md and "| B better |" not in md
    written = pd.read_csv(pairs_report / "pairs.csv")
    assert len(written) > 0 and set(written["pair"]) == {"gen2", "gen3"}
    summary = pd.read_csv(pairs_report / "summary.csv")
    assert len(summary) == 96 and set(summary["pair"]) == {"gen1", "gen2", "gen3"}


def test_pairs_is_the_analysis_and_reportmd_words_it():
    """pairs.py computes (ratio table, glance, host facts); report.md's wording of them is report/markdown.py's."""
    require(importlib.util.find_spec("grimp") is not None, "grimp (installed with import-linter) is missing")
    import grimp

    from orchestrator.report import markdown as reportmd

    graph = grimp.build_graph("orchestrator", cache_dir=None)
    imported = graph.find_modules_directly_imported_by("orchestrator.report.pairs")
    assert "orchestrator.report.compare" in imported  # the graph is the real one
    assert not imported & {"orchestrator.report.formatting", "orchestrator.report.markdown", "orchestrator.report.html"}
    assert not [name for name in vars(pairs) if name.lower().endswith("section") or name == "md_table"]
    assert "orchestrator.report.pairs" in graph.find_modules_directly_imported_by("orchestrator.report.markdown")
    assert reportmd.pairs_compared(runfolder.load_run(RUNS / PAIRS3), "gen1",
                                   pairs.ratio_table(runfolder.load_run(RUNS / PAIRS3), "gen1"),
                                   False).markdown().startswith("## Pairs compared\n")


def test_host_facts_list_where_each_pair_ran_apart_from_its_differences(tmp_path):
    """Names, addresses and paths differ between any two pairs: they are listed apart, never as
    "differs", so that a real difference (the MTU here) stands out."""
    import json

    run_dir = Path(shutil.copytree(RUNS / PAIRS3, tmp_path / "run"))
    for number, pair in enumerate(("gen1", "gen2", "gen3"), start=1):
        for role in ("server", "client"):
            path = run_dir / "pairs" / pair / "hosts" / f"{role}.json"
            facts = json.loads(path.read_text())
            facts.update(ssh_target=f"root@198.19.{number}.2:22", data_address=f"198.18.{number}.1",
                         agent_path=f"/tmp/orchestrate-lab/x-{pair}/{role}/agents/f27f")
            facts["nic"]["addresses"] = [f"198.18.{number}.1", f"fe80::{number}"]
            path.write_text(json.dumps(facts))
    run = runfolder.load_run(run_dir)
    _, rows = pairs.host_facts(run)
    differing = {row[0] for row in rows if row[-1] == "differs"}
    assert {"server.nic.mtu", "client.nic.mtu"} <= differing
    assert not {f"{role}.{name}" for role in ("server", "client")
                for name in ("ssh_target", "data_address", "agent_path", "nic.addresses", "hostname")} & differing
    assert {row[0] for row in rows} >= {"server.cpu_model", "client.nic.driver"}  # the key facts stay
    _, where = pairs.where_facts(run)
    assert ["server.ssh_target", "root@198.19.1.2:22", "root@198.19.2.2:22", "root@198.19.3.2:22"] in where
    assert {row[0] for row in where} == {f"{role}.{name}" for role in ("server", "client") for name in
                                         ("hostname", "ssh_target", "data_address", "agent_path", "nic.addresses")}
    report.write_report(run_dir)
    md = (run_dir / "report.md").read_text()
    facts = md[md.index("### Host facts per pair"):md.index("### Each pair against gen1")]
    assert "| server.nic.mtu | 1500 | 9000 | 65536 | differs |" in facts
    assert "| server.ssh_target | root@198.19.1.2:22 | root@198.19.2.2:22 | root@198.19.3.2:22 |\n" in facts
    assert not [line for line in facts.splitlines() if "ssh_target" in line and "differs" in line]


def test_each_study_plot_has_a_row_of_panels_per_pair():
    summary = stats.summarize(runfolder.load_run(RUNS / PAIRS3).results)
    fig = plots.throughput_vs_size(summary)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 3 * 2  # three pairs x (1 and 2 threads)
    titles = [ax.get_title() for ax in axes]
    assert titles == ["gen1: 1 thread", "gen1: 2 threads", "gen2: 1 thread", "gen2: 2 threads",
                      "gen3: 1 thread", "gen3: 2 threads"]
    assert len({ax.get_ylim() for ax in axes}) == 1  # one y scale, so the pairs' heights compare
    one = plots.throughput_vs_size(stats.summarize(runfolder.load_run(RUNS / ONE_PAIR).results))
    assert [ax.get_title() for ax in one.axes] == ["1 thread", "2 threads"]


def test_baseline_chooses_the_pair_divided_by(tmp_path):
    run_dir = Path(shutil.copytree(RUNS / PAIRS3, tmp_path / "run"))
    report.write_report(run_dir, baseline="gen3")
    md = (run_dir / "report.md").read_text()
    assert "The baseline is **gen3** (chosen with `--baseline`)" in md
    assert set(pd.read_csv(run_dir / "pairs.csv")["pair"]) == {"gen1", "gen2"}


def test_an_unknown_baseline_is_refused_naming_the_pairs(tmp_path):
    run_dir = Path(shutil.copytree(RUNS / PAIRS3, tmp_path / "run"))
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(ConfigError, match="its pairs are gen1, gen2, gen3"):
        report.write_report(run_dir, baseline="gen9")
    stdout, stderr = io.StringIO(), io.StringIO()
    assert cli.main(["report", str(run_dir), "--baseline", "gen9"], stdout=stdout, stderr=stderr) == \
        ExitStatus.BAD_ARGUMENT == 2
    assert "'gen9'" in stderr.getvalue() and "gen1, gen2, gen3" in stderr.getvalue()
    assert sorted(p.name for p in run_dir.iterdir()) == before  # nothing written


def test_a_one_pair_report_is_as_before(tmp_path):
    run_dir = Path(shutil.copytree(RUNS / ONE_PAIR, tmp_path / "run"))
    report.write_report(run_dir)
    md = (run_dir / "report.md").read_text()
    assert md.startswith("# Run ") and "## Setup" in md
    assert "Pairs compared" not in md and "# Pair " not in md and not (run_dir / "pairs.csv").exists()
    assert "one row per cell in `summary.csv`" in md
    # --baseline naming the one pair changes nothing; naming another is refused.
    report.write_report(run_dir, baseline="default")
    assert (run_dir / "report.md").read_text() == md
    with pytest.raises(ConfigError, match="its pairs are default"):
        report.write_report(run_dir, baseline="gen1")


def test_each_pair_gets_its_own_throughput_over_time(tmp_path):
    run_dir = Path(shutil.copytree(RUNS / PAIRS3, tmp_path / "run"))
    cell = "stream-one_copy-65536B-1t-r1"
    rows = [{"run_id": "x", "cell_id": cell, "pair": "gen2", "workload": "stream", "mode": "one_copy",
             "message_size": 65536, "threads": 1, "repetition": 1, "status": "ok", "role": "client", "connection": 0,
             "interval": k, "interval_s": 0.1, "t_start_s": k / 10, "t_end_s": (k + 1) / 10, "length_s": 0.1,
             "bytes": 10**8, "throughput_gbps": 8.0} for k in range(5)]
    pd.DataFrame(rows).to_csv(run_dir / "intervals.csv", index=False)
    report.write_report(run_dir)
    assert (run_dir / "plots" / "pairs" / "gen2" / "throughput_over_time.svg").is_file()
    assert not (run_dir / "plots" / "pairs" / "gen1").exists()
    md = (run_dir / "report.md").read_text()
    gen2 = md[md.index("# Pair gen2\n"):md.index("# Pair gen3\n")]
    assert "plots/pairs/gen2/throughput_over_time.png" in gen2
    assert "plots/pairs/gen2/throughput_over_time" not in md[:md.index("# Pair gen2\n")]
