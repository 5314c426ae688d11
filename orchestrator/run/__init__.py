"""Running a plan: preflight, each cell's agents (or iperf3) under perf stat, every pair of hosts,
and the signals that stop a run cleanly."""
