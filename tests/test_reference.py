"""iperf3 as a reference (experiment/, run/, rows/ and report/iperf3.py): command lines at equal settings, -J output
recorded from a real iperf3 3.12 over loopback (tests/fixtures/iperf3/), rows, plan and report."""

from __future__ import annotations

import math
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.run import cell as cells
from orchestrator.run import iperf3 as reference
from orchestrator.rows import iperf3 as referencereport
from orchestrator.rows import layout
from orchestrator.report import iperf3 as referencetable
from orchestrator.report import stats
from orchestrator.experiment import iperf3
from orchestrator.experiment.config import Experiment
from orchestrator.remote.deploy import Agent
from orchestrator.errors import ConfigError
from orchestrator.experiment.inventory import HostSpec
from orchestrator.experiment.plan import Cell, expand, plan_size
from orchestrator.rows.results import MeasurementChecks, SCHEMA_COLUMNS

from .conftest import require_tool
from .run.test_perf_access import SpecHost

FIXTURES = Path(__file__).parent / "fixtures" / "iperf3"


def experiment(**changes) -> Experiment:
    data = {"name": "t", "matrix": {"mode": ["one_copy", "two_copy"], "message_size": [1024, 65536], "threads": [1, 2]},
            "duration": "1s", "warmup": "1s", "reference": "iperf3", "perf": {"events": ["task-clock"]}}
    data.update(changes)
    return Experiment.model_validate(data)


def cell(**changes) -> Cell:
    values = dict(workload="stream", mode="iperf3", message_size=1024, threads=2, fields=1, sender="server",
                  nodelay=True, sndbuf=0, rcvbuf=0, receive="copy", uring_buffers="plain", repetition=1)
    values.update(changes)
    return Cell(**values)


# ---------------------------------------------------------------- command lines


def test_client_gets_the_cells_settings():
    args = reference.arguments(cell(), experiment(), "client", "198.18.0.1", 32)
    assert args[:3] == ["iperf3", "-c", "198.18.0.1"]
    joined = " ".join(args)
    for flag in ("-p 5301", "-l 1024", "-P 2", "-t 1", "-O 1", "-i 1", "-J", "-N", "-R"):
        assert f" {flag}" in f" {joined}", flag
    assert "-w" not in args


def test_nodelay_off_and_client_sender_drop_n_and_r():
    args = reference.arguments(cell(nodelay=False, sender="client"), experiment(), "client", "127.0.0.1", 32)
    assert "-N" not in args and "-R" not in args


def test_equal_socket_buffers_become_w_and_affinity_taskset():
    exp = experiment(sndbuf=262144, rcvbuf=262144, affinity={"server": "0-1", "client": [1]})
    client = reference.arguments(cell(sndbuf=262144, rcvbuf=262144), exp, "client", "127.0.0.1", 32)
    assert client[:4] == ["taskset", "-c", "1", "iperf3"] and client[client.index("-w") + 1] == "262144"
    server = reference.arguments(cell(), exp, "server", "127.0.0.1", 31.5)
    assert server == ["taskset", "-c", "0-1", "iperf3", "-s", "-1", "-J", "-B", "127.0.0.1", "-p", "5301", "-i", "1",
                      "--idle-timeout", "32"]


def test_interval_is_held_to_iperf3s_limits():
    args = reference.arguments(cell(), experiment(interval="0.05s"), "client", "127.0.0.1", 32)
    assert args[args.index("-i") + 1] == "0.1"
    args = reference.arguments(cell(), experiment(interval="90s"), "server", "127.0.0.1", 32)
    assert args[args.index("-i") + 1] == "60"


def test_a_data_address_must_be_an_ip_address():
    with pytest.raises(ConfigError, match="not an IP address"):
        reference.arguments(cell(), experiment(), "client", "lab-a; rm -rf ~", 32)


def test_program_quotes_every_word_and_writes_json_to_the_roles_file():
    text = reference.program(cell(), experiment(affinity={"client": "0,2-3"}), "client", "127.0.0.1", 32)
    words = shlex.split(text)
    assert words[-1] == ">client.iperf3.json" and words[:4] == ["taskset", "-c", "0,2-3", "iperf3"]
    assert reference.program(cell(), experiment(), "server", "127.0.0.1", 32).endswith(" >server.iperf3.json")


