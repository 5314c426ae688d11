"""The report's receive question, on real lab runs' results.csv (tests/fixtures/receive/)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.report import receive, stats
from orchestrator.rows.results import read_results

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "receive"


def _answer(name: str) -> str:
    summary = stats.summarize(read_results(FIXTURES / name))
    return "\n".join(receive.question(summary))


def test_mapped_receives_pay_from_the_smallest_size_and_unaligned_ones_never():
    text = _answer("results-mtu61492.csv")
    assert text.startswith(receive.TITLE)
    zero_copy = text.split("**mode=zero_copy")[1]
    one_copy = text.split("**mode=one_copy")[1].split("**mode=zero_copy")[0]
    # 64 KiB: zerocopy's receiver CPU interval lies wholly below copy's; at 256 KiB and 1 MiB the two
    # intervals touch (n = 3 a cell), so the repetitions cannot tell, though the means fell ×0.49 and ×0.30
    summary = stats.summarize(read_results(FIXTURES / "results-mtu61492.csv"))
    cells = summary[summary["mode"] == "zero_copy"].set_index(["message_size", "receive"])
    apart = {size: cells.at[(size, "zerocopy"), "receiver_cpu_s_per_gb_ci_high"] < cells.at[(size, "copy"), "receiver_cpu_s_per_gb_ci_low"]
             for size in (65536, 262144, 1048576)}
    assert apart == {65536: True, 262144: False, 1048576: False}
    assert "Receiving without a copy pays at 64KiB, can't tell at 256KiB, 1MiB:" in zero_copy
    assert "| 64KiB |" in zero_copy and "100.0% | zerocopy |" in zero_copy
    assert "does not pay at any size" in one_copy
    assert one_copy.count("not page-aligned") == 3 and "zerocopy: not mapped (read)" in one_copy


def test_at_mtu_1500_the_cells_are_partly_mapped_and_the_mtu_is_the_reason():
    text = _answer("results-mtu1500.csv")
    assert "does not pay at any size" in text
    assert "path MTU is 1500" in text and "mapped, the rest read" in text
    assert "% | zerocopy |" not in text  # never shown as a zero-copy receive


def test_a_run_without_zerocopy_receives_does_not_ask():
    summary = stats.summarize(read_results(FIXTURES / "results-mtu1500.csv"))
    copy_only = summary[summary["receive"] == "copy"]

    class Run:
        results = read_results(FIXTURES / "results-mtu1500.csv").query("receive == 'copy'")
        summary = stats.summarize(results)

    assert receive.questions(copy_only, Run()) == []
