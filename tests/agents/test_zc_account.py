"""The zero-copy completion accounting across the 32-bit id wraparound: a small C program
(zc_account.c) linked with agents/zc.c, built warning-free with gcc and clang, then run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

pytestmark = pytest.mark.integration

AGENTS = ROOT / "agents"


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_completion_ranges_across_the_wraparound(compiler: str, tmp_path: Path) -> None:
    require(shutil.which(compiler) is not None, f"{compiler} is not installed")
    program = tmp_path / "zc_account"
    build = subprocess.run(
        [compiler, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{AGENTS}", "-o", str(program),
         str(Path(__file__).parent / "zc_account.c"), str(AGENTS / "zc.c")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    assert build.stderr == ""
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=30)
    assert (run.returncode, run.stdout, run.stderr) == (0, "zc_account: all checks passed\n", "")
