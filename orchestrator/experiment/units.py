"""Sizes and durations as users write them: `64KiB`, `1M`, `1024`, `10s`, `500ms`."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]?)(i?B?)\s*\Z", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*\Z", re.IGNORECASE)
_SECONDS_PER_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}


def parse_size(value: object) -> int:
    """Bytes from an int or a string; K, M and G are binary (1 KiB = 1024), as in iperf3 -l."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            number, prefix, _ = match.groups()
            return int(number) * 1024 ** "_KMG".index(prefix.upper() or "_")
    raise ValueError(f"expected a size such as 1024, 4KiB, 64K or 1MiB, got {value!r}")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as `10s`, `500ms` or `2m`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            number, unit = match.groups()
            return float(number) * _SECONDS_PER_UNIT[(unit or "s").lower()]
    raise ValueError(f"expected a duration such as 10s, 500ms or 2m, got {value!r}")


def format_size(size: int) -> str:
    """The shortest exact binary form: 65536 -> 64KiB, 1000 -> 1000B."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def format_duration(seconds: float) -> str:
    """A span of time as the estimate, the plan's size and the progress bar's ETA print it:
    `12 s`, `1 min 37 s`, `2 h 05 min`; from two days on, `3.5 days` or `1.2 years`."""
    for unit, size in (("years", 365 * 86400), ("days", 86400)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit}"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