def context(exp: Experiment) -> cells.CellContext:
    spec = HostSpec(host="local", workdir="/w", data_address="198.18.0.1")
    hosts = {role: SpecHost(spec) for role in ("server", "client")}
    agents = {role: Agent("0" * 16, "/w/bin/agent") for role in ("server", "client")}
    return cells.CellContext("run-1", exp, hosts, agents, {"server": ["task-clock"], "client": ["task-clock"]})  # type: ignore[arg-type]


def test_cell_command_runs_iperf3_under_the_same_perf_stat_as_an_agent():
    ctx = context(experiment())
    client = cells.agent_command(ctx, cell(), "client")
    assert "perf stat -x, -o client.perf.csv -e task-clock -- iperf3 -c 198.18.0.1 " in client
    assert "/w/bin/agent" not in client and client.endswith("tar -cf - client.*; exit $rc; }; }")
    server = cells.agent_command(ctx, cell(), "server")
    assert "perf stat -x, -o server.perf.csv -e task-clock -- iperf3 -s -1 -J -B 198.18.0.1 -p 5301" in server
    assert f"--idle-timeout {math.ceil(cells.cell_time_limit(ctx.experiment))} >server.iperf3.json" in server
    assert "echo READY iperf3" in server and "} 2>server.stderr; rc=$?" in server
    # Our agents' cells are untouched.
    assert "iperf3" not in cells.agent_command(ctx, cell(mode="one_copy", fields=8), "server")


@pytest.mark.parametrize("access", ["direct", "sudo"])
def test_cell_commands_are_valid_shell_for_every_perf_access(access):
    exp = experiment(affinity={"server": "0", "client": "1"})
    spec = HostSpec(host="local", workdir="/w", data_address="198.18.0.1", perf_access=access)
    ctx = cells.CellContext("run-1", exp, {r: SpecHost(spec) for r in ("server", "client")},  # type: ignore[misc]
                            {r: Agent("0" * 16, "/w/bin/agent") for r in ("server", "client")},
                            {"server": ["task-clock"], "client": ["task-clock"]})
    for role in ("server", "client"):
        command = cells.agent_command(ctx, cell(), role)
        checked = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True)
        assert checked.returncode == 0, (command, checked.stderr)
        assert f"taskset -c {'0' if role == 'server' else '1'} iperf3" in command


