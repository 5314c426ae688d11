"""The one exception family, and the exit status each kind maps to at the CLI."""


class OrchestrateError(Exception):
    """Base of every error a user can cause or meet; the CLI prints it without a traceback."""

    exit_code = 1


class ConfigError(OrchestrateError):
    """A bad experiment or inventory file, or a bad option: nothing has run yet."""

    exit_code = 2


class HostError(OrchestrateError):
    """A host that cannot be reached, or a remote command that failed or timed out."""

    exit_code = 3

    def __init__(self, host: str, message: str):
        super().__init__(f"{host}: {message}")
        self.host = host


class PreflightError(OrchestrateError):
    """Preflight found problems; the run did not start."""

    exit_code = 3


class CellError(OrchestrateError):
    """One cell failed; the run records it and goes on."""


class RunFailed(OrchestrateError):
    """The run finished, but some cells failed."""

    exit_code = 1


class LabError(OrchestrateError):
    """The namespace lab could not be built, inspected or removed."""

    exit_code = 4


class DiskError(OrchestrateError):
    """A run file could not be written or read back on this machine: a full disk, a quota, an
    I/O error. Nothing half-written is left behind; the run can be finished once there is room."""

    exit_code = 5


class UnsafeWorkdir(PreflightError):
    """A workdir (or a path we use in it) that another account could have planted or can change."""
