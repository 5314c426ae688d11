import pytest

from orchestrator.experiment.units import format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    "text, size",
    [(1024, 1024), ("1024", 1024), ("4KiB", 4096), ("64K", 65536), ("64k", 65536), ("1MiB", 1 << 20),
     ("1M", 1 << 20), ("2GiB", 2 << 30), ("16 KiB", 16384), ("512B", 512)],
)
def test_sizes_are_binary(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "KiB", "1.5K", "-1K", "1 TB", True, None, 1.5, "64Kb!"])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize("text, seconds", [(10, 10.0), ("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("0.5s", 0.5), (1.5, 1.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["ten", "10h", "-1s", True, "1e3s"])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_size_round_trips():
    for size in (1, 1000, 1024, 4096, 65536, 1 << 20, 3 << 20):
        assert parse_size(format_size(size)) == size
    assert format_size(65536) == "64KiB"
