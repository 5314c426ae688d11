"""From a run folder to what a reader sees: summary.csv, the plots, report.md and report.html,
the study's answers, and `orchestrate compare`. No SSH: a run folder is enough."""
