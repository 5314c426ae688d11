import os
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.errors import OrchestrateError
from orchestrator.rows.perfstat import (
    Counter,
    ParseError,
    canonical_event,
    column_name,
    load_perf_file,
    parse_perf_csv,
)

PERF = Path(__file__).parents[1] / "fixtures" / "perf"


def test_vm_process_hardware_counters_are_missing_not_zero():
    counters = load_perf_file(PERF / "vm_process.csv")
    for event in ("cycles", "instructions", "L1-dcache-load-misses", "LLC-load-misses"):
        assert counters[event] == Counter(event, None, "", None, "not_supported")
    assert counters["context-switches"] == Counter("context-switches", 2, "", 100.0, "counted")
    assert counters["task-clock"].value == 0.86
    assert counters["task-clock"].unit == "msec"
    assert counters["page-faults"].value == 77
    assert list(counters) == [
        "cycles", "instructions", "L1-dcache-load-misses", "LLC-load-misses",
        "context-switches", "cpu-migrations", "task-clock", "page-faults",
    ]  # fmt: skip


def test_system_wide_matches_process_layout():
    counters = load_perf_file(PERF / "vm_system.csv")
    assert counters["context-switches"].value == 41
    assert counters["task-clock"].value == 203.65
    assert counters["cycles"].status == "not_supported"


def test_per_cpu_records_are_summed_exactly():
    counters = load_perf_file(PERF / "vm_system_per_cpu.csv")
    assert counters["context-switches"].value == 17 + 15
    assert counters["page-faults"].value == 79 + 2
    # summed as decimals: no 203.79000000000002
    assert counters["task-clock"].value == 203.79
    assert counters["cycles"].value is None


def test_per_core_prefix_with_numeric_cpu_count():
    counters = load_perf_file(PERF / "vm_system_per_core.csv")
    assert counters["context-switches"].value == 11 + 17
    assert counters["cpu-migrations"].value == 4
    assert counters["task-clock"].value == 203.74
    assert counters["LLC-load-misses"].status == "not_supported"


def test_interval_deltas_add_up_and_not_counted_intervals_are_skipped():
    counters = load_perf_file(PERF / "vm_interval.csv")
    assert counters["context-switches"].value == 1
    assert counters["task-clock"].value == 0.88
    assert counters["task-clock"].status == "counted"


def test_hardware_host_all_counted_and_ints_stay_ints():
    counters = load_perf_file(PERF / "hw_all_counted.csv")
    cycles = counters["cycles"]
    assert cycles.value == 2100000000 and isinstance(cycles.value, int)
    assert cycles.run_pct == 100.0 and cycles.status == "counted"
    assert counters["instructions"].value == 3150000000
    assert counters["LLC-load-misses"].value == 1203344


def test_cycles_is_not_stalled_cycles_or_ref_cycles():
    counters = load_perf_file(PERF / "hw_all_counted.csv")
    assert counters["cycles"].value == 2100000000
    assert counters["stalled-cycles-frontend"].value == 521000000
    assert counters["ref-cycles"].value == 2250000000
    vm = load_perf_file(PERF / "vm_lookalikes.csv")
    assert {"cycles", "stalled-cycles-frontend", "stalled-cycles-backend", "ref-cycles",
            "cycles:u"} <= set(vm)  # fmt: skip
    assert vm["cpu-clock"].value == 0.88


def test_generic_cache_misses_is_not_llc():
    counters = load_perf_file(PERF / "hw_all_counted.csv")
    assert counters["cache-misses"].value == 9876543
    assert counters["LLC-load-misses"].value == 1203344
    assert column_name("cache-misses") == "cache_misses"


def test_hybrid_parts_are_summed_under_the_plain_name():
    counters = load_perf_file(PERF / "hybrid_alderlake.csv")
    assert counters["cycles"].value == 4000000000 + 1234567890
    assert counters["instructions"].value == 6100000000 + 1400000000
    # parts ran 70 % and 30 % of their enabled time: together half of it
    assert counters["cycles"].run_pct == 50.0
    assert not any("/" in name for name in counters)


def test_hybrid_not_counted_part_leaves_the_counted_part():
    llc = load_perf_file(PERF / "hybrid_alderlake.csv")["LLC-load-misses"]
    assert llc == Counter("LLC-load-misses", 1500000, "", 70.0, "counted")


def test_hybrid_all_parts_unsupported_is_missing():
    stalled = load_perf_file(PERF / "hybrid_alderlake.csv")["stalled-cycles-frontend"]
    assert stalled.value is None and stalled.status == "not_supported"


