"""The agent builds warning-free (-Wall -Wextra -Werror) with both gcc and clang."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_builds_clean(compiler: str, tmp_path: Path) -> None:
    require(shutil.which(compiler) is not None, f"{compiler} is not installed")
    r = subprocess.run(["sh", str(ROOT / "agents" / "build.sh"), str(tmp_path)],
                       env={**os.environ, "CC": compiler}, capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no warnings either, even those -Werror would not promote
    out = subprocess.run([str(tmp_path / "agent"), "server"], capture_output=True, text=True)
    assert out.returncode == 2
