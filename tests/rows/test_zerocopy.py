"""The one rule for whether a zero_copy result is shown as zero-copy (orchestrator/rows/zerocopy.py)."""

import math

import pandas as pd
import pytest

from orchestrator.rows import zerocopy
from orchestrator.rows.zerocopy import Copying

COPIED_LABEL = "zero_copy: copied (not zero-copy)"
UNVERIFIED_LABEL = "zero_copy (unverified: no completions counted)"


@pytest.mark.parametrize(
    ("fraction", "verdict", "label", "mark"),
    [
        (0.0, Copying.NONE_COPIED, "zero_copy", ""),
        (0.001, Copying.PARTLY_COPIED, "zero_copy (<1% of sends copied)", "*"),
        (0.02, Copying.PARTLY_COPIED, "zero_copy (2% of sends copied)", "*"),
        (0.49, Copying.PARTLY_COPIED, "zero_copy (49% of sends copied)", "*"),
        (0.5, Copying.COPIED, COPIED_LABEL, "*"),
        (1.0, Copying.COPIED, COPIED_LABEL, "*"),
        (math.nan, Copying.UNVERIFIED, UNVERIFIED_LABEL, "?"),
        (None, Copying.UNVERIFIED, UNVERIFIED_LABEL, "?"),
        (pd.NA, Copying.UNVERIFIED, UNVERIFIED_LABEL, "?"),
    ],
)
def test_each_copied_fraction_gets_its_one_label_everywhere(fraction, verdict, label, mark):
    assert zerocopy.copying("zero_copy", fraction) is verdict
    assert zerocopy.label("zero_copy", fraction) == label
    assert zerocopy.mark("zero_copy", fraction) == mark
    # The project rule: a result the kernel copied, even one send in a thousand, is never shown as zero-copy.
    assert verdict.kernel_copied == (label not in ("zero_copy", UNVERIFIED_LABEL))


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0, math.nan])
def test_other_modes_keep_their_name_whatever_the_fraction(fraction):
    assert zerocopy.copying("one_copy", fraction) is Copying.OTHER_MODE
    assert zerocopy.label("one_copy", fraction) == "one_copy"
    assert zerocopy.mark("one_copy", fraction) == ""


def test_the_threshold_is_where_a_partial_copy_becomes_a_copy():
    below = math.nextafter(zerocopy.COPIED_THRESHOLD, 0.0)
    assert zerocopy.copying("zero_copy", below) is Copying.PARTLY_COPIED
    assert zerocopy.copying("zero_copy", zerocopy.COPIED_THRESHOLD) is Copying.COPIED