def test_modifier_kept_in_name_and_hybrid_modifier_normalised():
    counters = load_perf_file(PERF / "hybrid_alderlake.csv")
    assert counters["cycles:u"].value == 1800000000 + 600000000
    assert column_name("cycles:u") == "cycles_u"
    assert canonical_event("cpu_core/cycles/u") == "cycles:u"
    assert canonical_event("cpu/cycles/") == "cycles"
    assert canonical_event("cpu_atom/instructions/") == "instructions"
    assert canonical_event("msr/tsc/") == "msr/tsc/"
    assert load_perf_file(PERF / "vm_lookalikes.csv")["context-switches:k"].value == 1


def test_multiplexed_run_pct_recorded_value_as_perf_scaled_it():
    counters = load_perf_file(PERF / "multiplexed.csv")
    assert counters["cycles"] == Counter("cycles", 2300000000, "", 62.51, "counted")
    assert counters["LLC-load-misses"].run_pct == 37.5
    assert counters["context-switches"].run_pct == 100.0


def test_not_counted_is_missing_with_reason():
    counters = load_perf_file(PERF / "not_counted.csv")
    assert counters["cycles"] == Counter("cycles", None, "", None, "not_counted")
    assert counters["task-clock"].status == "not_counted"
    assert counters["LLC-load-misses"].status == "not_supported"
    assert counters["context-switches"].value == 12


def test_metric_continuation_lines_are_skipped():
    text = "1000,,instructions,5,100.00,1.50,insn per cycle\n,,,,,0.17,stalled cycles per insn\n"
    assert parse_perf_csv(text)["instructions"].value == 1000
    newer = "CPU0,,,,,,0.17,stalled cycles per insn,good\nCPU0,7,,cycles,5,100.00,,\n"
    assert parse_perf_csv(newer)["cycles"].value == 7


def test_other_separator():
    counters = parse_perf_csv("12;;cpu/event=0x3c,umask=0x0/;100;100.00;;\n", sep=";")
    assert counters["event=0x3c,umask=0x0"].value == 12


@pytest.mark.parametrize(
    ("event", "column"),
    [
        ("cycles", "cycles"),
        ("L1-dcache-load-misses", "l1_dcache_load_misses"),
        ("LLC-load-misses", "llc_load_misses"),
        ("context-switches", "context_switches"),
        ("task-clock", "task_clock"),
        ("cycles:u", "cycles_u"),
        ("msr/tsc/", "msr_tsc"),
        ("--odd__name--", "odd_name"),
    ],
)
def test_column_name(event, column):
    assert column_name(event) == column


def test_column_name_refuses_nothing_left():
    with pytest.raises(ParseError):
        column_name("/-/")


def test_human_format_output_is_refused():
    with pytest.raises(ParseError, match=r"vm_human_format.txt: line \d+ is not"):
        load_perf_file(PERF / "vm_human_format.txt")


@pytest.mark.parametrize(
    "text",
    ["hello world\n", "1,2,3\n", "cycles,2100000000\n", "<not supported>\n"],
)
def test_garbage_lines_raise(text):
    with pytest.raises(ParseError):
        parse_perf_csv(text)


