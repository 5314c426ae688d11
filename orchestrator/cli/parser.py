"""The command line: build_parser, its description, examples and exit statuses for --help, and
what each argument completes to for `orchestrate completion`."""
# (For developers. What users read is DESCRIPTION and EXAMPLES below.)

from __future__ import annotations

import argparse

from ..version import __version__
from ..errors import EXIT_MEANINGS, ExitStatus
from ..roles import ROLES
from .commands import cmd_check, cmd_compare, cmd_init, cmd_lab, cmd_report, cmd_reproduce, cmd_run, cmd_runs
from .terminal import Terminal


def _seed(text: str) -> int:
    if not text.isdigit() or int(text) > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**63-1, not {text!r}")
    return int(text)


def _names(text: str) -> tuple[str, ...]:
    """An argparse type: a comma list of pair names."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma list of pair names, not {text!r}")
    return names


def _per_pair(cast):
    """An argparse type: one number, or a comma list of numbers (one per lab pair)."""
    def parse(text: str) -> tuple:
        try:
            return tuple(cast(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or a comma list of numbers, not {text!r}") from None
    return parse


DESCRIPTION = """\
Measure what data copies cost on the socket send path (two_copy, one_copy, zero_copy, sendfile,
io_uring, io_uring_zc) between two hosts, with perf counters, and turn the raw files into results.csv and a report."""

EXAMPLES = """\
examples:
  orchestrate run --dry-run configs/full.yml    what a run would do, and how long it would take
  orchestrate run configs/quick.yml             run it; the report is results/<run-id>/report.html
  orchestrate run --resume results/<run-id>     finish an interrupted run
  orchestrate check configs/full.yml --inventory lab.yml   reach the hosts, check what a run needs
  orchestrate report results/<run-id> --json    (re)write the report; print a JSON summary
  orchestrate compare results/<A> results/<B>   the same cells of two runs side by side
  orchestrate reproduce results/<run-id> --inventory new.yml   the same run on other hosts, then compared
  orchestrate runs --host lab-a --json          the run folders under results/, with their hosts
  orchestrate lab up --prefix orch              two hosts made of network namespaces (root)
  orchestrate completion bash > ~/.local/share/bash-completion/completions/orchestrate
"""


def exit_status_help() -> str:
    """The exit statuses, from the one enum, for --help's epilog."""
    return "exit status:\n" + "\n".join(f"  {int(status):>3}  {EXIT_MEANINGS[status]}" for status in ExitStatus)


