from pathlib import Path

from rich.console import Console

from orchestrator import compare

RUNS = Path(__file__).parent / "fixtures" / "runs"
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


def test_render_prints_table_and_differences(tmp_path):
    result = compare.compare_runs(A, B, tmp_path)
    console = Console(record=True, width=200)
    result.render(console)
    text = console.export_text()
    assert "stream-two_copy-1024B-1t" in text
    assert "Config differences" in text and "duration: A 8.0, B 6.0" in text
    assert "B better" in text


def test_default_output_folder_is_inside_run_b(tmp_path):
    import shutil

    a = Path(shutil.copytree(A, tmp_path / A.name))
    b = Path(shutil.copytree(B, tmp_path / B.name))
    result = compare.compare_runs(a, b)
    assert result.plot_paths[0].parent == b / "compare" / a.name


def test_copied_zero_copy_is_named_apart_from_real_zero_copy(tmp_path):
    vm = RUNS / "20261125T090000Z-vm-e5f6"
    lab = RUNS / "20261120T101500Z-lab-hw-a1b2"
    comparison = compare.compare_runs(vm, lab, tmp_path)
    zero = comparison.table[comparison.table["cell"].str.startswith("stream-zero_copy")]
    assert not zero.empty
    assert zero["cell"].str.contains(r"\(A: zero_copy: copied \(not zero-copy\); B: zero_copy\)").all()
    plain = comparison.table[comparison.table["cell"].str.startswith("stream-one_copy")]
    assert not plain["cell"].str.contains("copied").any()
