import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.remote.facts import parse_facts
from orchestrator.report import changes, compare
from orchestrator.errors import ExitStatus, NoCommonCells

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"
A = RUNS / "20261120T101500Z-lab-hw-a1b2"
B = RUNS / "20261124T180000Z-lab-hw2-c3d4"
VM = RUNS / "20261125T090000Z-vm-e5f6"


def test_compare_two_hardware_runs(tmp_path):
    result = compare.compare_runs(A, B, tmp_path)
    table = result.table
    assert set(table["metric"]) >= {"throughput_gbps", "cycles_per_byte", "latency_p50_us"}
    row = table[(table["cell_id"] == "stream-one_copy-65536B-4t") & (table["metric"] == "throughput_gbps")].iloc[0]
    # The ratio of the geometric means: the centre of Welch's interval on the log values.
    assert row["ratio"] == pytest.approx(row["b_mean"] / row["a_mean"], rel=0.01)
    assert row["ratio"] > 3  # 25 GbE link vs 100 GbE link, both link-bound at 4 threads
    assert row["ratio_ci_low"] < row["ratio"] < row["ratio_ci_high"]
    assert row["verdict"] == "B better"
    # rr latency was modelled the same on both: no clear difference
    rr = table[(table["cell_id"] == "rr-one_copy-1024B-1t") & (table["metric"] == "latency_p50_us")].iloc[0]
    assert rr["verdict"] == "no clear difference"
    assert "duration: A 8.0, B 6.0" in result.config_differences
    assert "seed: A 1729, B 4242" in result.config_differences
    assert result.host_differences[0] == "nic.speed (server and client): A 25000Mb/s, B 100000Mb/s"
    assert not result.only_in_a and not result.only_in_b
    assert [p.suffix for p in result.plot_paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 0 for p in result.plot_paths)
    _check_every_verdict_follows_its_interval(tmp_path / "compare.csv")


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
    assert "| stream-two_copy-1024B-1t |  | throughput_gbps |" in text
    assert "**The experiment's settings**" in text and "- duration: A 8.0, B 6.0" in text
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
    zero = comparison.table[comparison.table["cell_id"].str.startswith("stream-zero_copy")]
    assert not zero.empty
    assert zero["note"].str.startswith("A: zero_copy: copied (not zero-copy); B: zero_copy").all()  # then any ceiling
    plain = comparison.table[comparison.table["cell_id"].str.startswith("stream-one_copy")]
    # no technique note on one_copy: only the ceiling B's 25 GbE lab cells saturate at, where they do
    assert plain["note"].isin(["", "B at its link's ceiling, the rate the cells saturate at (23.4 Gbit/s)"]).all()


