"""main(): `orchestrate ARGV`, and the one place where what a command raises becomes its exit
status (an OrchestrateError's own, an interrupt's, or a bug's, whose traceback goes to a file)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import TextIO

from rich.markup import escape

from ..rows import layout
from ..errors import ExitStatus, OrchestrateError
from ..run.interrupts import exit_status, signal_name, signals_interrupt
from .parser import build_parser
from .terminal import Terminal


def _save_traceback(exc: Exception, run_dir: str | None) -> Path | None:
    """The whole traceback, appended to the run's run.log (or, before there is a run folder, to
    a new file in the temp folder); None if neither can be written."""
    record = logging.LogRecord("orchestrator.cli", logging.ERROR, __file__, 0, "unexpected error, a bug in orchestrate",
                               None, (type(exc), exc, exc.__traceback__))
    text = logging.Formatter("%(asctime)s %(name)s %(message)s").format(record) + "\n"
    if run_dir and Path(run_dir).is_dir():
        try:
            with open(Path(run_dir) / layout.RUN_LOG, "a", encoding="utf-8") as log:
                log.write(text)
            return Path(run_dir) / layout.RUN_LOG
        except OSError:
            pass
    try:
        fd, name = tempfile.mkstemp(prefix="orchestrate-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as log:
            log.write(text)
        return Path(name)
    except OSError:
        return None


def _unexpected(term: Terminal, exc: Exception, run_dir: str | None) -> str:
    """A bug: its traceback goes to a file, and the user is shown one line that points at it."""
    first = (str(exc).splitlines() or [""])[0][:200]
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    saved = _save_traceback(exc, run_dir)
    if saved is None:
        # Nowhere to keep it: the traceback on the terminal is then better than losing it.
        term.say(escape("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()))
        message = f"unexpected error ({what}); its traceback could not be saved, and is above"
    else:
        message = f"unexpected error ({what}); the traceback is in {saved}"
    term.say(f"[red]error[/]: {escape(message)}")
    return message


# Where the libraries' warnings (numpy's "Mean of empty slice", matplotlib's, pandas') are logged:
# under "orchestrator", so a run's run.log handler (run/runner.py) takes them.
WARNINGS_LOGGER = "orchestrator.warnings"


def _library_logs_off_the_terminal() -> None:
    """paramiko logs from its transport threads ("Exception (client): ..." and a traceback, line by
    line), matplotlib logs a missing font; a logger with no handler anywhere up its tree goes to
    logging's last resort, stderr. A run's run.log handler takes paramiko's and the warnings while
    it is attached (run/runner.py); otherwise, as in `check`, `report` or `compare`, or from a
    thread that ends after the run, they are dropped."""
    for name in ("paramiko", "matplotlib", WARNINGS_LOGGER):
        logger = logging.getLogger(name)
        if not any(type(handler) is logging.NullHandler for handler in logger.handlers):
            logger.addHandler(logging.NullHandler())


def _warning_to_log(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: TextIO | None = None, line: str | None = None) -> None:
    """warnings.showwarning's stand-in while a command runs: a library's warning is logged, never printed."""
    logging.getLogger(WARNINGS_LOGGER).warning("%s: %s (%s:%s)", category.__name__, message, filename, lineno)


def _drop_dead_terminal(*streams: TextIO) -> None:
    """With the terminal gone, Python's own last flush would fail and turn our exit status into 120."""
    for stream in streams:
        try:
            stream.flush()
        except OSError:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError):
                pass


def main(argv: list[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """`orchestrate ARGV`, writing to the streams given (by default this process's own)."""
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    parser = build_parser()
    # argparse writes --help, --version and usage errors to sys.stdout and sys.stderr itself.
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        args = parser.parse_args(argv)
    as_json = getattr(args, "json", False)
    term = Terminal.over(stdout, stderr, as_json=as_json, quiet=getattr(args, "quiet", False))
    args.doc = {"command": args.command}
    _library_logs_off_the_terminal()
    # catch_warnings puts showwarning back when the command ends (main may run again in one process).
    with signals_interrupt(), warnings.catch_warnings():
        warnings.showwarning = _warning_to_log
        try:
            status = ExitStatus(args.handler(args, term))
        except OrchestrateError as exc:
            term.say(f"[red]error[/]: {escape(str(exc))}")
            status = ExitStatus(exc.exit_code)
            args.doc["error"] = str(exc)
        except KeyboardInterrupt as exc:
            term.say(f"[yellow]interrupted[/] ({signal_name(exc)})")
            status = ExitStatus(exit_status(exc))
        except Exception as exc:  # noqa: BLE001 - the one boundary for bugs: never a traceback on the terminal
            args.doc["error"] = _unexpected(term, exc, args.doc.get("run_dir"))
            status = ExitStatus.INTERNAL_ERROR
    try:
        if as_json:
            args.doc.update(exit_status=int(status), exit_meaning=status.meaning)
            stdout.write(json.dumps(args.doc, indent=2, default=str) + "\n")
    finally:
        _drop_dead_terminal(stdout, stderr)
    return int(status)
