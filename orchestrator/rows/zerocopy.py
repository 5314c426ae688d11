"""Whether a zero_copy result was zero-copy: the one rule the tables, plots, answers, `compare`
and the terminal summary all follow (README, "copied").

Each completion says whether the kernel copied the data after all
(SO_EE_CODE_ZEROCOPY_COPIED); results.csv keeps the copied fraction of the sends. A result the
kernel copied, even in part, is never shown as zero-copy. This module imports nothing from
the package, so any module may use it.
"""

from __future__ import annotations

import enum
import math

# From this fraction of copied sends up, a cell is a copy outright; below it, it is shown with
# the copied percentage.
COPIED_THRESHOLD = 0.5


class Copying(enum.Enum):
    OTHER_MODE = "not zero_copy"  # the rule does not apply
    NONE_COPIED = "zero-copy"
    PARTLY_COPIED = "partly copied"
    COPIED = "copied"
    UNVERIFIED = "unverified"  # no completion counted, so nothing is known

    @property
    def kernel_copied(self) -> bool:
        """The kernel copied some or all sends: the result must not be shown as zero-copy."""
        return self in (Copying.PARTLY_COPIED, Copying.COPIED)


def copying(mode: str, copied_fraction: object) -> Copying:
    """The rule: what a cell of `mode` with this copied fraction (NaN, None or <NA> when no
    completion was counted) is, as far as zero-copy goes."""
    if mode != "zero_copy":
        return Copying.OTHER_MODE
    try:
        fraction = float(copied_fraction)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # None, pandas' <NA>
        return Copying.UNVERIFIED
    if math.isnan(fraction):
        return Copying.UNVERIFIED
    if fraction >= COPIED_THRESHOLD:
        return Copying.COPIED
    if fraction > 0:
        return Copying.PARTLY_COPIED
    return Copying.NONE_COPIED


def label(mode: str, copied_fraction: object) -> str:
    """The name a cell is shown under in tables, legends and comparisons."""
    verdict = copying(mode, copied_fraction)
    if verdict is Copying.UNVERIFIED:
        return "zero_copy (unverified: no completions counted)"
    if verdict is Copying.COPIED:
        return "zero_copy: copied (not zero-copy)"
    if verdict is Copying.PARTLY_COPIED:
        fraction = float(copied_fraction)  # type: ignore[arg-type]
        # Never "0% copied": that would read as zero-copy.
        share = f"{fraction:.0%}" if fraction >= 0.01 else "<1%"
        return f"zero_copy ({share} of sends copied)"
    return mode


def mark(mode: str, copied_fraction: object) -> str:
    """The terminal summary's one-character mark after the mode: `*` copied (some or all sends),
    `?` unverified, empty otherwise."""
    verdict = copying(mode, copied_fraction)
    return "*" if verdict.kernel_copied else "?" if verdict is Copying.UNVERIFIED else ""
