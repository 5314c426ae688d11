"""From a cell's raw files to its row: where each file of a run folder lives, the agent's JSON,
perf's counts, TCP_INFO, host counters and stalls, and results.csv written and read. No SSH."""