def test_compare_cells_words_its_verdicts_and_notes_with_the_sides_names():
    """pairs.py passes the pairs' names: the verdicts and the cell notes use them, and no A or B is
    left for it to rewrite."""
    vm, lab = compare.ok_rows(compare.load_run(VM)), compare.ok_rows(compare.load_run(A))
    default = compare.compare_cells(vm, lab)
    named = compare.compare_cells(vm, lab, "gen1", "gen2")
    assert len(named) == len(default) > 0
    assert (named[["ratio", "p_value"]].fillna(-1) == default[["ratio", "p_value"]].fillna(-1)).all().all()
    notes = named[named["cell_id"].str.startswith("stream-zero_copy")]["note"]
    assert len(notes) > 0 and notes.eq("gen1: zero_copy: copied (not zero-copy); gen2: zero_copy").all()
    assert not named["note"].str.contains(r"A: |; B: ").any()
    said = set(named["verdict"])
    assert {"gen2 better", "gen2 worse"} & said
    assert said <= {"gen2 better", "gen2 worse", "no clear difference", "too few repetitions to tell",
                    compare.NO_INTERVAL}
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
    cell = throughput[throughput["cell_id"] == "stream-two_copy-65536B-1t"]
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
    from orchestrator.report.changes import host_changes
    a = {"sysctls": {"kernel.perf_event_paranoid": "", "net.core.optmem_max": "20480"},
         "nic": {"driver": None, "mtu": 1500, "speed": "10000Mb/s", "qdisc": "noqueue", "qdisc_rate_mbit": None}}
    b = {"sysctls": {"kernel.perf_event_paranoid": "2", "net.core.optmem_max": "131072"},
         "nic": {"driver": "veth", "mtu": 9000, "speed": None, "qdisc": None, "qdisc_rate_mbit": None},
         "unknown": {"nic.speed": "ethtool not found", "nic.qdisc": "tc not found", "nic.qdisc_rate_mbit": "tc not found"}}
    found = host_changes({"server": a}, {"server": b})
    # The link first; a null rate is "no rate limit" where the qdisc was read, unknown where it was not.
    assert [c.text() for c in found.changes] == ["nic.mtu (server): A 1500, B 9000",
                                                 "sysctls.net.core.optmem_max (server): A 20480, B 131072"]
    assert found.unknown == ["server.sysctls.kernel.perf_event_paranoid: unknown (A: not recorded)",
                             "server.nic.driver: unknown (A: not recorded)",
                             "server.nic.speed: unknown (B: ethtool not found)",
                             "server.nic.qdisc: unknown (B: tc not found)",
                             "server.nic.qdisc_rate_mbit: unknown (B: tc not found)"]


# Real runs of configs/quick.yml (seed 2112) in two namespace labs (tests/fixtures/runs/README.md): two on
# an unshaped veth link with MTU 1500, one on a link shaped to 1000 Mbit/s by tbf with MTU 9000.
LAB_A1 = RUNS / "20261206T052330Z-quick-82a2"
LAB_A2 = RUNS / "20261206T052432Z-quick-43ed"
SHAPED = RUNS / "20261206T052758Z-quick-7003"


def _row(table: pd.DataFrame, cell: str, metric: str = "throughput_gbps") -> pd.Series:
    rows = table[(table["cell_id"] == cell) & (table["metric"] == metric)]
    assert len(rows) == 1
    return rows.iloc[0]


def _check_every_verdict_follows_its_interval(csv: Path) -> pd.DataFrame:
    """Every row of compare.csv: better or worse exactly when B/A's interval excludes 1, on the side
    the metric counts as better; the p-value (the same test's) under 0.05 exactly then; and no
    verdict at all where there is no interval."""
    table = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    assert len(table) > 0
    for _, row in table.iterrows():
        verdict = str(row["verdict"])
        if pd.isna(row["ratio_ci_low"]):
            assert not verdict.startswith(("B better", "B worse")), row.to_dict()
            continue
        assert row["ratio_ci_low"] <= row["ratio"] <= row["ratio_ci_high"], row.to_dict()
        excludes = row["ratio_ci_low"] > 1 or row["ratio_ci_high"] < 1
        higher_better = compare.derive.METRICS[row["metric"]].higher_is_better
        expected = ((compare.better_verdict() if (row["ratio"] > 1) == higher_better else compare.worse_verdict())
                    if excludes else compare.NO_CLEAR_DIFFERENCE)
        assert verdict.split(" (")[0] == expected, row.to_dict()
        assert (row["p_value"] < 0.05) == excludes, row.to_dict()
    return table


