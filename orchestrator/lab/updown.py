"""``lab up`` and ``lab down``: each under the lab's lock; a fresh lab that fails half-way is
removed again, and a lab that is built but not healthy is an error.
"""

from __future__ import annotations

from ..errors import LabError
from .build import build_lab, build_pairs
from .health import LabStatus, status
from .options import LabOptions
from .state import locked, read_state
from .teardown import teardown
from .tools import preflight


def up(opts: LabOptions) -> LabStatus:
    """Build the lab, or bring an existing one in line with ``opts``; safe to run again."""
    preflight()
    with locked(opts):
        state = read_state(opts)
        recorded = len((state or {}).get("pairs") or []) or (1 if state else None)
        if recorded is not None and recorded != opts.pairs:
            raise LabError(f"lab {opts.prefix} has {recorded} pair{'s' if recorded > 1 else ''}, not {opts.pairs}; "
                           f"run `orchestrate lab down --prefix {opts.prefix}` first")
        try:
            if opts.pairs > 1:
                build_pairs(opts)
            else:
                build_lab(opts, state)
        except (LabError, OSError) as e:
            message = str(e) if isinstance(e, LabError) else f"lab up failed: {e}"
            if state is None:
                # A fresh lab that failed half-way is worth nothing; leave the machine clean.
                try:
                    teardown(opts)
                except (LabError, OSError) as cleanup:
                    message += f"; removing the half-built lab failed too ({cleanup}); run `orchestrate lab down`"
            raise LabError(message) from e
    result = status(opts)
    if not result.ok:
        bad = "; ".join(f"{r.name}: {r.state} {r.detail}".strip() for r in result.rows if r.state != "ok")
        raise LabError(f"the lab was built but is not healthy: {bad}")
    return result


def down(opts: LabOptions) -> list[str]:
    """Remove everything ``up`` made for this prefix; returns what was removed."""
    preflight()
    with locked(opts):
        try:
            return teardown(opts)
        except OSError as e:
            raise LabError(f"lab down failed: {e}") from e