def test_server_wrapper_says_ready_once_listening_and_passes_a_failure_through():
    require_tool("ss")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listen = (f"python3 -c 'import socket,time; s=socket.socket(); s.bind((\"127.0.0.1\", {port})); "
              "s.listen(); time.sleep(0.3)'")
    done = subprocess.run(["sh", "-c", reference.ready_when_listening(listen, port)], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0 and done.stdout.splitlines() == ["READY iperf3"]
    failed = subprocess.run(["sh", "-c", reference.ready_when_listening("sh -c 'exit 3'", port)],
                            capture_output=True, text=True, timeout=30)
    assert failed.returncode == 3 and "READY" not in failed.stdout


# ---------------------------------------------------------------- -J output


def test_parse_takes_the_receivers_sums_and_the_senders_retransmits():
    row, settings, problems = referencereport.parse((FIXTURES / "forward-1024B-2t.client.json").read_text())
    assert problems == []
    assert settings["num_streams"] == 2 and settings["blksize"] == 1024 and settings["reverse"] == 0
    assert row["window_bytes"] == 148154368 and row["duration_s"] == pytest.approx(1.007033)
    assert row["throughput_gbps"] == pytest.approx(148154368 * 8 / 1.007033 / 1e9)
    assert row["tcp_retrans"] == 19
    assert row["iperf3_version"] == "iperf 3.12"  # which threading its -P had
    text = (FIXTURES / "forward-1024B-2t.client.json").read_text().replace('"iperf 3.12"', '"3.12; <b>x</b>"')
    assert "iperf3_version" not in referencereport.parse(text)[0]  # a remote file's text: only a version


def test_parse_reverse_mode_client_is_the_receiver():
    row, settings, problems = referencereport.parse((FIXTURES / "reverse-65536B-1t.client.json").read_text())
    assert problems == [] and settings["reverse"] == 1
    assert row["window_bytes"] == 2038497280 and row["tcp_retrans"] == 46
    assert 15 < row["throughput_gbps"] < 17


def test_parse_reports_iperf3s_error_and_unreadable_output():
    assert referencereport.parse((FIXTURES / "refused.client.json").read_text())[2] == [
        "iperf3: unable to connect to server: Connection refused"]
    assert "not JSON" in referencereport.parse("iperf3: parameter error")[2][0]
    assert "sum_received" in referencereport.parse('{"start": {}, "end": {}}')[2][0]


def identity(**changes) -> dict:
    values = {"run_id": "r", "cell_id": "stream-iperf3-1024B-2t-r1", **cell(sender="client").params(),
              "perf_scope": "process", "warmup_s": 1.0}
    values.update(changes)
    return values


def cell_dir(tmp_path: Path, fixture: str) -> Path:
    shutil.copy(FIXTURES / f"{fixture}.client.json", tmp_path / layout.iperf3_json("client"))
    return tmp_path


def test_cell_row_is_a_results_row_with_mode_iperf3(tmp_path):
    checks = MeasurementChecks(1.0)
    row = referencereport.cell_row(identity(), cell_dir(tmp_path, "forward-1024B-2t"), None, {}, {"server": None,
                             "client": None}, checks)
    assert list(row)[:len(SCHEMA_COLUMNS)] == list(SCHEMA_COLUMNS)
    assert row["mode"] == "iperf3" and row["status"] == "ok" and row["error"] is None
    assert row["window_bytes"] == 148154368 and row["tcp_retrans"] == 19
    # Not measured over the agents' whole life: empty, never 0.
    assert row["bytes_sent"] is None and row["bytes_received"] is None


def test_cell_row_fails_on_a_mismatch_a_missing_file_or_the_cells_error(tmp_path):
    folder = cell_dir(tmp_path, "reverse-65536B-1t")  # 64 KiB x1 from the server, the cell says 1 KiB x2 from the client
    row = referencereport.cell_row(identity(), folder, None, {}, {}, MeasurementChecks(1.0))
    assert row["status"] == "failed"
    assert "blksize=65536" in row["error"] and "num_streams=1" in row["error"] and "reverse=1" in row["error"]
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = referencereport.cell_row(identity(), empty, "client agent exited with status 1", {}, {}, None)
    assert missing["status"] == "failed" and missing["error"].startswith("client agent exited with status 1; no iperf3")


def test_cell_row_is_degraded_when_the_window_is_not_the_duration(tmp_path):
    row = referencereport.cell_row(identity(), cell_dir(tmp_path, "forward-1024B-2t"), None, {}, {}, MeasurementChecks(3.0))
    assert row["status"] == "degraded" and "expected 3s" in row["error"]


# ---------------------------------------------------------------- config and plan


def test_config_refuses_settings_iperf3_cannot_take():
    for changes, words in (({"duration": "1.5s"}, "whole seconds"), ({"warmup": "700s"}, "warmup"),
                           ({"sndbuf": 4096}, "-w"), ({"workload": "rr"}, "stream cells"),
                           ({"matrix": {"mode": ["one_copy"], "message_size": ["2MiB"]}}, "1MiB")):
        with pytest.raises(ValueError, match=words):
            experiment(**changes)
    assert experiment(reference=None, duration="1.5s").reference is None


def test_plan_adds_one_iperf3_cell_per_size_threads_and_repetition():
    exp = experiment(repetitions=2)
    plan = expand(exp, seed=1)
    refs = [c for c in plan.cells if c.mode == "iperf3"]
    assert sorted((c.message_size, c.threads, c.repetition) for c in refs) == sorted(
        (s, t, r) for s in (1024, 65536) for t in (1, 2) for r in (1, 2))
    assert {(c.fields, c.workload, c.nodelay, c.sender) for c in refs} == {(1, "stream", True, "server")}
    # and the one_copy cells at one field they pair with, which the matrix (fields 8) lacks
    assert len(plan.cells) == 2 * 2 * 2 * 2 + 8 + 8 == plan_size(exp).cells
    assert len({c.cell_id for c in plan.cells}) == len(plan.cells)
    assert not [c for c in expand(experiment(reference=None), seed=1).cells if c.mode == "iperf3"]


def test_the_run_adds_the_one_copy_cells_at_one_field_that_iperf3_pairs_with():
    exp = experiment(repetitions=2)
    cells = expand(exp, seed=1).cells
    added = sorted(c.cell_id for c in cells if c.mode == "one_copy" and c.fields == 1)
    assert added == sorted(f"stream-one_copy-{s}B-{t}t-fields=1-r{r}" for s in (1024, 65536) for t in (1, 2) for r in (1, 2))
    assert len([c for c in cells if c.mode == "one_copy" and c.fields == 8]) == 8  # the matrix's own, unchanged
    assert iperf3.is_added_pair(exp.dimension, exp.reference, "one_copy", 1)
    assert not iperf3.is_added_pair(exp.dimension, exp.reference, "one_copy", 8)
    # a matrix that has one_copy at one field gets nothing added, and its cells are its own
    own = experiment(repetitions=2, matrix={"mode": ["one_copy", "two_copy"], "fields": [1, 8],
                                            "message_size": [1024], "threads": [1]})
    assert len(expand(own, seed=1).cells) == 2 * 2 * 2 + 2 == plan_size(own).cells
    assert not iperf3.is_added_pair(own.dimension, own.reference, "one_copy", 1)
    # without one_copy in the matrix, it is added; without the reference, nothing is
    other = experiment(matrix={"mode": ["two_copy"], "message_size": [1024], "threads": [1, 2]})
    assert sorted(c.cell_id for c in expand(other, seed=1).cells if c.mode == "one_copy") == [
        "stream-one_copy-1024B-1t-fields=1-r1", "stream-one_copy-1024B-2t-fields=1-r1"]
    assert not [c for c in expand(experiment(reference=None), seed=1).cells if c.fields == 1]


def test_a_nodelay_dimension_gets_a_reference_each_and_rr_gets_none():
    exp = experiment(matrix={"workload": ["stream", "rr"], "mode": ["one_copy"], "nodelay": [True, False]})
    refs = [c for c in expand(exp, seed=1).cells if c.mode == "iperf3"]
    assert sorted(c.nodelay for c in refs) == [False, True] and {c.workload for c in refs} == {"stream"}


def test_preflight_names_how_to_get_iperf3():
    exp = experiment()
    assert 'command -v iperf3' in reference.preflight_probe(exp, "client")
    assert "ss" in reference.preflight_probe(exp, "server") and "taskset" not in reference.preflight_probe(exp, "server")
    [(ok, detail)] = reference.preflight_findings(exp, ["@kernel 6", "@noiperf3"])
    assert not ok and "apt install iperf3" in detail
    assert reference.preflight_findings(exp, ["@kernel 6"]) == [(True, "iperf3 found")]
    assert reference.preflight_findings(experiment(reference=None), ["@noiperf3"]) == []


# ---------------------------------------------------------------- the ratio table


def results(ours: dict[str, list[float]], iperf3: list[float]) -> pd.DataFrame:
    rows = []
    for mode, values in [*ours.items(), ("iperf3", iperf3)]:
        for rep, value in enumerate(values, 1):
            rows.append({"cell_id": f"stream-{mode}-1024B-1t-r{rep}", "workload": "stream", "mode": mode,
                         "message_size": 1024, "threads": 1, "fields": 1 if mode == "iperf3" else 8,
                         "sender": "server", "nodelay": True, "sndbuf": 0, "rcvbuf": 0, "repetition": rep,
                         "status": "ok", "error": None, "throughput_gbps": value})
    rows.append({**rows[-1], "cell_id": "stream-iperf3-1024B-1t-r9", "status": "failed", "error": "iperf3: boom",
                 "throughput_gbps": 100.0})
    return pd.DataFrame(rows)


def test_ratio_table_gives_ours_over_iperf3_with_the_stats_interval():
    frame = results({"one_copy": [9.0, 10.0, 11.0], "two_copy": [4.0, 5.0, 6.0]}, [10.0, 10.5, 9.5])
    table = referencetable.ratio_table(frame)
    assert list(table["mode"]) == ["one_copy", "two_copy"]  # the fair comparison first
    one, two = table.iloc[0], table.iloc[1]
    expected = stats.ratio([10.0, 10.5, 9.5], [9.0, 10.0, 11.0])  # the failed 100 Gbit/s row is left out
    # The ratio of the geometric means, the centre of the interval (stats.ratio: Welch's t on the logs).
    assert one["ratio"] == pytest.approx(expected.ratio) == pytest.approx(1.0, rel=0.01)
    assert one["ratio_ci_low"] == pytest.approx(expected.ci_low)
    assert one["ratio_ci_low"] < 1 < one["ratio_ci_high"] and not one["look"]
    assert two["ratio"] == pytest.approx(0.5, rel=0.02) and two["look"] and two["iperf3_n"] == 3


def test_a_copied_zero_copy_cell_is_named_so_in_the_ratio_table():
    frame = results({"zero_copy": [5.0, 5.0]}, [10.0, 10.0]).assign(zerocopy_copied_fraction=1.0)
    assert list(referencetable.ratio_table(frame)["mode"]) == ["zero_copy: copied (not zero-copy)"]


def test_report_section_flags_and_names_the_fair_comparison():
    text = referencetable.section(results({"one_copy": [13.0, 13.5], "two_copy": [10.0, 10.1]}, [10.0, 10.2]))
    assert "one_copy at `fields: 1` is the comparison at equal settings" in text
    one = next(line for line in text.splitlines() if line.startswith("| one_copy"))
    two = next(line for line in text.splitlines() if line.startswith("| two_copy"))
    assert "**for a look**" in one and "for a look" not in two
    assert "`stream-iperf3-1024B-1t-r9` failed: iperf3: boom" in text
    assert referencetable.section(results({"one_copy": [1.0]}, []).query("mode != 'iperf3'")) == ""


def test_without_reference_keeps_our_modes():
    summary = pd.DataFrame({"mode": ["one_copy", "iperf3"], "x": [1, 2]})
    assert list(referencetable.without_reference(summary)["mode"]) == ["one_copy"]
    # and leaves out the one_copy cells at one field the run added for iperf3, not the matrix's own
    summary = pd.DataFrame({"mode": ["one_copy", "one_copy", "two_copy", "iperf3"], "fields": [8, 1, 8, 1]})
    config = experiment().resolved(seed=1)
    assert referencetable.without_reference(summary, config)[["mode", "fields"]].values.tolist() == [
        ["one_copy", 8], ["two_copy", 8]]
    own = experiment(matrix={"mode": ["one_copy"], "fields": [1, 8], "message_size": [1024], "threads": [1]})
    assert referencetable.without_reference(summary, own.resolved(seed=1))["fields"].tolist() == [8, 1, 8]


def test_the_headline_is_the_one_stream_ratio_at_equal_settings_and_several_streams_are_apart():
    one = results({"one_copy": [9.0, 9.2]}, [10.0, 10.1]).assign(fields=lambda f: f["mode"].map({"one_copy": 1, "iperf3": 1}))
    two = one.assign(threads=2, cell_id=one["cell_id"].str.replace("-1t-", "-2t-"), throughput_gbps=one["throughput_gbps"] * 
                     one["mode"].map({"one_copy": 2.0, "iperf3": 1.0}), iperf3_version="iperf 3.12")
    eight = results({"one_copy": [12.0, 12.4]}, [10.0, 10.1])  # fields 8: unequal settings
    text = referencetable.section(pd.concat([one, two, eight], ignore_index=True))
    head, several = text.split("### One stream")[0], text.split("### Several streams")[1]
    assert "**At equal settings, one stream: ours ÷ iperf3 is 0.905 at 1KiB**" in head and "1 cell(s), 0 flagged" in head
    assert "This run's iperf3 (iperf 3.12) drives every `-P` stream from one thread" in several
    assert "| one_copy | 1KiB | 2 | 1 |" in several and "| one_copy | 1KiB | 1 |" not in several
    assert "| one_copy | 1KiB | 2 |" not in text.split("### Several streams")[0]
    # an older run without one_copy at one field: no headline ratio, the settings were unequal
    old = referencetable.section(eight)
    assert "**No headline ratio: the settings were unequal.**" in old and "its one_copy sent 8 buffers" in old
    assert "ours ÷ iperf3 is" not in old
    # iperf3 3.16 and later runs a thread per stream: said so
    threaded = referencetable.section(pd.concat([one, two.assign(iperf3_version="iperf 3.17.1")]))
    assert "runs one thread per `-P` stream" in threaded


def test_against_iperf3_of_a_real_lab_run_without_one_copy_at_one_field():
    """The recorded lab run (one_copy at fields 8 only, iperf3 3.12 not yet recorded in its rows)."""
    from orchestrator.rows.results import read_results

    frame = read_results(Path(__file__).parent / "fixtures" / "runs" / "20261206T023809Z-labfull-87e3" / "results.csv")
    text = referencetable.section(frame)
    assert "**No headline ratio: the settings were unequal.**" in text and "ours ÷ iperf3 is" not in text
    one, several = text.split("### One stream")[1].split("### Several streams")
    assert all("| 1 | 8 |" in line for line in one.splitlines() if line.startswith("| one_copy"))
    assert len([line for line in several.splitlines() if line.startswith("| one_copy | ")]) == 2
    assert "iperf3 before 3.16" in several


REFERENCE_RUN = Path(__file__).parent / "fixtures" / "runs" / "20261206T052839Z-reference-1d2e"


def test_a_real_run_pairs_iperf3_with_the_one_copy_cells_it_added(tmp_path):
    """A recorded run (fixtures/runs/README.md): one_copy and two_copy at fields 8, iperf3, and the
    one_copy cells at one field the run added. The headline is recomputed here from results.csv."""
    from orchestrator.report import write
    from orchestrator.rows.results import read_results

    frame = read_results(REFERENCE_RUN / "results.csv")
    ok = frame[frame["status"] == "ok"]
    mean = lambda mode, fields, size, threads: ok[(ok["mode"] == mode) & (ok["fields"] == fields) & (  # noqa: E731
        ok["message_size"] == size) & (ok["threads"] == threads)]["throughput_gbps"].mean()
    added = ok[(ok["mode"] == "one_copy") & (ok["fields"] == 1)]
    assert sorted(added["cell_id"]) == sorted(f"stream-one_copy-{s}B-{t}t-fields=1-r1" for s in (1024, 65536) for t in (1, 2))
    want = ", ".join(f"{mean('one_copy', 1, s, 1) / mean('iperf3', 1, s, 1):.3g} at {label}"
                     for s, label in ((1024, "1KiB"), (65536, "64KiB")))
    text = referencetable.section(frame)
    assert f"**At equal settings, one stream: ours ÷ iperf3 is {want}**" in text
    several = text.split("### Several streams")[1]
    assert f"| one_copy | 1KiB | 2 | 1 | {mean('one_copy', 1, 1024, 2):.3g} | {mean('iperf3', 1, 1024, 2):.3g} |" in several
    assert "This run's iperf3 (iperf 3.12) drives every `-P` stream from one thread" in several
    # the report's tables and plots are the matrix's: no set for fields=1, no added cell among them
    run = shutil.copytree(REFERENCE_RUN, tmp_path / "run")
    report = write.write_report(run).read_text()
    assert "## Tables with fields" not in report and not [p for p in (run / "plots").iterdir() if p.is_dir()]
    tables = report.split("## Tables", 1)[1].split("## Against iperf3")[0]
    assert "fields=1" not in tables
