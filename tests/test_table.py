import csv
import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.agentjson import AgentReport, load_agent_json
from orchestrator.perfstat import load_perf_file
from orchestrator.table import (
    SCHEMA_COLUMNS,
    ResultsError,
    ResultsTable,
    cell_row,
    order_columns,
    read_results,
)

CELLS = Path(__file__).parent / "fixtures" / "cells"
PERF = Path(__file__).parent / "fixtures" / "perf"

ONE_COPY = "stream-one_copy-65536B-2t-r1"
ZERO_COPY = "stream-zero_copy-65536B-1t-r1-sender=client"
RR = "rr-two_copy-1024B-1t-r1"
FAILED = "stream-two_copy-4096B-1t-r1"


def _row(cell_id: str, error: str | None = None, **overrides) -> dict:
    folder = CELLS / cell_id
    cell = json.loads((folder / "identity.json").read_text())

    def load(name, loader):
        return loader(folder / name) if (folder / name).exists() else None

    pieces = {
        "server": load("server.json", load_agent_json),
        "client": load("client.json", load_agent_json),
        "server_perf": load("server.perf.csv", load_perf_file),
        "client_perf": load("client.perf.csv", load_perf_file),
    }
    pieces.update(overrides)
    return cell_row(cell, error=error, **pieces)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_stream_row_uses_receiver_window_and_sender_calls():
    row = _row(ONE_COPY)
    assert row["status"] == "ok" and row["error"] is None
    client = load_agent_json(CELLS / ONE_COPY / "client.json")
    server = load_agent_json(CELLS / ONE_COPY / "server.json")
    assert row["duration_s"] == client.window.seconds == 10.0105
    assert row["window_bytes"] == client.window.bytes_received == 6749814784
    assert row["bytes_sent"] == server.total.bytes_sent == 8106803200
    assert row["bytes_received"] == client.total.bytes_received == 8106803200
    assert row["send_calls"] == server.window.send_calls
    assert row["throughput_gbps"] == pytest.approx(6749814784 * 8 / 10.0105 / 1e9)
    assert row["messages_per_s"] == pytest.approx(client.window.messages_received / 10.0105)
    assert row["server_cpu_s"] == pytest.approx(0.41 + 9.87)
    assert row["client_voluntary_cs"] == 30512
    assert row["zerocopy_sends"] is None and row["zerocopy_copied_fraction"] is None
    assert row["transactions"] is None and row["latency_p99_us"] is None


def test_row_columns_are_ordered_identity_schema_then_perf():
    row = _row(ONE_COPY)
    columns = list(row)
    assert columns[: len(SCHEMA_COLUMNS)] == list(SCHEMA_COLUMNS)
    perf = columns[len(SCHEMA_COLUMNS) :]
    assert perf[:4] == [
        "server_cache_misses", "server_cache_misses_run_pct",
        "server_context_switches", "server_context_switches_run_pct",
    ]  # fmt: skip
    assert perf.index("client_cache_misses") > perf.index("server_task_clock_run_pct")


def test_perf_columns_by_role_and_exact_names():
    row = _row(ONE_COPY)
    assert row["server_cycles"] == 2100000000
    assert row["server_stalled_cycles_frontend"] == 521000000
    assert row["server_ref_cycles"] == 2250000000
    assert row["server_llc_load_misses"] == 1203344
    assert row["server_cache_misses"] == 9876543
    assert row["server_task_clock"] == 10000.41
    assert row["client_cycles_run_pct"] == 62.51
    assert row["client_llc_load_misses_run_pct"] == 37.5


def test_hybrid_perf_summed_into_one_column():
    row = _row(ZERO_COPY)
    assert row["client_cycles"] == 5234567890
    assert row["client_cycles_u"] == 2400000000
    assert not any("cpu_core" in c or "cpu_atom" in c for c in row)
    assert "server_cycles" not in row  # perf did not run on the server for this cell


