import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.report import compare
from orchestrator.errors import ExitStatus, NoCommonCells

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"
A = RUNS / "20261120T101500Z-lab-hw-a1b2"
B = RUNS / "20261124T180000Z-lab-hw2-c3d4"
VM = RUNS / "20261125T090000Z-vm-e5f6"


def test_compare_two_hardware_runs(tmp_path):
    result = compare.compare_runs(A, B, tmp_path)
    table = result.table
    assert set(table["metric"]) >= {"throughput_gbps", "cycles_per_byte", "latency_p50_us"}
    row = table[(table["cell"] == "stream-one_copy-65536B-4t") & (table["metric"] == "throughput_gbps")].iloc[0]
    assert row["ratio"] == row["b_mean"] / row["a_mean"]
    assert row["ratio"] > 3  # 25 GbE link vs 100 GbE link, both link-bound at 4 threads
    assert row["ratio_ci_low"] < row["ratio"] < row["ratio_ci_high"]
    assert row["verdict"] == "B better"
    # rr latency was modelled the same on both: no clear difference
    rr = table[(table["cell"] == "rr-one_copy-1024B-1t") & (table["metric"] == "latency_p50_us")].iloc[0]
    assert rr["verdict"] == "no clear difference"
    assert "duration: A 8.0, B 6.0" in result.config_differences
    assert "seed: A 1729, B 4242" in result.config_differences
    assert "server.nic.speed: A 25000Mb/s, B 100000Mb/s" in result.host_differences
    assert not result.only_in_a and not result.only_in_b
    assert [p.suffix for p in result.plot_paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 0 for p in result.plot_paths)


def test_compare_different_matrices_says_where(tmp_path):
    result = compare.compare_runs(A, VM, tmp_path)
    assert any(line.startswith("name: A lab, B vm") for line in result.config_differences)
    assert any(line.startswith("matrix.threads") for line in result.config_differences)
    assert "rr-one_copy-1024B-1t" in result.only_in_a
    assert "stream-one_copy-1024B-4t" in result.only_in_a
    assert not result.only_in_b
    # VM has no cycles: that metric is compared nowhere
    assert "cycles_per_byte" not in set(result.table["metric"])


def test_the_comparison_is_saved_as_markdown_and_csv(tmp_path):
    result = compare.compare_runs(A, B, tmp_path)
    assert result.files() == [tmp_path / "compare.md", tmp_path / "compare.csv", *result.plot_paths]
    text = (tmp_path / "compare.md").read_text()
    assert "| stream-two_copy-1024B-1t | throughput_gbps |" in text
    assert "## Config differences" in text and "- duration: A 8.0, B 6.0" in text
    assert "B better" in text and "](compare_throughput.png)" in text
    saved = pd.read_csv(tmp_path / "compare.csv")
    assert len(saved) == len(result.table) > 10
    assert saved["ratio"].tolist() == pytest.approx(result.table["ratio"].tolist())


def test_default_output_folder_is_named_after_both_runs(tmp_path):
    a = Path(shutil.copytree(A, tmp_path / A.name))
    b = Path(shutil.copytree(B, tmp_path / B.name))
    result = compare.compare_runs(a, b)
    assert result.out_dir == tmp_path / "compare" / f"{a.name}_vs_{b.name}"
    assert all(path.parent == result.out_dir and path.stat().st_size > 0 for path in result.files())
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in A.iterdir())  # runs untouched
    assert sorted(p.name for p in b.iterdir()) == sorted(p.name for p in B.iterdir())


def test_runs_with_no_cell_in_common_are_an_error_of_their_own(tmp_path):
    b = Path(shutil.copytree(B, tmp_path / "b"))
    text = (b / "results.csv").read_text()
    renamed = re.sub(r"(\d+t)-r(\d+)", r"\1-fields=2-r\2", text)
    assert renamed != text
    (b / "results.csv").write_text(renamed)
    with pytest.raises(NoCommonCells, match="share no cell") as caught:
        compare.compare_runs(A, b, tmp_path / "out")
    assert caught.value.exit_code == ExitStatus.NO_COMMON_CELLS == 6
    assert not (tmp_path / "out").exists()


def test_copied_zero_copy_is_named_apart_from_real_zero_copy(tmp_path):
    vm = RUNS / "20261125T090000Z-vm-e5f6"
    lab = RUNS / "20261120T101500Z-lab-hw-a1b2"
    comparison = compare.compare_runs(vm, lab, tmp_path)
    zero = comparison.table[comparison.table["cell"].str.startswith("stream-zero_copy")]
    assert not zero.empty
    assert zero["cell"].str.contains(r"\(A: zero_copy: copied \(not zero-copy\); B: zero_copy\)").all()
    plain = comparison.table[comparison.table["cell"].str.startswith("stream-one_copy")]
    assert not plain["cell"].str.contains("copied").any()


