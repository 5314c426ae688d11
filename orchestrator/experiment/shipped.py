"""The files that ship with orchestrate: the agent's C sources and the example experiments.

They live at the top of the repository (`agents/`, `configs/`); pyproject.toml installs them
as `orchestrator/_agents` and `orchestrator/_configs`, so an installed wheel finds them beside
the package. A checkout or an editable install finds them at the top of the repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.abc import Traversable

_CHECKOUT = Path(__file__).resolve().parents[2]  # the checkout: orchestrator/experiment/shipped.py


def _folder(installed: str, in_checkout: str) -> Traversable:
    packaged = resources.files("orchestrator") / installed
    if packaged.is_dir():
        return packaged
    return _CHECKOUT / in_checkout


def agent_sources() -> Traversable:
    return _folder("_agents", "agents")


def configs() -> Traversable:
    return _folder("_configs", "configs")
