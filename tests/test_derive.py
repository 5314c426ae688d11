import math
from pathlib import Path

import pandas as pd
import pytest

from orchestrator import derive, table
from orchestrator.errors import OrchestrateError

RUNS = Path(__file__).parent / "fixtures" / "runs"
HW = RUNS / "20261120T101500Z-lab-hw-a1b2"
VM = RUNS / "20261125T090000Z-vm-e5f6"

HEADER = (
    "run_id,cell_id,workload,mode,message_size,threads,repetition,sender,status,error,warmup_s,duration_s,"
    "bytes_received,window_bytes,server_cpu_s,client_cpu_s,server_cycles,client_cycles,"
    "server_context_switches,client_context_switches,zerocopy_completed_sends,zerocopy_copied_sends,"
    # As orchestrator/table.py writes them: window bytes * 8 / duration, copied / completed.
    "throughput_gbps,zerocopy_copied_fraction\n"
)


def write(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "results.csv"
    path.write_text(HEADER + "".join(row + "\n" for row in rows))
    return path


def test_empty_fields_are_nan_never_zero(tmp_path):
    path = write(tmp_path, "r,stream-one_copy-1024B-1t-r1,stream,one_copy,1024,1,1,server,ok,NA,2,10,1000000000,800000000,3,1,,,,,,,0.64,")
    frame = table.read_results(path)
    assert pd.isna(frame.loc[0, "server_cycles"])
    # "NA" in a text column is text, not missing
    assert frame.loc[0, "error"] == "NA"
    assert frame.loc[0, "message_size"] == 1024


def test_derived_values_from_known_inputs(tmp_path):
    # The client sends: client_* columns are the sender's.
    path = write(
        tmp_path,
        "r,stream-zero_copy-4096B-2t-r1,stream,zero_copy,4096,2,1,client,ok,,2,10,2000000000,1000000000,"
        "1.0,4.0,3000000000,8000000000,100,140,50,5,0.8,0.1",
    )
    row = derive.derive_metrics(table.read_results(path)).iloc[0]
    assert row["throughput_gbps"] == pytest.approx(0.8)  # 1e9 B * 8 / 10 s
    assert row["sender_cpu_s_per_gb"] == pytest.approx(2.0)  # client 4 s over 2 GB
    assert row["receiver_cpu_s_per_gb"] == pytest.approx(0.5)
    assert row["cpu_s_per_gb"] == pytest.approx(2.5)
    assert row["sender_cycles_per_byte"] == pytest.approx(4.0)
    assert row["receiver_cycles_per_byte"] == pytest.approx(1.5)
    assert row["cycles_per_byte"] == pytest.approx(5.5)
    assert row["context_switches_per_s"] == pytest.approx(240 / 12)
    assert row["zerocopy_copied_fraction"] == pytest.approx(0.1)
    assert math.isnan(row["l1_misses_per_kib"])  # column absent: not counted


def test_failed_rows_and_rr_rows_get_no_per_byte_figures(tmp_path):
    path = write(
        tmp_path,
        "r,stream-one_copy-1024B-1t-r1,stream,one_copy,1024,1,1,server,failed,peer gone,2,,,,,,,,,,,,,",
        "r,rr-one_copy-1024B-1t-r1,rr,one_copy,1024,1,1,,ok,,2,10,1000000,500000,1,1,1000,1000,10,10,,,0.0004,",
    )
    derived = derive.derive_metrics(table.read_results(path))
    assert derived["throughput_gbps"].isna().iloc[0]
    assert derived["cpu_s_per_gb"].isna().all()
    assert derived.loc[1, "throughput_gbps"] == pytest.approx(500000 * 8 / 10 / 1e9)


def test_garbage_number_is_a_user_error(tmp_path):
    path = write(tmp_path, "r,c-r1,stream,one_copy,1024,1,1,server,ok,,2,10,<not supported>,1,1,1,,,,,,,,")
    with pytest.raises(OrchestrateError, match="bytes_received"):
        table.read_results(path)


def test_missing_results_file_is_a_user_error(tmp_path):
    with pytest.raises(OrchestrateError, match="no results.csv"):
        table.read_results(tmp_path / "results.csv")


def test_zero_copy_labels_never_hide_a_copy():
    assert derive.zero_copy_label("zero_copy", 1.0) == "zero_copy: copied (not zero-copy)"
    assert derive.zero_copy_label("zero_copy", 0.5) == "zero_copy: copied (not zero-copy)"
    assert "copied" in derive.zero_copy_label("zero_copy", 0.02)
    assert "unverified" in derive.zero_copy_label("zero_copy", math.nan)
    assert derive.zero_copy_label("zero_copy", 0.0) == "zero_copy"
    assert derive.zero_copy_label("one_copy", math.nan) == "one_copy"


def test_fixture_vm_has_no_hardware_counters_but_cpu_time():
    derived = derive.derive_metrics(table.read_results(VM / "results.csv"))
    assert derived["cycles_per_byte"].isna().all()
    assert derived["cpu_ns_per_byte"].notna().all()
    assert (derived.loc[derived["mode"] == "zero_copy", "zerocopy_copied_fraction"] == 1.0).all()


def test_fixture_hw_throughput_matches_recorded_column():
    frame = table.read_results(HW / "results.csv")
    derived = derive.derive_metrics(frame)
    ok = frame["status"] == "ok"
    pd.testing.assert_series_equal(
        derived.loc[ok, "throughput_gbps"], frame.loc[ok, "throughput_gbps"], check_exact=False, rtol=1e-5
    )