def test_only_comments_is_no_counters(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("# started on Wed Nov 25 21:58:22 2026\n\n")
    assert parse_perf_csv(path.read_text()) == {}
    with pytest.raises(ParseError, match="no counters"):
        load_perf_file(path)


def test_missing_file_is_an_orchestrate_error(tmp_path):
    with pytest.raises(OrchestrateError, match="cannot read perf output"):
        load_perf_file(tmp_path / "absent.csv")


@pytest.mark.integration
def test_real_perf_stat_output_parses(tmp_path):
    perf = shutil.which("perf")
    if perf is None:
        message = "perf is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path / "perf.csv"
    events = "cycles,stalled-cycles-frontend,cache-misses,context-switches,task-clock"
    result = subprocess.run(
        [perf, "stat", "-x,", "-o", str(out), "-e", events, "--", "sleep", "0.05"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    counters = load_perf_file(out)
    assert set(counters) == set(events.split(","))
    assert counters["task-clock"].status == "counted" and counters["task-clock"].value > 0
    for counter in counters.values():
        # counted, or missing with a reason: never a 0 standing in for "not supported"
        assert (counter.value is None) == (counter.status != "counted")


# ---------------------------------------------------------------- user-space-only counts

from orchestrator.rows.perfstat import (  # noqa: E402
    counted_as_requested,
    is_user_only_fallback,
    reach_of,
    resolve,
    split_modifiers,
)

STUDY_EVENTS = ["cycles", "instructions", "L1-dcache-load-misses", "LLC-load-misses",
                "context-switches", "cpu-migrations", "task-clock"]  # fmt: skip


def test_unprivileged_recording_names_every_event_user_only():
    # Recorded as a non-root account at kernel.perf_event_paranoid=2: perf fell back by itself.
    counters = load_perf_file(PERF / "unpriv_process.csv")
    assert set(counters) == {f"{e}:u" for e in STUDY_EVENTS + ["page-faults"]}
    assert counters["cycles:u"].status == "not_supported"
    assert counters["context-switches:u"].value == 0  # what perf printed; resolve() must not keep it


def test_unprivileged_recording_resolves_to_the_requested_events():
    counters = load_perf_file(PERF / "unpriv_process.csv")
    resolved = resolve(counters, STUDY_EVENTS + ["page-faults"])
    assert all(r.restricted for r in resolved.values())
    assert resolved["page-faults"].reach == "user" and resolved["page-faults"].counter.value == 78
    # A clock's count is whole under :u: task-clock:u is all of the task's time.
    assert resolved["task-clock"].reach == "user+kernel" and resolved["task-clock"].counter.value == 31.36
    # Scheduler events fire in the kernel: in user space they always count 0, kept missing.
    for event in ("context-switches", "cpu-migrations"):
        assert resolved[event].reach == "nothing"
        assert resolved[event].counter == Counter(event, None, "", None, "not_counted")
    assert resolved["cycles"].reach == "nothing" and resolved["cycles"].counter.status == "not_supported"


def test_hardware_user_only_counts_land_in_the_plain_columns_labelled_user():
    counters, counts = counted_as_requested(load_perf_file(PERF / "hw_user_only.csv"), STUDY_EVENTS)
    assert counts == "user"
    assert list(counters) == STUDY_EVENTS
    assert counters["cycles"] == Counter("cycles", 1423000000, "", 100.0, "counted")
    assert counters["instructions"].value == 2890000000
    assert counters["L1-dcache-load-misses"].value == 12750000
    assert counters["LLC-load-misses"].value == 310000
    assert counters["context-switches"].value is None and counters["cpu-migrations"].value is None
    assert counters["task-clock"].value == 10000.40


def test_hybrid_user_only_both_spellings_are_summed():
    counters, counts = counted_as_requested(load_perf_file(PERF / "hybrid_user_only.csv"),
                                            ["cycles", "instructions", "task-clock"])
    assert counts == "user"
    assert counters["cycles"].value == 1100000000 + 300000000
    # older perf appended the fallback as `cpu_core/instructions/:u`
    assert counters["instructions"].value == 2200000000 + 400000000
    assert counters["cycles"].run_pct == 50.0


def test_whole_counts_are_labelled_user_and_kernel_and_explicit_u_stays_apart():
    counters, counts = counted_as_requested(load_perf_file(PERF / "hw_all_counted.csv"), STUDY_EVENTS)
    assert counts == "user+kernel" and counters["cycles"].value == 2100000000
    # cycles and cycles:u both asked for: the explicit :u is its own column, not a fallback
    hybrid, counts = counted_as_requested(load_perf_file(PERF / "hybrid_alderlake.csv"), ["cycles", "cycles:u"])
    assert counts == "user+kernel"
    assert hybrid["cycles"].value == 5234567890 and hybrid["cycles:u"].value == 2400000000


def test_a_fallback_that_cost_nothing_is_still_whole():
    # Only a clock (whole under :u) and an unsupported counter (nothing to lose) fell back.
    counters, counts = counted_as_requested(load_perf_file(PERF / "unpriv_probe.csv"), ["cycles", "task-clock"])
    assert counts == "user+kernel" and counters["task-clock"].value == 0.71
    _, counts = counted_as_requested(load_perf_file(PERF / "unpriv_probe.csv"), ["cycles", "context-switches"])
    assert counts == "user"


def test_nothing_counted_has_no_label():
    hardware_only = {k: v for k, v in load_perf_file(PERF / "vm_process.csv").items() if v.value is None}
    assert len(hardware_only) == 4
    counters, counts = counted_as_requested(hardware_only, ["cycles", "instructions"])
    assert counts is None and counters["cycles"].status == "not_supported"


@pytest.mark.parametrize(
    ("event", "expected"),
    [("cycles:u", ("cycles", "u")), ("cpu_core/cycles/u", ("cycles", "u")), ("cpu_core/cycles/:u", ("cycles", "u")),
     ("msr/tsc/u", ("msr/tsc/", "u")), ("cycles:pu", ("cycles", "pu")), ("LLC-load-misses", ("LLC-load-misses", ""))],
)
def test_split_modifiers(event, expected):
    assert split_modifiers(event) == expected


def test_fallback_and_reach_rules():
    assert is_user_only_fallback("cycles", "cycles:u")
    assert is_user_only_fallback("cycles:p", "cycles:pu")
    assert not is_user_only_fallback("cycles", "ref-cycles:u")
    assert not is_user_only_fallback("cycles:u", "cycles:u")
    assert reach_of("cycles") == "user+kernel" and reach_of("cycles:u") == "user"
    assert reach_of("task-clock:u") == "user+kernel" and reach_of("cs:u") == "nothing"
    assert reach_of("cycles:k") == "kernel" and reach_of("cycles:uk") == "user+kernel"
