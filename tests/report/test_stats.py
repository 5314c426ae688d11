import math
from pathlib import Path

import numpy as np
import pytest

from orchestrator.report import stats
from orchestrator.rows.results import read_results

RUNS = Path(__file__).parents[1] / "fixtures" / "runs"


def test_estimate_on_fixed_values():
    est = stats.estimate([10.0, 12.0, 14.0])
    assert est.n == 3
    assert est.mean == pytest.approx(12.0)
    assert est.std == pytest.approx(2.0)
    # t(0.975, 2) = 4.302653 -> half width 4.302653 * 2 / sqrt(3)
    assert est.half_width == pytest.approx(4.968275, rel=1e-6)
    assert est.ci_low == pytest.approx(12.0 - 4.968275, rel=1e-6)
    assert est.cv == pytest.approx(2.0 / 12.0)


def test_estimate_ignores_missing_values():
    est = stats.estimate([5.0, math.nan, 7.0])
    assert est.n == 2
    assert est.mean == pytest.approx(6.0)
    # t(0.975, 1) = 12.7062
    assert est.half_width == pytest.approx(12.7062 * math.sqrt(2) / math.sqrt(2), rel=1e-4)


def test_single_repetition_has_no_interval():
    est = stats.estimate([3.0])
    assert est.mean == 3.0
    assert math.isnan(est.std) and math.isnan(est.ci_low) and math.isnan(est.cv)


def test_no_values():
    est = stats.estimate([math.nan])
    assert est.n == 0 and math.isnan(est.mean)


def test_ratio_of_known_samples():
    result = stats.ratio([10.0, 10.5, 9.5], [20.0, 21.0, 19.0])
    assert result.ratio == pytest.approx(2.0)
    assert result.ci_low < 2.0 < result.ci_high
    assert result.differs()
    same = stats.ratio([10.0, 11.0, 9.0], [10.5, 9.5, 10.0])
    assert not same.differs()
    assert same.ci_low < 1.0 < same.ci_high


def test_ratio_needs_two_repetitions_for_an_interval():
    result = stats.ratio([10.0], [12.0, 13.0])
    assert result.ratio == pytest.approx(1.25)
    assert math.isnan(result.ci_low) and math.isnan(result.p_value)


def test_cell_key_strips_only_the_repetition():
    assert stats.cell_key("stream-one_copy-65536B-4t-r2") == "stream-one_copy-65536B-4t"
    assert stats.cell_key("rr-two_copy-1024B-1t-r10-rcvbuf=0") == "rr-two_copy-1024B-1t-rcvbuf=0"


def test_summarize_fixture_run():
    results = read_results(RUNS / "20261120T101500Z-lab-hw-a1b2" / "results.csv")
    summary = stats.summarize(results)
    assert len(summary) == len(results) // 3  # three repetitions per cell
    failed = summary.set_index("cell").loc["stream-one_copy-4096B-2t"]
    assert failed["failed"] == 1 and failed["ok"] == 2 and failed["throughput_gbps_n"] == 2
    assert "connection reset" in failed["errors"]
    noisy = summary.set_index("cell").loc["stream-two_copy-4096B-2t"]
    assert noisy["unstable"] and noisy["throughput_gbps_cv"] > stats.CV_THRESHOLD
    assert summary["unstable"].sum() == 1
    cell = summary.set_index("cell").loc["stream-one_copy-65536B-1t"]
    rows = results[results["cell_id"].str.startswith("stream-one_copy-65536B-1t-")]
    assert cell["throughput_gbps_mean"] == pytest.approx(rows["throughput_gbps"].mean(), rel=1e-5)


def test_summarize_labels_copied_zero_copy_cells():
    summary = stats.summarize(read_results(RUNS / "20261125T090000Z-vm-e5f6" / "results.csv"))
    zero = summary[summary["mode"] == "zero_copy"]
    assert len(zero) > 0 and zero["copied"].all()
    assert (zero["mode_label"] == "zero_copy: copied (not zero-copy)").all()
    assert summary["cycles_per_byte_mean"].isna().all()


def test_welch_p_is_scipy_stats_welch_test_on_recorded_throughputs():
    """stats.ratio's p-value (scipy.special's t distribution, not scipy.stats, which costs a second
    to import) is Welch's test on the log values as scipy.stats.ttest_ind gives it, on every pair of a real run's cells."""
    from scipy import stats as scistats

    frame = read_results(RUNS / "20261124T180000Z-lab-hw2-c3d4" / "results.csv")
    ok = frame[frame["status"] == "ok"]
    cells = [g["throughput_gbps"].astype(float).tolist() for _, g in ok.groupby(ok["cell_id"].map(stats.cell_key))]
    compared = 0
    for a, b in zip(cells, cells[1:]):
        want = scistats.ttest_ind(np.log(b), np.log(a), equal_var=False).pvalue
        assert stats.ratio(a, b).p_value == pytest.approx(want, rel=1e-9, abs=1e-15)
        compared += 1
    assert compared > 20


def test_the_ratio_s_interval_and_its_p_value_are_one_test_s():
    """Welch's t on the log values: p < 0.05 exactly when the interval excludes 1, for ratios on both
    sides of 1 and spreads from tight to wild (the delta-method interval beside a Welch test on raw
    values disagreed on a 13x drop)."""
    a = [26.1, 27.5]
    for b in ([1.98, 2.0], [1.0, 9.0], [25.0, 29.0], [30.0, 31.0], [0.2, 40.0], [27.0, 27.2, 26.5]):
        result = stats.ratio(a, b)
        excludes = result.ci_low > 1 or result.ci_high < 1
        assert result.differs() == excludes == (result.p_value < 0.05), b
        assert result.ci_low < result.ratio < result.ci_high
        # The centre is the ratio of the geometric means.
        assert result.ratio == pytest.approx(math.exp(np.mean(np.log(b)) - np.mean(np.log(a))))
    assert stats.ratio(a, [1.98, 2.0]).differs()


def test_a_ratio_of_values_that_are_not_all_positive_has_no_interval():
    result = stats.ratio([0.0, 1.0], [2.0, 3.0])
    assert math.isnan(result.ci_low) and math.isnan(result.p_value) and not result.differs()