def test_compare_cells_words_its_verdicts_and_notes_with_the_sides_names():
    """pairs.py passes the pairs' names: the verdicts and the cell notes use them, and no A or B is
    left for it to rewrite."""
    vm, lab = compare.ok_rows(compare.load_run(VM)), compare.ok_rows(compare.load_run(A))
    default = compare.compare_cells(vm, lab)
    named = compare.compare_cells(vm, lab, "gen1", "gen2")
    assert len(named) == len(default) > 0
    assert (named[["ratio", "p_value"]].fillna(-1) == default[["ratio", "p_value"]].fillna(-1)).all().all()
    notes = named[named["cell"].str.startswith("stream-zero_copy")]["cell"]
    assert len(notes) > 0 and notes.str.contains(r"\(gen1: zero_copy: copied \(not zero-copy\); gen2: zero_copy\)").all()
    assert not named["cell"].str.contains(r"\(A: |; B: ").any()
    said = set(named["verdict"])
    assert {"gen2 better", "gen2 worse"} & said
    assert said <= {"gen2 better", "gen2 worse", "no clear difference", "too few repetitions to tell"}
    assert {v.replace("gen2 ", "B ") for v in said} == set(default["verdict"])
    # The counts one side took in user space only are named by the sides' names too.
    user = lab.assign(cycles_per_byte_perf_counts="user")
    mixed = compare.compare_cells(lab, user, "gen1", "gen2")
    cycles = mixed[mixed["metric"] == "cycles_per_byte"]["verdict"]
    assert len(cycles) > 0
    assert cycles.eq("not comparable: gen1 counted user and kernel space, gen2 user space only").all()


def test_a_run_on_several_pairs_is_compared_one_pair_at_a_time(tmp_path):
    """Pooling pairs would make one cell of different hosts: compare asks which pair, and with
    --pair compares that pair of both runs (here gen2's bytes are gen1's x 1.5, by construction)."""
    pairs3 = RUNS / "pairs3"
    with pytest.raises(compare.ConfigError, match=r"3 host pairs \(gen1, gen2, gen3\).*--pair"):
        compare.compare_runs(pairs3, pairs3, tmp_path / "pooled")
    assert not (tmp_path / "pooled").exists()
    one = compare.compare_runs(pairs3, pairs3, tmp_path / "gen2", pair="gen2")
    throughput = one.table[one.table["metric"] == "throughput_gbps"]
    cell = throughput[throughput["cell"] == "stream-two_copy-65536B-1t"]
    assert len(cell) == 1
    rows = pd.read_csv(pairs3 / "results.csv")
    rows = rows[(rows["status"] == "ok") & (rows["cell_id"].map(compare.stats.cell_key) == "stream-two_copy-65536B-1t")]
    by_pair = rows.groupby("pair")["throughput_gbps"].mean()
    # The mean compare used is gen2's alone: 1.5 x gen1's by construction, not the three pooled.
    assert cell.iloc[0]["a_mean"] == pytest.approx(by_pair["gen2"])
    assert by_pair["gen2"] == pytest.approx(1.5 * by_pair["gen1"], rel=0.01)
    with pytest.raises(compare.ConfigError, match="no pair named 'gen9'"):
        compare.compare_runs(pairs3, pairs3, tmp_path / "x", pair="gen9")


def test_a_pair_of_each_run_by_name_and_a_one_pair_run_against_a_pair(tmp_path):
    """A run reproduced on new hardware has pairs of other names: `--pair A_NAME:B_NAME`. A run on
    one pair gives its only pair whatever name the other run's pair has."""
    pairs3 = Path(shutil.copytree(RUNS / "pairs3", tmp_path / "runs" / "pairs3"))
    crossed = compare.compare_runs(pairs3, pairs3, None, pair="gen1:gen2")
    # The pairs are in the default folder's name, so another pair's comparison does not overwrite it.
    assert crossed.out_dir == tmp_path / "runs" / "compare" / "pairs3.gen1_vs_pairs3.gen2"
    assert (crossed.out_dir / "compare.md").read_text().startswith(
        f"# B = {crossed.run_b} (pair gen2) vs A = {crossed.run_a} (pair gen1)")
    throughput = crossed.table[crossed.table["metric"] == "throughput_gbps"]
    assert len(throughput) > 10 and throughput["ratio"].tolist() == pytest.approx([1.5] * len(throughput), rel=1e-4)
    # pairs3's rows are the recorded one-pair run's, gen3's bytes scaled by 0.6 (make_pairs_fixture.py).
    against = compare.compare_runs(RUNS / "20261125T222925Z-vmcheck-598f", pairs3, tmp_path / "one", pair="gen3")
    assert (against.pair_a, against.pair_b) == (None, "gen3")
    throughput = against.table[against.table["metric"] == "throughput_gbps"]
    assert len(throughput) > 10 and throughput["ratio"].tolist() == pytest.approx([0.6] * len(throughput), rel=1e-3)
    assert f"vs A = {against.run_a}\n" in against.markdown()


def test_a_fact_one_side_could_not_read_is_unknown_never_a_change():
    from orchestrator.report.compare import _host_differences
    a = {"sysctls": {"kernel.perf_event_paranoid": "", "net.core.optmem_max": "20480"},
         "nic": {"driver": None, "mtu": 1500, "speed": "10000Mb/s"}}
    b = {"sysctls": {"kernel.perf_event_paranoid": "2", "net.core.optmem_max": "131072"},
         "nic": {"driver": "veth", "mtu": 9000, "speed": None},
         "unknown": {"nic.speed": "ethtool not found"}}
    changed, unknown = _host_differences(a, b, "server.")
    assert changed == ["server.sysctls.net.core.optmem_max: A 20480, B 131072", "server.nic.mtu: A 1500, B 9000"]
    assert unknown == ["server.sysctls.kernel.perf_event_paranoid: unknown (A: not recorded)",
                       "server.nic.driver: unknown (A: not recorded)",
                       "server.nic.speed: unknown (B: ethtool not found)"]