def test_a_13x_drop_with_two_repetitions_a_side_is_called_worse(tmp_path):
    """The unshaped lab against the one shaped to 1 Gbit/s: one_copy 64 KiB x1 fell about 13-fold
    with n = 2 per side. Welch's t on the log values gives the interval and the verdict together."""
    result = compare.compare_runs(LAB_A1, SHAPED, tmp_path)
    row = _row(result.table, "stream-one_copy-65536B-1t")
    assert (row["a_n"], row["b_n"]) == (2, 2)
    assert 1 / 16 < row["ratio"] < 1 / 10 and row["ratio_ci_high"] < 1
    assert row["verdict"] == "B worse"
    _check_every_verdict_follows_its_interval(tmp_path / "compare.csv")
    # B sat at its tbf's 1 Gbit/s: the note and the largest-change sentence say the link set that figure.
    assert row["note"] == "B at its link's ceiling, the tbf qdisc rate (1 Gbit/s)"
    assert "Throughput fell 13.3-fold, from 12.7 to 0.954 (B/A 0.0751 [0.0593, 0.0951]; B worse; B at its link's " \
           "ceiling, the tbf qdisc rate (1 Gbit/s))." in (tmp_path / "compare.md").read_text()
    unshaped = compare.compare_runs(LAB_A1, LAB_A1, tmp_path / "same")
    assert not unshaped.table["note"].str.contains("ceiling").any()


def test_what_changed_starts_with_the_mtu_and_the_qdisc_rate_and_keeps_identity_noise_apart(tmp_path):
    result = compare.compare_runs(LAB_A1, SHAPED, tmp_path)
    assert [change.text() for change in result.changes[:3]] == [
        "nic.mtu (server and client): A 1500, B 9000",
        "nic.qdisc_rate_mbit (server and client): A none, B 1000.0",
        "nic.qdisc (server and client): A noqueue, B tbf"]
    assert {change.group for change in result.changes[:3]} == {"Link"}
    text = (tmp_path / "compare.md").read_text()
    # What changed comes first, then what moved, then the cells; the noise is folded away.
    assert text.index("## What changed") < text.index("**Link**") < text.index("## What moved") < text.index("## Cell by cell")
    changed = text[text.index("## What changed"):text.index("<details>")]
    assert "fe80::" not in changed and "ssh_target" not in changed and "agent_path" not in changed
    folded = text[text.index("<details>"):text.index("</details>")]
    assert "fe80::" in folded and "ssh_target (server)" in folded and "agent_path (client)" in folded
    assert "- one_copy 64KiB ×1: Throughput fell 13." in text


def test_identical_runs_are_called_unchanged(tmp_path):
    result = compare.compare_runs(LAB_A1, LAB_A1, tmp_path)
    assert result.table["ratio"].tolist() == pytest.approx([1.0] * len(result.table))
    assert set(result.table["verdict"]) == {compare.NO_CLEAR_DIFFERENCE}
    assert not result.changes and not result.identity
    counts = compare.moved_counts(result.table)
    assert counts["better"].sum() == counts["worse"].sum() == 0 and (counts["same"] == counts["cells"]).all()
    text = (tmp_path / "compare.md").read_text()
    assert "no host fact and no setting differs" in text and "No cell changed beyond its noise." in text
    _check_every_verdict_follows_its_interval(tmp_path / "compare.csv")


def test_a_change_within_noise_is_no_clear_difference(tmp_path):
    """Two runs of one config on one lab: two_copy 64 KiB x2 moved under 2%, inside its interval."""
    result = compare.compare_runs(LAB_A1, LAB_A2, tmp_path)
    row = _row(result.table, "stream-two_copy-65536B-2t")
    assert 0.98 < row["ratio"] < 1.02 and row["ratio_ci_low"] < 1 < row["ratio_ci_high"]
    assert row["verdict"] == compare.NO_CLEAR_DIFFERENCE
    # The same lab: no host fact of the hardware or software changed (where the agent came from is noise).
    assert not result.changes and any("agent_build.where" in line for line in result.identity)
    _check_every_verdict_follows_its_interval(tmp_path / "compare.csv")


