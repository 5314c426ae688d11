import csv
import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.rows.agentjson import AgentOutputError, AgentDocument, load_agent_json
from orchestrator.rows.perfstat import load_perf_file
from orchestrator.rows.results import (
    SCHEMA_COLUMNS,
    ResultsError,
    ResultsTable,
    cell_row,
    order_columns,
    read_results,
)

CELLS = Path(__file__).parents[1] / "fixtures" / "cells"
PERF = Path(__file__).parents[1] / "fixtures" / "perf"

ONE_COPY = "stream-one_copy-65536B-2t-r1"
ZERO_COPY = "stream-zero_copy-65536B-1t-r1-sender=client"
RR = "rr-two_copy-1024B-1t-r1"
FAILED = "stream-two_copy-4096B-1t-r1"


def _row(cell_id: str, error: str | None = None, **overrides) -> dict:
    """The row the orchestrator builds from a cell folder: unreadable agent output becomes
    a missing report plus an error, as orchestrator/rows/cellrow.py does."""
    folder = CELLS / cell_id
    cell = json.loads((folder / "identity.json").read_text())
    problems = [error] if error else []

    def agent(role):
        try:
            return load_agent_json(folder / f"{role}.json")
        except AgentOutputError as exc:
            problems.append(str(exc))
            return None

    def perf(role):
        path = folder / f"{role}.perf.csv"
        return load_perf_file(path) if path.exists() else None

    pieces = {
        "server": agent("server"),
        "client": agent("client"),
        "server_perf": perf("server"),
        "client_perf": perf("client"),
    }
    pieces.update(overrides)
    return cell_row(cell, error="; ".join(problems) or None, **pieces)


def _report(cell_id: str, role: str) -> AgentDocument:
    return load_agent_json(CELLS / cell_id / f"{role}.json")


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_stream_row_uses_receiver_window_and_sender_calls():
    row = _row(ONE_COPY)
    assert row["status"] == "ok" and row["error"] is None
    client, server = _report(ONE_COPY, "client"), _report(ONE_COPY, "server")
    assert row["duration_s"] == client.window.seconds == 2.001218
    assert row["window_bytes"] == client.window.bytes_received == 11020372927
    assert row["bytes_sent"] == server.total.bytes_sent == 13738180608
    assert row["bytes_received"] == client.total.bytes_received == 13738180608
    assert row["send_calls"] == server.window.send_calls == 167961
    assert row["throughput_gbps"] == pytest.approx(11020372927 * 8 / 2.001218 / 1e9)
    assert row["messages_per_s"] == pytest.approx(168159 / 2.001218)
    assert row["server_cpu_s"] == pytest.approx(0.027705 + 0.973617)
    assert row["client_involuntary_cs"] == 9145
    assert row["warmup_s"] == 0.5 and row["perf_scope"] == "process"
    assert row["zerocopy_sends"] is None and row["zerocopy_copied_fraction"] is None
    assert row["transactions"] is None and row["latency_p99_us"] is None


def test_vm_perf_columns_missing_hardware_counters_are_none():
    row = _row(ONE_COPY)
    assert row["server_cycles"] is None and row["server_cycles_run_pct"] is None
    assert row["client_llc_load_misses"] is None
    assert row["server_context_switches"] == 8573
    assert row["server_task_clock"] == 990.61
    assert row["server_task_clock_run_pct"] == 100.0


def test_row_columns_are_ordered_identity_schema_then_perf():
    row = _row(ONE_COPY, server_perf=load_perf_file(PERF / "hw_all_counted.csv"))
    columns = list(row)
    assert columns[:4] == ["run_id", "cell_id", "pair", "workload"]  # pair: an identity column
    assert columns[: len(SCHEMA_COLUMNS)] == list(SCHEMA_COLUMNS)
    perf = columns[len(SCHEMA_COLUMNS) :]
    assert perf[:4] == [
        "server_cache_misses", "server_cache_misses_run_pct",
        "server_context_switches", "server_context_switches_run_pct",
    ]  # fmt: skip
    assert all(c.startswith("server_") for c in perf[: perf.index("client_context_switches")])
    assert perf == order_columns(perf)[len(SCHEMA_COLUMNS) :]