# What an argument completes to, for `orchestrate completion`; shtab is imported only there.
FILE, DIRECTORY = "file", "directory"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrate", description=DESCRIPTION,
                                     epilog=EXAMPLES + "\n" + exit_status_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"orchestrate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_inventory(p: argparse.ArgumentParser) -> None:
        p.add_argument("--inventory", default=None, help="hosts file (default: ./inventory.yml)")

    def with_output(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true",
                       help="print one JSON document on stdout (run folder, cell counts, failures, summary rows, "
                            "exit status); human output goes to stderr")
        p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors (and --json's document)")

    def with_baseline(p: argparse.ArgumentParser) -> None:
        p.add_argument("--baseline", metavar="NAME", default=None,
                       help="with several host pairs: the pair the report divides the others by "
                            "(default: the first pair in the inventory's order)")

    p = commands.add_parser("init", help="write an example inventory.yml and the shipped configs/ into a folder")
    p.add_argument("directory", nargs="?", default=".", help="where to write them (default: .)").complete = DIRECTORY
    p.add_argument("--force", action="store_true", help="overwrite files that are already there")
    p.set_defaults(handler=cmd_init)

    p = commands.add_parser("run", help="run an experiment and collect its results")
    p.add_argument("config", nargs="?", help="experiment file, such as configs/full.yml").complete = FILE
    with_inventory(p)
    p.add_argument("--results", default="results", help="where run folders go (default: ./results)")
    p.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run without redoing its finished cells")
    p.add_argument("--retry-failed", action="store_true",
                   help="with --resume: measure failed and degraded cells again (their raw files are kept aside)")
    p.add_argument("--yes", action="store_true", help="run a plan over the size limit (24 h or 100,000 cells)")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    with_baseline(p)
    p.add_argument("-v", "--verbose", action="store_true", help="show the full preflight table")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="print the resolved config, the hosts, the planned cells in order with their seed, and an "
                        "estimate of the wall time; contact no host")
    p.add_argument("--check", action="store_true", help="with --dry-run: run preflight on the hosts too")
    p.add_argument("--seed", type=_seed, default=None,
                   help="the seed that shuffles the cells (default: the config's, or a new one): replays a dry run's order")
    p.add_argument("--pairs", type=_names, default=None, metavar="A,B",
                   help="run only these pairs of the inventory (default: every pair, all at once)")
    p.add_argument("--serial", action="store_true",
                   help="run the pairs one after another, not at the same time (pairs that share a switch)")
    with_output(p)
    p.set_defaults(handler=cmd_run)

    p = commands.add_parser("check", help="preflight only: reach the hosts and check what a run needs")
    p.add_argument("config", help="experiment file whose needs are checked, such as configs/full.yml").complete = FILE
    with_inventory(p)
    p.add_argument("--pairs", type=_names, default=None, metavar="A,B",
                   help="check only these pairs of the inventory (default: every pair, all at once)")
    with_output(p)
    p.set_defaults(handler=cmd_check)

    p = commands.add_parser("report", help="write report.md, report.html, summary.csv and plots for a run")
    p.add_argument("run_dir", help="a run folder, such as results/<run-id>").complete = DIRECTORY
    with_baseline(p)
    with_output(p)
    p.set_defaults(handler=cmd_report)

    p = commands.add_parser("compare", help="compare two runs cell by cell")
    p.add_argument("run_a", metavar="RUN_A", help="the reference run's folder, such as results/<run-id>").complete = DIRECTORY
    p.add_argument("run_b", metavar="RUN_B", help="the run to set against it; ratios are B/A").complete = DIRECTORY
    p.add_argument("--out", metavar="DIR", help="folder for compare.md, compare.csv and the plot "
                   "(default: compare/RUN_A_vs_RUN_B beside RUN_B)")
    p.add_argument("--pair", metavar="NAME[:NAME]", help="for runs on several host pairs: the pair of each run to "
                   "compare (A_NAME:B_NAME when their names differ; a run on one pair gives its own)")
    with_output(p)
    p.set_defaults(handler=cmd_compare)

    p = commands.add_parser("reproduce", help="run a finished run again on other hosts (its config, seed and order), "
                            "then compare the two")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run to reproduce, such as results/<run-id>").complete = DIRECTORY
    p.add_argument("--inventory", default=None,
                   help="the new hosts (default: ./inventory.yml): one pair, or a pair of each name the run used")
    p.add_argument("--results", default="results", help="where the new run folder goes (default: ./results)")
    p.add_argument("--pairs", type=_names, default=None, metavar="A,B",
                   help="of a run on several pairs: reproduce only these (default: every pair it used)")
    p.add_argument("--serial", action="store_true", help="run the pairs one after another, not at the same time")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="say what will run and what differs from the original (hosts, orchestrate version, "
                        "agent source hash); contact no host")
    p.add_argument("--yes", action="store_true", help="run a plan over the size limit (24 h or 100,000 cells)")
    p.add_argument("--no-report", action="store_true", help="skip the new run's own report (the comparison is written)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the full preflight table")
    with_output(p)
    p.set_defaults(handler=cmd_reproduce, resume=None, retry_failed=False, baseline=None, seed=None, check=False)

    p = commands.add_parser("runs", help="list the run folders under a folder, with their hosts and cells")
    p.add_argument("directory", nargs="?", default="results", help="where the run folders are (default: ./results)"
                   ).complete = DIRECTORY
    p.add_argument("--name", default=None, help="only runs whose experiment name holds this")
    p.add_argument("--host", default=None, help="only runs with a host whose SSH target, data address or name holds this")
    p.add_argument("--kernel", default=None, help="only runs with a host whose kernel release holds this")
    p.add_argument("--since", default=None, metavar="WHEN", help="only runs started at or after this (2026-12-06, 2026-12-06T05:30; UTC)")
    p.add_argument("--until", default=None, metavar="WHEN", help="only runs started at or before this (a date: to its end)")
    p.add_argument("--reproduces", nargs="?", const="", default=None, metavar="RUN_ID",
                   help="only runs that reproduce one whose id holds RUN_ID (alone: that reproduce any)")
    with_output(p)
    p.set_defaults(handler=cmd_runs)

    p = commands.add_parser("lab", help="a two-host lab of network namespaces on this machine (root)")
    p.add_argument("action", choices=["up", "down", "status"],
                   help="up: build the lab (again), down: remove it, status: show what exists")
    p.add_argument("--prefix", default="orch", help="name prefix of the namespaces (default: orch)")
    p.add_argument("--inventory-out", default="lab-inventory.yml", help="where lab up writes the lab's inventory")
    p.add_argument("--pairs", type=int, default=1, metavar="N",
                   help="N independent pairs p1..pN, each with its own data link and sshds, in one inventory")
    p.add_argument("--mtu", type=_per_pair(int), default=None,
                   help="MTU of the data link; with --pairs, a comma list gives each pair its own (1500,9000,1280)")
    p.add_argument("--delay-ms", type=float, default=None, help="netem delay on the data link, each way")
    p.add_argument("--rate-mbit", type=_per_pair(float), default=None,
                   help="rate limit on the data link, Mbit/s (a tbf qdisc; with --delay-ms, netem's rate); "
                        "a comma list gives each pair its own")
    p.add_argument("--bastion", action="store_true", help="a bastion namespace; the hosts' sshds are reachable only through it")
    p.add_argument("--user", metavar="NAME", default=None, help="create an unprivileged account NAME and log in as it")
    p.add_argument("--sudo-perf", action="store_true", help="with --user: a sudoers rule that lets NAME run perf, and only perf")
    p.add_argument("--shell", choices=["bash", "sh"], default="bash", help="with --user: the account's login shell (default bash)")
    p.add_argument("--chatty", action="store_true",
                   help="with --user: start-up files that print on stdout and stderr, set umask 000 and a missing locale, as at real sites")
    p.add_argument("--no-compiler", metavar="ROLE", action="append", default=[], choices=ROLES,
                   help="hide the C compilers from that host's sshd and its sessions (repeatable)")
    p.set_defaults(handler=cmd_lab)

    p = commands.add_parser("completion", help="print a shell completion script (bash or zsh)",
                            description="Print a completion script for orchestrate, generated from its options.",
                            epilog="bash: orchestrate completion bash > ~/.local/share/bash-completion/completions/orchestrate\n"
                                   "zsh:  orchestrate completion zsh > ~/.zfunc/_orchestrate  (with fpath+=~/.zfunc)",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shell", choices=["bash", "zsh"], help="the shell to complete in")
    p.set_defaults(handler=cmd_completion)
    return parser


def cmd_completion(args: argparse.Namespace, term: Terminal) -> ExitStatus:
    """`orchestrate completion SHELL`: here, beside the parser it is generated from."""
    term.stdout.write(completion_script(args.shell))
    return ExitStatus.OK


def completion_script(shell: str) -> str:
    """The completion script for `shell`, generated from build_parser's options."""
    import shtab

    # shtab reads the parser itself: completion never falls behind the options. Its FILE and
    # DIRECTORY hints replace our markers here only, so every other command skips importing it.
    parser = build_parser()
    hints = {FILE: shtab.FILE, DIRECTORY: shtab.DIRECTORY}
    for action in _all_actions(parser):
        if getattr(action, "complete", None) in hints:
            action.complete = hints[action.complete]  # type: ignore[attr-defined]
    return shtab.complete(parser, shell=shell)


def _all_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:  # argparse has no public walk of its subparsers
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_actions(sub)