def test_compare_csv_is_in_the_experiments_order_and_joins_results_csv(tmp_path):
    compare.compare_runs(LAB_A1, SHAPED, tmp_path)
    table = pd.read_csv(tmp_path / "compare.csv", keep_default_na=False, na_values=[""])
    results = pd.read_csv(LAB_A1 / "results.csv")
    assert set(table["cell_id"]) <= set(results["cell_id"].map(compare.stats.cell_key))
    joined = table.merge(results.assign(cell_id=results["cell_id"].map(compare.stats.cell_key)),
                         on="cell_id", suffixes=("", "_results"))
    assert (joined["mode"] == joined["mode_results"]).all() and (joined["threads"] == joined["threads_results"]).all()
    cells = list(dict.fromkeys(table["cell_id"]))
    expected = sorted(cells, key=lambda c: (compare.derive.mode_rank(c.split("-")[1]), int(c.split("-")[2][:-1]),
                                            int(c.split("-")[3][:-1])))
    assert cells == expected and cells[0] == "stream-two_copy-1024B-1t"
    # Labels have a column of their own: the cell id is never glued to them.
    assert not table["cell_id"].str.contains(r"[ (]").any()
    assert table.loc[table["mode"] == "zero_copy", "note"].str.startswith("both: zero_copy: copied (not zero-copy)").all()


def test_the_ratio_plot_is_log_scale_with_short_labels_and_marks_intervals_off_its_axis(tmp_path):
    result = compare.compare_runs(LAB_A1, LAB_A2, tmp_path)
    fig = compare._ratio_plot(result.table, result.run_a, result.run_b)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "two_copy 1KiB ×1" and max(len(label) for label in labels) <= 20
    left, right = ax.get_xlim()
    throughput = result.table[result.table["metric"] == "throughput_gbps"]
    # One wild interval (two_copy 64 KiB x1 runs from about 0.008 to 73) does not set the axis: the points do.
    assert throughput["ratio_ci_high"].max() > 50 and right < 10 and left > 0.1
    off = int((throughput["ratio_ci_low"] < left).sum() + (throughput["ratio_ci_high"] > right).sum())
    arrows = [line for line in ax.get_lines() if line.get_marker() in ("<", ">")]
    assert off > 0 and len(arrows) == off
    # Nothing is clipped: every label and the axis title sit inside the figure.
    fig.canvas.draw()
    inside = fig.bbox.padded(1)
    for artist in (ax.xaxis.label, ax.title, *ax.get_yticklabels()):
        box = artist.get_window_extent()
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, artist


def test_short_labels_name_the_options_a_cell_varies_and_the_workload_where_there_are_several(tmp_path):
    variants = compare.compare_runs(RUNS / "20261125T231027Z-variants-85df", RUNS / "20261125T231027Z-variants-85df",
                                    tmp_path / "v").table
    labels = [compare.short_label(row) for _, row in variants[variants["metric"] == "throughput_gbps"].iterrows()]
    assert labels[0] == "one_copy 16KiB ×1 sender=client nodelay=false" and len(set(labels)) == len(labels) == 8
    lab = RUNS / "20261206T023809Z-labfull-87e3"
    both = compare.compare_runs(lab, lab, tmp_path / "l").table
    assert compare.short_label(both.iloc[0], both["workload"].nunique()) == "rr one_copy 4KiB ×1"


def test_loopback_to_a_veth_is_a_change_of_link_not_of_name():
    """A run on loopback reproduced over a veth pair: the link's kind is a change of link in "What
    changed", ranked with the Link group; the interface's name stays identity noise."""
    facts = Path(__file__).parents[1] / "fixtures" / "facts"
    lo, veth = (parse_facts((facts / name).read_text()) for name in ("server-loopback.txt", "server-veth-tbf.txt"))
    found = changes.host_changes({"server": lo}, {"server": veth})
    kind = next(c for c in found.changes if c.fact == "nic.kind")
    assert (kind.group, kind.a, kind.b) == ("Link", "loopback", "veth")
    assert [c.group for c in found.changes[:found.changes.index(kind)]] == ["Link"] * found.changes.index(kind)
    assert any(line.startswith("nic.interface (server): A lo, B data0") for line in found.identity), found.identity
