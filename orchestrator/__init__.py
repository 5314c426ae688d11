"""orchestrate: socket copy-cost experiments across two hosts.

The package, in the order data flows through it:

- `experiment/`  what to measure and where: the experiment file, the inventory, the plan of cells, the estimate.
- `remote/`      the hosts: SSH connections, the workdir, the host lock, deploying the agent, host facts.
- `run/`         running the plan: preflight, each cell's agents under perf stat, the pairs, interrupts.
- `rows/`        from a cell's raw files to its results.csv row: agent JSON, perf, TCP_INFO, host counters, stalls.
- `report/`      from results.csv to summary.csv, plots, report.md/html and `compare`; it never touches a host.
- `cli/`         the `orchestrate` command: parsing, the terminal, and the one place errors become exit statuses.
- `lab/`         a two-host lab on this machine (network namespaces), for trying all of the above.

Beside them, leaves that import nothing of the package: `errors`, `roles`, `processes`, `version`.
"""

from .version import __version__

__all__ = ["__version__"]