def test_perf_columns_by_role_and_exact_names():
    row = _row(
        ONE_COPY,
        server_perf=load_perf_file(PERF / "hw_all_counted.csv"),
        client_perf=load_perf_file(PERF / "multiplexed.csv"),
    )
    assert row["server_cycles"] == 2100000000
    assert row["server_stalled_cycles_frontend"] == 521000000
    assert row["server_ref_cycles"] == 2250000000
    assert row["server_llc_load_misses"] == 1203344
    assert row["server_cache_misses"] == 9876543
    assert row["server_task_clock"] == 10000.41
    assert row["client_cycles_run_pct"] == 62.51
    assert row["client_llc_load_misses_run_pct"] == 37.5


def test_hybrid_perf_summed_into_one_column():
    row = _row(ZERO_COPY, client_perf=load_perf_file(PERF / "hybrid_alderlake.csv"))
    assert row["client_cycles"] == 5234567890
    assert row["client_cycles_u"] == 2400000000
    assert row["client_stalled_cycles_frontend"] is None
    assert not any("cpu_core" in c or "cpu_atom" in c for c in row)
    assert "server_cycles" not in row  # perf did not run on the server for this cell


def test_zero_copy_sender_is_the_client_and_copied_fraction():
    row = _row(ZERO_COPY)
    assert row["status"] == "ok", row["error"]
    assert row["zerocopy_sends"] == 89360
    assert row["zerocopy_notifications"] == 83031
    assert row["zerocopy_completed_sends"] == 89360
    assert row["zerocopy_copied_sends"] == 89360
    assert row["zerocopy_copied_fraction"] == 1.0  # loopback: the kernel copied every send
    assert row["zerocopy_enobufs"] == 0 and row["zerocopy_outstanding"] == 0
    assert row["window_bytes"] == 5123866624  # the server received
    assert row["send_calls"] == 78196  # the client sent


