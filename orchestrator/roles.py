"""The two roles a host plays in a run, and which of them sends and which measures, stated once.

This module imports nothing from the package, so any module may use it (the lab package among them).
"""

from __future__ import annotations

from typing import Literal, get_args

Role = Literal["server", "client"]
# In the order runs connect to them and files and tables list them: the server first.
ROLES: tuple[Role, ...] = get_args(Role)


def stream_roles(sender: object) -> tuple[Role, Role]:
    """(sending, receiving) role of a stream cell: the server sends unless the cell's `sender`
    is the client."""
    return ("client", "server") if sender == "client" else ("server", "client")


def measuring_role(workload: object, sender: object) -> Role:
    """The side whose measured window gives a row's figures: the rr client (it times the round
    trips), the stream receiver (bytes received count, never bytes sent)."""
    return "client" if workload == "rr" else stream_roles(sender)[1]
