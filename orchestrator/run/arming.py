"""When a cell's commands may be started early, during the previous cell's warm-up: only when the
warm-up holds a command session's start-up twice over (sshd's, the login shell's, its start-up
files': about 0.1 s with pyenv on the development VM, seconds with conda). Starting sessions
must never disturb a measured window."""

from __future__ import annotations

ARM_MIN_WARMUP = 0.5
ARM_STARTUPS = 2  # the warm-up must hold this many of the slowest session start-up seen


def warmup_to_arm(startup: float) -> float:
    """The least warm-up (seconds) inside which a session that takes `startup` seconds may start."""
    return max(ARM_MIN_WARMUP, ARM_STARTUPS * startup)
