import copy
import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator.rows.agentjson import (
    AgentOutputError,
    AgentDocument,
    load_agent_json,
    parse_agent_json,
)
from orchestrator.errors import OrchestrateError

AGENT = Path(__file__).parents[1] / "fixtures" / "agent"


def _doc(name: str) -> dict:
    return json.loads((AGENT / name).read_text())


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "client.json"
    path.write_text(json.dumps(doc))
    return path


def test_stream_receiver_document():
    report = load_agent_json(AGENT / "stream_one_copy_client_receive.json")
    assert dataclasses.is_dataclass(report) and isinstance(report, AgentDocument)
    assert (report.role, report.mode, report.workload, report.sender) == (
        "client", "one_copy", "stream", "server",
    )  # fmt: skip
    assert report.direction == "receive"
    assert report.message_size == 65536 and report.threads == 2 and report.fields == 8
    assert report.window.seconds == 2.001218
    assert report.window.bytes_received == 11020372927
    assert report.total.bytes_received == 13738180608
    assert report.rusage.involuntary_ctxt_switches == 9145
    assert report.rusage.cpu_s == pytest.approx(0.063416 + 3.880127)
    assert [t.index for t in report.threads_detail] == [0, 1]
    thread = report.threads_detail[1]
    assert thread.peer == "127.0.0.1:33151" and thread.cpu is None
    assert len(thread.intervals) == 4
    assert sum(i.bytes for i in thread.intervals) == thread.window.bytes_received
    assert report.zerocopy is None and report.rr is None and thread.zerocopy is None
    assert report.options.nodelay is True and report.options.cpus == []
    assert report.warmup_s == 0.5 and report.duration_s == 2.0


def test_stream_sender_document():
    report = load_agent_json(AGENT / "stream_one_copy_server_send.json")
    assert report.direction == "send"
    assert report.total.bytes_sent == 13738180608  # what the receiver got, to the byte
    assert report.window.send_calls == 167961


def test_zero_copy_sender_document():
    report = load_agent_json(AGENT / "stream_zero_copy_client_send.json")
    zc = report.zerocopy
    assert zc.sends == 89360 and zc.completed_sends == 89360 and zc.copied_sends == 89360
    assert zc.notifications == 83031 and zc.copied_notifications == 83031
    assert zc.enobufs == 0 and zc.outstanding_at_end == 0
    assert report.threads_detail[0].zerocopy == zc


def test_rr_documents():
    client = load_agent_json(AGENT / "rr_two_copy_client.json")
    assert client.rr.transactions == 19967 and client.rr.transactions_total == 24956
    assert client.rr.latency_us.p99 == 136.192
    assert client.rr.latency_us.count == client.rr.transactions
    server = load_agent_json(AGENT / "rr_two_copy_server.json")
    assert server.rr.transactions == 19967
    assert server.rr.latency_us is None


def test_real_error_document():
    report = load_agent_json(AGENT / "error_client_receive.json")
    assert report.status == "error"
    assert report.error.startswith("connection 0: the stream ended part-way")
    assert report.total.bytes_received == 201549312


def test_error_document_needs_only_identity_and_error():
    report = load_agent_json(AGENT / "error_partial_handwritten.json")
    assert report.status == "error"
    assert "Connection reset by peer" in report.error
    assert report.window is None and report.threads_detail is None
    assert report.rusage.sys_s == 0.31


def test_empty_file_left_by_a_killed_agent():
    with pytest.raises(AgentOutputError, match="killed_server_empty.json: not JSON"):
        load_agent_json(AGENT / "killed_server_empty.json")


def test_error_document_without_message_is_refused(tmp_path):
    doc = _doc("error_partial_handwritten.json")
    doc["error"] = None
    with pytest.raises(AgentOutputError, match="'error' must give a message"):
        load_agent_json(_write(tmp_path, doc))


@pytest.mark.parametrize(
    "key", ["window", "rusage", "threads_detail", "options", "message_size", "zerocopy", "role"]
)
def test_missing_key_names_file_and_key(tmp_path, key):
    doc = _doc("stream_one_copy_client_receive.json")
    del doc[key]
    path = _write(tmp_path, doc)
    with pytest.raises(AgentOutputError) as info:
        load_agent_json(path)
    assert str(path) in str(info.value) and repr(key) in str(info.value)
    assert isinstance(info.value, OrchestrateError)


def test_missing_nested_key_gives_its_path(tmp_path):
    doc = _doc("stream_one_copy_client_receive.json")
    del doc["threads_detail"][1]["window"]["recv_calls"]
    with pytest.raises(AgentOutputError, match=r"threads_detail\[1\]\.window\.recv_calls"):
        load_agent_json(_write(tmp_path, doc))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("window", "bytes_received"), 12.0),
        (("window", "bytes_received"), "12"),
        (("total", "send_calls"), True),
        (("threads",), "2"),
        (("rusage", "user_s"), "0.5"),
        (("options", "nodelay"), 1),
        (("mode",), "three_copy"),
        (("role",), "proxy"),
        (("schema",), 2),
    ],
)
def test_wrong_type_names_key(tmp_path, path, value):
    doc = _doc("stream_one_copy_client_receive.json")
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(AgentOutputError, match=".".join(path)):
        load_agent_json(_write(tmp_path, doc))


def test_integral_float_seconds_accepted(tmp_path):
    doc = _doc("stream_one_copy_client_receive.json")
    doc["duration_s"] = 10
    assert load_agent_json(_write(tmp_path, doc)).duration_s == 10.0


def test_thread_count_must_match_details(tmp_path):
    doc = _doc("stream_one_copy_client_receive.json")
    doc["threads"] = 3
    with pytest.raises(AgentOutputError, match="threads_detail' has 2 entries"):
        load_agent_json(_write(tmp_path, doc))


def test_totals_must_be_the_sum_of_threads(tmp_path):
    # the lab-study mistake: the last thread's figures reported as the whole
    doc = _doc("stream_one_copy_client_receive.json")
    doc["window"] = copy.deepcopy(doc["threads_detail"][-1]["window"])
    with pytest.raises(AgentOutputError, match="window.bytes_received"):
        load_agent_json(_write(tmp_path, doc))


def test_intervals_must_add_up_to_the_window(tmp_path):
    doc = _doc("stream_one_copy_server_send.json")
    doc["threads_detail"][0]["intervals"].pop()
    with pytest.raises(AgentOutputError, match=r"threads_detail\[0\]\.intervals' sums to"):
        load_agent_json(_write(tmp_path, doc))


def test_ok_document_with_error_message_is_refused(tmp_path):
    doc = _doc("stream_one_copy_client_receive.json")
    doc["error"] = "something"
    with pytest.raises(AgentOutputError, match="'error' must be null"):
        load_agent_json(_write(tmp_path, doc))


def test_unknown_keys_are_ignored(tmp_path):
    doc = _doc("rr_two_copy_client.json")
    doc["future_field"] = {"x": 1}
    assert load_agent_json(_write(tmp_path, doc)).rr.transactions == 19967


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", "null", "READY 127.0.0.1 5201\n"])
def test_not_a_json_object(text):
    with pytest.raises(AgentOutputError, match="server.json"):
        parse_agent_json(text, source="cells/x/server.json")


def test_missing_file(tmp_path):
    with pytest.raises(AgentOutputError, match="cannot read agent output"):
        load_agent_json(tmp_path / "server.json")
