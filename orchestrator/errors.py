"""The one exception family, and the exit status each kind maps to at the CLI."""

from enum import IntEnum
from typing import Sequence


class ExitStatus(IntEnum):
    """Every status `orchestrate` exits with; `--help` and README's "Exit status" list them."""

    OK = 0
    CELLS_FAILED = 1  # the run finished, but some cells failed
    BAD_ARGUMENT = 2  # a bad experiment or inventory file, option or folder, or a run folder's file that does not read: nothing ran
    HOST_FAILED = 3  # a host could not be reached, or preflight found problems
    LAB_FAILED = 4  # the namespace lab could not be built, inspected or removed
    DISK_FULL = 5  # a file could not be written on this machine (full disk, quota, I/O error, not a folder): run, report or compare
    NO_COMMON_CELLS = 6  # compare: the two runs share no cell
    SOME_PAIRS_FAILED = 7  # several pairs: at least one failed (preflight, a lost host), at least one finished
    # A bug in orchestrate, not in the user's files or hosts; sysexits.h's EX_SOFTWARE, so scripts
    # can tell it from a failed cell.
    INTERNAL_ERROR = 70
    # Stopped by a signal, as a shell reports it (128 + the signal): agents stopped, finished cells kept.
    HANGUP = 129  # SIGHUP: the terminal was closed
    INTERRUPTED = 130  # SIGINT: Ctrl-C
    TERMINATED = 143  # SIGTERM: kill, or a job scheduler

    @property
    def meaning(self) -> str:
        return EXIT_MEANINGS[self]


EXIT_MEANINGS = {
    ExitStatus.OK: "success",
    ExitStatus.CELLS_FAILED: "the run finished, but some cells failed or were degraded",
    ExitStatus.BAD_ARGUMENT: "a bad experiment or inventory file, option or folder, or a run folder's file that does not read; nothing ran",
    ExitStatus.HOST_FAILED: "a host could not be reached, or preflight found problems",
    ExitStatus.LAB_FAILED: "the namespace lab failed",
    ExitStatus.DISK_FULL: "a file could not be written on this machine (full disk, I/O error, a folder that is not one)",
    ExitStatus.NO_COMMON_CELLS: "compare: the two runs share no cell",
    ExitStatus.SOME_PAIRS_FAILED: "some pairs failed (preflight or a lost host) while the others finished; --resume finishes them",
    ExitStatus.INTERNAL_ERROR: "a bug in orchestrate: one line names the file with its traceback",
    ExitStatus.HANGUP: "stopped by SIGHUP (terminal closed); agents stopped, finished cells kept",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C, SIGINT); agents stopped, finished cells kept",
    ExitStatus.TERMINATED: "stopped by SIGTERM; agents stopped, finished cells kept",
}


class OrchestrateError(Exception):
    """Base of every error a user can cause or meet; the CLI prints it without a traceback."""

    exit_code = ExitStatus.CELLS_FAILED


class ConfigError(OrchestrateError):
    """A bad experiment or inventory file, or a bad option: nothing has run yet."""

    exit_code = ExitStatus.BAD_ARGUMENT


class FormatVersionError(ConfigError):
    """A run folder's plan.json or results.csv in a format version this orchestrate does not
    read (docs/results-schema.md, "Format versions"): written by an older or a newer one."""

    def __init__(self, path: object, found: object, supported: int):
        if isinstance(found, int):
            by = "a newer" if found > supported else "an older"
            what = f"format version {found}, written by {by} orchestrate"
        else:
            what = f"format version {found!r}, which no orchestrate writes"
        super().__init__(f"{path}: {what}; this orchestrate reads format version {supported} only. "
                         f"Use the orchestrate that wrote it, or start a new run")
        self.found = found


class HostError(OrchestrateError):
    """A host that cannot be reached, or a remote command that failed or timed out."""

    exit_code = ExitStatus.HOST_FAILED

    def __init__(self, host: str, message: str):
        super().__init__(f"{host}: {message}")
        self.host = host
        self.detail = message


class PreflightError(OrchestrateError):
    """Preflight found problems; the run did not start."""

    exit_code = ExitStatus.HOST_FAILED


class RunFailed(OrchestrateError):
    """The run finished, but some cells failed."""

    exit_code = ExitStatus.CELLS_FAILED


class PairsFailed(OrchestrateError):
    """A run on several pairs in which pairs stopped (preflight, a lost host, a bad ssh_config
    entry); the rows of the others are kept, and --resume finishes the pairs that failed.

    Its exit status says what to do next: BAD_ARGUMENT when a pair's error is the user's file
    (a ConfigError: fix it first); when every pair failed, the status their errors share (every
    host lost: HOST_FAILED), else HOST_FAILED; when others finished, SOME_PAIRS_FAILED."""

    exit_code = ExitStatus.SOME_PAIRS_FAILED

    def __init__(self, message: str, errors: "Sequence[OrchestrateError]", every: bool):
        super().__init__(message)
        statuses = {ExitStatus(e.exit_code) for e in errors}
        if any(isinstance(e, ConfigError) for e in errors):
            self.exit_code = ExitStatus.BAD_ARGUMENT
        elif every:
            self.exit_code = statuses.pop() if len(statuses) == 1 else ExitStatus.HOST_FAILED


class LabError(OrchestrateError):
    """The namespace lab could not be built, inspected or removed."""

    exit_code = ExitStatus.LAB_FAILED


class LabOptionsError(LabError, ConfigError):
    """Lab options that cannot make a lab (a value out of range, a bad combination): a usage
    error like any bad option, so it exits 2; nothing was built."""

    exit_code = ExitStatus.BAD_ARGUMENT


class DiskError(OrchestrateError):
    """A file of a run, a report or a comparison could not be written or read back on this
    machine: a full disk, a quota, an I/O error, a folder that cannot be made. Nothing
    half-written is left behind; the run can be finished once there is room."""

    exit_code = ExitStatus.DISK_FULL


class UnsafeWorkdir(PreflightError):
    """A workdir (or a path we use in it) that another account could have planted or can change."""


class NoCommonCells(OrchestrateError):
    """compare: the two runs have no cell in common, so there is nothing to set side by side."""

    exit_code = ExitStatus.NO_COMMON_CELLS
