"""The zero-copy completion accounting across the 32-bit id wraparound: a small C program
(zc_account.c) linked with agents/zc.c, built warning-free with gcc and clang, then run."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run_c_checks

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_completion_ranges_across_the_wraparound(compiler: str, tmp_path: Path) -> None:
    run_c_checks(compiler, tmp_path, "zc_account", "zc.c")