def test_zero_copy_sender_is_the_client_and_copied_fraction():
    row = _row(ZERO_COPY)
    assert row["status"] == "ok"
    assert row["zerocopy_sends"] == 84000
    assert row["zerocopy_completed_sends"] == 84000
    assert row["zerocopy_copied_sends"] == 84000
    assert row["zerocopy_copied_fraction"] == 1.0
    assert row["zerocopy_enobufs"] == 3 and row["zerocopy_outstanding"] == 0
    assert row["window_bytes"] == 4587454464  # the server received
    assert row["send_calls"] == 70000  # the client sent


def test_copied_fraction_is_empty_without_completions():
    client = load_agent_json(CELLS / ZERO_COPY / "client.json")
    zc = dataclasses.replace(client.zerocopy, completed_sends=0, copied_sends=0)
    row = _row(ZERO_COPY, client=dataclasses.replace(client, zerocopy=zc))
    assert row["zerocopy_copied_fraction"] is None
    assert row["zerocopy_sends"] == 84000


def test_rr_row():
    row = _row(RR)
    assert row["status"] == "ok", row["error"]
    assert row["transactions"] == 412000
    assert row["transactions_per_s"] == 41199.2
    assert (row["latency_mean_us"], row["latency_p50_us"], row["latency_p90_us"]) == (
        24.27, 22.0, 29.5,
    )  # fmt: skip
    assert (row["latency_p99_us"], row["latency_max_us"]) == (48.0, 1210.0)
    assert row["duration_s"] == 10.0002
    assert row["window_bytes"] == 412000 * 1024
    assert row["server_cycles"] is None  # the VM: not supported, empty, not 0
    assert row["server_context_switches"] == 2


def test_failed_agent_row_keeps_what_is_known():
    row = _row(FAILED)
    assert row["status"] == "failed"
    assert "client agent: recv on connection 0: Connection reset by peer" in row["error"]
    assert row["bytes_sent"] == 720000 * 1024  # the server's side is still there
    assert row["duration_s"] is None and row["throughput_gbps"] is None
    assert row["client_sys_s"] == 0.31
    assert row["server_task_clock"] == 0.86


def test_missing_agent_and_orchestrator_error():
    row = _row(ONE_COPY, error="client timed out after 42 s", client=None, client_perf=None)
    assert row["status"] == "failed"
    assert row["error"].startswith("client timed out after 42 s; no client agent output")
    assert row["bytes_sent"] == 8106803200
    assert row["window_bytes"] is None
    assert row["server_cycles"] == 2100000000


def test_byte_count_mismatch_fails_the_row():
    client = load_agent_json(CELLS / ONE_COPY / "client.json")
    total = dataclasses.replace(client.total, bytes_received=client.total.bytes_received - 1)
    row = _row(ONE_COPY, client=dataclasses.replace(client, total=total))
    assert row["status"] == "failed"
    assert row["error"] == "server sent 8106803200 bytes but client received 8106803199"
    assert row["throughput_gbps"] is not None


def test_agent_that_ran_another_cell_fails_the_row():
    server: AgentReport = load_agent_json(CELLS / ONE_COPY / "server.json")
    row = _row(ONE_COPY, server=dataclasses.replace(server, message_size=1024))
    assert row["status"] == "failed"
    assert "server agent ran message_size=1024, the cell has 65536" in row["error"]


def test_big_counts_written_as_integers(tmp_path):
    table = ResultsTable(tmp_path / "results.csv")
    table.append(_row(ONE_COPY))
    text = (tmp_path / "results.csv").read_text()
    assert ",2100000000," in text and "e+" not in text
    written = _csv_rows(tmp_path / "results.csv")[0]
    assert written["server_cycles"] == "2100000000"
    assert written["bytes_sent"] == "8106803200"
    assert written["warmup_s"] == "2.0"
    assert written["nodelay"] == "true"
    df = read_results(tmp_path / "results.csv")
    assert df["server_cycles"].dtype == "Int64"
    assert df["bytes_sent"].dtype == "Int64"
    assert str(df.loc[0, "server_cycles"]) == "2100000000"
    assert "2100000000" in df.to_string() and "e+09" not in df.to_string()