def test_copied_fraction_partial_and_empty_without_completions():
    client = _report(ZERO_COPY, "client")
    half = dataclasses.replace(client.zerocopy, copied_sends=client.zerocopy.completed_sends // 2)
    row = _row(ZERO_COPY, client=dataclasses.replace(client, zerocopy=half))
    assert row["zerocopy_copied_fraction"] == 0.5
    none = dataclasses.replace(client.zerocopy, completed_sends=0, copied_sends=0)
    row = _row(ZERO_COPY, client=dataclasses.replace(client, zerocopy=none))
    assert row["zerocopy_copied_fraction"] is None
    assert row["zerocopy_sends"] == 89360


def test_rr_row():
    row = _row(RR)
    assert row["status"] == "ok", row["error"]
    assert row["transactions"] == 19967
    assert row["transactions_per_s"] == 9981.372
    assert (row["latency_mean_us"], row["latency_p50_us"], row["latency_p90_us"]) == (
        100.095, 99.84, 116.224,
    )  # fmt: skip
    assert (row["latency_p99_us"], row["latency_max_us"]) == (136.192, 3073.382)
    assert row["duration_s"] == 2.000426
    assert row["window_bytes"] == 20446208
    assert row["bytes_sent"] == row["bytes_received"] == 25554944
    assert row["zerocopy_sends"] is None


def test_failed_cell_row_keeps_what_is_known():
    row = _row(FAILED)
    assert row["status"] == "failed"
    assert "server.json: not JSON" in row["error"]
    assert "no server agent output" in row["error"]
    assert "client agent: connection 0: the stream ended part-way" in row["error"]
    assert row["bytes_sent"] is None  # the sender never reported
    assert row["bytes_received"] == 201549312  # the receiver's own figures are still there
    assert row["duration_s"] == 0.54443
    assert row["client_sys_s"] == 0.438872
    assert row["client_context_switches"] == 37314
    assert row["server_cpu_s"] is None


def test_missing_agent_and_orchestrator_error():
    row = _row(ONE_COPY, error="client timed out after 42 s", client=None, client_perf=None)
    assert row["status"] == "failed"
    assert row["error"] == "client timed out after 42 s; no client agent output"
    assert row["bytes_sent"] == 13738180608
    assert row["window_bytes"] is None and row["throughput_gbps"] is None
    assert row["server_context_switches"] == 8573


def test_byte_count_mismatch_fails_the_row():
    client = _report(ONE_COPY, "client")
    total = dataclasses.replace(client.total, bytes_received=client.total.bytes_received - 1)
    row = _row(ONE_COPY, client=dataclasses.replace(client, total=total))
    assert row["status"] == "failed"
    assert row["error"] == "server sent 13738180608 bytes but client received 13738180607"
    assert row["throughput_gbps"] is not None


def test_rr_byte_count_mismatch_fails_the_row():
    server = _report(RR, "server")
    total = dataclasses.replace(server.total, bytes_sent=server.total.bytes_sent + 1024)
    row = _row(RR, server=dataclasses.replace(server, total=total))
    assert row["status"] == "failed"
    assert row["error"] == "server sent 25555968 bytes but client received 25554944"


def test_agent_that_ran_another_cell_fails_the_row():
    server = _report(ONE_COPY, "server")
    row = _row(ONE_COPY, server=dataclasses.replace(server, message_size=1024))
    assert row["status"] == "failed"
    assert "server agent ran message_size=1024, the cell has 65536" in row["error"]


def test_big_counts_written_as_integers(tmp_path):
    table = ResultsTable(tmp_path / "results.csv")
    table.append(_row(ONE_COPY, server_perf=load_perf_file(PERF / "hw_all_counted.csv")))
    text = (tmp_path / "results.csv").read_text()
    assert ",2100000000," in text and "e+" not in text
    written = _csv_rows(tmp_path / "results.csv")[0]
    assert written["server_cycles"] == "2100000000"
    assert written["bytes_sent"] == "13738180608"
    assert written["warmup_s"] == "0.5"
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
    assert df.loc[0, "server_context_switches"] == 46742
    assert df["server_cycles"].sum() == 0 and df["server_cycles"].count() == 0


def test_appending_rows_with_different_perf_columns_rewrites_with_union(tmp_path):
    path = tmp_path / "results.csv"
    table = ResultsTable(path)
    first = _row(RR)
    second = _row(ONE_COPY, server_perf=load_perf_file(PERF / "hw_all_counted.csv"))
    third = _row(ZERO_COPY, client_perf=load_perf_file(PERF / "hybrid_alderlake.csv"))
    table.append(first)
    header_before = path.read_text().splitlines()[0].split(",")
    assert "server_ref_cycles" not in header_before
    table.append(second)
    table.append(third)
    rows = _csv_rows(path)
    assert [r["cell_id"] for r in rows] == [RR, ONE_COPY, ZERO_COPY]
    assert rows[0]["server_ref_cycles"] == ""  # new column, empty for the earlier row
    assert rows[0]["server_cpu_migrations"] == "3"  # earlier values kept
    assert rows[1]["server_ref_cycles"] == "2250000000"
    assert rows[2]["client_cycles_u"] == "2400000000"
    header = path.read_text().splitlines()[0].split(",")
    assert header == order_columns(set(first) | set(second) | set(third) | {"format_version"})
    assert header[-1] == "format_version" and {r["format_version"] for r in rows} == {"1"}
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
    assert pd.isna(df.loc[0, "error"]) and "ended part-way" in df.loc[3, "error"]
    # a failed row still shows what its receiver measured; status says not to trust it
    assert df.loc[3, "throughput_gbps"] == pytest.approx(66725888 * 8 / 0.54443 / 1e9)
    assert pd.isna(df.loc[3, "bytes_sent"])


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


def test_floats_never_in_exponent_notation(tmp_path):
    path = tmp_path / "results.csv"
    row = _row(ONE_COPY)
    row.update(messages_per_s=2.1e9, zerocopy_copied_fraction=1e-7, server_context_switches=2.1e9)
    ResultsTable(path).append(row)
    written = _csv_rows(path)[0]
    assert written["messages_per_s"] == "2100000000.0"
    assert written["zerocopy_copied_fraction"] == "0.0000001"
    assert written["server_context_switches"] == "2100000000.0"
    assert "e+" not in path.read_text() and "e-0" not in path.read_text()
    assert read_results(path).loc[0, "messages_per_s"] == 2.1e9


def test_fields_clamped_to_the_message_size_is_not_a_mismatch():
    # A 4-byte message in 8 fields is sent as 4 one-byte fields; the agents say fields=4.
    folder = CELLS / ONE_COPY
    cell = {**json.loads((folder / "identity.json").read_text()), "message_size": 4, "fields": 8}
    server, client = (dataclasses.replace(_report(ONE_COPY, role), message_size=4, fields=4) for role in ("server", "client"))
    row = cell_row(cell, server, client, None, None, None)
    assert row["status"] == "ok", row["error"]
    wrong = cell_row(cell, dataclasses.replace(server, fields=2), client, None, None, None)
    assert "server agent ran fields=2, the cell has 4" in wrong["error"]


# ---------------------------------------------------------------- what perf's counts cover

from orchestrator.rows.perfstat import counted_as_requested  # noqa: E402

STUDY_EVENTS = ["cycles", "instructions", "L1-dcache-load-misses", "LLC-load-misses",
                "context-switches", "cpu-migrations", "task-clock"]  # fmt: skip


def _as_run_builds_it(name: str):
    return counted_as_requested(load_perf_file(PERF / name), STUDY_EVENTS)


def test_user_only_counts_fill_the_plain_columns_and_the_row_says_user(tmp_path):
    server_perf, server_counts = _as_run_builds_it("hw_user_only.csv")
    client_perf, client_counts = _as_run_builds_it("hw_all_counted.csv")
    row = _row(ONE_COPY, server_perf=server_perf, client_perf=client_perf,
               perf_counts={"server": server_counts, "client": client_counts})
    assert row["server_perf_counts"] == "user" and row["client_perf_counts"] == "user+kernel"
    assert row["server_cycles"] == 1423000000 and row["server_llc_load_misses"] == 310000
    assert row["server_l1_dcache_load_misses"] == 12750000
    assert row["server_context_switches"] is None  # 0 in user space is not a count
    assert "server_cycles_u" not in row
    path = tmp_path / "results.csv"
    table = ResultsTable(path)
    table.append(row)
    table.append(_row(ZERO_COPY, perf_counts={"server": "user+kernel", "client": None}))
    columns = next(csv.reader(path.open()))
    assert columns.index("server_perf_counts") < columns.index("server_cycles")
    df = read_results(path)
    assert df["server_perf_counts"].dtype == "string"
    assert list(df["server_perf_counts"]) == ["user", "user+kernel"]
    assert df.loc[0, "client_perf_counts"] == "user+kernel" and pd.isna(df.loc[1, "client_perf_counts"])
    assert df["server_cycles"].dtype == "Int64" and df.loc[0, "server_cycles"] == 1423000000


def test_perf_counts_blank_without_perf_and_checked():
    row = _row(ONE_COPY, server_perf=None, client_perf=None)
    assert row["server_perf_counts"] is None and row["client_perf_counts"] is None
    with pytest.raises(ResultsError, match="perf counts"):
        _row(ONE_COPY, perf_counts={"server": "kernel"})
