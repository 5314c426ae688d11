"""What every fake remote process in the unit tests shares: a process group, and kill/close that
only record that they were called (the real ones are tested against sshd and local shells)."""

from __future__ import annotations


class FakeGroup:
    killed = False
    closed = False

    def group(self, timeout: float) -> int | None:
        return 4242

    def kill(self) -> str | None:
        self.killed = True
        return None

    def close(self) -> None:
        self.closed = True
