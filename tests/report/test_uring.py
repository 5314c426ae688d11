"""The io_uring send modes through rows and the report, on a real recorded loopback run
(tests/fixtures/uring/): io_uring_zc under the same zero-copy rule, columns and labels as
zero_copy, and the question of whether io_uring pays."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.report import stats
from orchestrator.report.answers import answers
from orchestrator.report.answers.modes import URING
from orchestrator.report.answers.zerocopy import QUESTION as ZERO_COPY_REAL
from orchestrator.report.markdown import render_markdown
from orchestrator.report.runfolder import load_run
from orchestrator.rows import zerocopy
from orchestrator.rows.agentjson import load_agent_json
from orchestrator.rows.results import cell_row, read_results

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "uring"


def _row(name: str) -> dict:
    folder = FIXTURE / "cells" / name
    cell = json.loads((folder / "cell.json").read_text())["cell"]
    return cell_row(cell, load_agent_json(folder / "server.json"), load_agent_json(folder / "client.json"),
                    None, None, None)


def test_an_io_uring_zc_cell_fills_the_zero_copy_columns_one_notification_per_request():
    row = _row("stream-io_uring_zc-65536B-1t-r1")
    assert row["status"] == "ok"
    assert row["zerocopy_sends"] == row["zerocopy_notifications"] == row["zerocopy_completed_sends"] > 0
    assert row["zerocopy_outstanding"] == 0
    assert row["zerocopy_copied_fraction"] == 1.0  # loopback: every notification said copied
    assert zerocopy.label("io_uring_zc", row["zerocopy_copied_fraction"]) == "io_uring_zc: copied (not zero-copy)"
    assert zerocopy.mark("io_uring_zc", row["zerocopy_copied_fraction"]) == "*"


def test_a_plain_io_uring_cell_has_no_zero_copy_columns():
    row = _row("stream-io_uring-65536B-1t-r1")
    assert row["status"] == "ok"
    assert row.get("zerocopy_copied_fraction") is None
    assert zerocopy.copying("io_uring", 1.0) is zerocopy.Copying.OTHER_MODE


def test_results_label_every_io_uring_zc_cell_copied_and_never_plain():
    summary = stats.summarize(read_results(FIXTURE / "results.csv"))
    uring_zc = summary[summary["mode"] == "io_uring_zc"]
    assert len(uring_zc) == 2
    assert set(uring_zc["mode_label"]) == {"io_uring_zc: copied (not zero-copy)"}
    assert uring_zc["copied"].all()
    assert set(summary.loc[summary["mode"] == "io_uring", "mode_label"]) == {"io_uring"}


def test_the_answers_cover_io_uring_zc_and_ask_whether_io_uring_pays():
    run = load_run(FIXTURE)
    summary = stats.summarize(run.results)
    found = {a.question: a for a in answers(summary, run)}
    real = found[ZERO_COPY_REAL]
    assert {f.subject for f in real.findings if f.kind == "copied"} == {"zero_copy", "io_uring_zc"}
    assert "io_uring_zc: copied in every cell" in real.sentence
    assert "IORING_OP_SEND_ZC data for a local socket" in real.sentence
    uring = found[URING]
    assert not uring.refusal
    subjects = {f.subject for f in uring.findings}
    assert {"io_uring vs one_copy", "io_uring_zc vs zero_copy", "io_uring_zc vs io_uring"} <= subjects
    assert any(f.kind == "copied" and f.subject == "io_uring_zc" for f in uring.findings)
    text = render_markdown(run, summary, {})
    assert f"### {URING}" in text
    assert "| io_uring_zc: copied (not zero-copy) | 64KiB | 1 |" in text
    assert "| io_uring_zc | 64KiB" not in text  # a copied cell never under the bare name


def test_a_run_without_io_uring_does_not_ask():
    run = load_run(FIXTURE)
    summary = stats.summarize(run.results)
    plain = summary[~summary["mode"].isin(["io_uring", "io_uring_zc"])]
    assert URING not in {a.question for a in answers(plain, run)}


def test_registered_buffers_are_a_variant_of_their_own_and_still_labelled_copied():
    run = load_run(FIXTURE / "registered")
    assert set(run.results["uring_buffers"]) == {"plain", "registered"}
    summary = stats.summarize(run.results)
    assert len(summary) == 4 and set(summary["mode_label"]) == {"io_uring_zc: copied (not zero-copy)"}
    text = render_markdown(run, summary, {})
    assert "**With uring_buffers=registered**" in text and "**With uring_buffers=plain**" in text
    # Only io_uring_zc was measured: nothing to compare it with, and the answer says so.
    assert "it has stream cells of io_uring_zc but of none of the modes to compare them with" in text
