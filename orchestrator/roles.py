"""The two roles a host plays in a run, stated once.

This module imports nothing from the package, so any module may use it (the lab package among them).
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["server", "client"]
# In the order runs connect to them and files and tables list them: the server first.
ROLES: tuple[Role, ...] = get_args(Role)