def test_not_supported_is_empty_in_csv_and_nan_when_read(tmp_path):
    table = ResultsTable(tmp_path / "results.csv")
    table.append(_row(RR))
    written = _csv_rows(tmp_path / "results.csv")[0]
    assert written["server_cycles"] == "" and written["server_cycles_run_pct"] == ""
    assert written["zerocopy_sends"] == ""
    df = read_results(tmp_path / "results.csv")
    assert pd.isna(df.loc[0, "server_cycles"])
    assert pd.isna(df.loc[0, "zerocopy_copied_fraction"])
    assert df.loc[0, "server_context_switches"] == 2
    assert df["server_cycles"].sum() == 0 and df["server_cycles"].count() == 0


def test_appending_rows_with_different_perf_columns_rewrites_with_union(tmp_path):
    path = tmp_path / "results.csv"
    table = ResultsTable(path)
    first, second, third = _row(RR), _row(ONE_COPY), _row(ZERO_COPY)
    table.append(first)
    header_before = path.read_text().splitlines()[0].split(",")
    assert "server_ref_cycles" not in header_before
    table.append(second)
    table.append(third)
    rows = _csv_rows(path)
    assert [r["cell_id"] for r in rows] == [RR, ONE_COPY, ZERO_COPY]
    assert rows[0]["server_ref_cycles"] == ""  # new column, empty for the earlier row
    assert rows[0]["server_page_faults"] == "77"  # earlier values kept
    assert rows[1]["server_ref_cycles"] == "2250000000"
    assert rows[2]["client_cycles_u"] == "2400000000"
    header = path.read_text().splitlines()[0].split(",")
    assert header == order_columns(set(first) | set(second) | set(third))
    assert not list(tmp_path.glob(".results-*"))  # no temporary file left behind


def test_reopening_an_existing_file_appends(tmp_path):
    path = tmp_path / "results.csv"
    ResultsTable(path).append(_row(ONE_COPY))
    reopened = ResultsTable(path)
    reopened.append(_row(ONE_COPY))
    assert len(_csv_rows(path)) == 2
    assert path.read_text().count("run_id,cell_id") == 1


def test_read_results_types(tmp_path):
    path = tmp_path / "results.csv"
    table = ResultsTable(path)
    for cell_id in (ONE_COPY, ZERO_COPY, RR, FAILED):
        table.append(_row(cell_id))
    df = read_results(path)
    assert len(df) == 4
    assert df["message_size"].dtype == "Int64"
    assert df["throughput_gbps"].dtype == "float64"
    assert df["server_task_clock"].dtype == "float64"
    assert df["client_llc_load_misses_run_pct"].dtype == "float64"
    assert df["nodelay"].dtype == "boolean" and bool(df.loc[0, "nodelay"])
    assert list(df["status"]) == ["ok", "ok", "ok", "failed"]
    assert pd.isna(df.loc[0, "error"]) and "reset by peer" in df.loc[3, "error"]
    assert pd.isna(df.loc[3, "throughput_gbps"])


def test_error_text_that_looks_like_na_stays_text(tmp_path):
    path = tmp_path / "results.csv"
    ResultsTable(path).append(_row(ONE_COPY, error="NA"))
    assert read_results(path).loc[0, "error"].startswith("NA")


def test_read_results_refuses_non_numbers_in_numeric_columns(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("run_id,message_size\nx,sixty-four\n")
    with pytest.raises(ResultsError, match="message_size"):
        read_results(path)


def test_read_results_missing_file(tmp_path):
    with pytest.raises(ResultsError):
        read_results(tmp_path / "results.csv")
