"""The background daemon (issue: daemon): APScheduler wiring, job bodies, systemd notify.

APScheduler is used only in this package. Jobs run the agent's own commands as child
processes (`python -m agent backup --repo NAME --json`, then prune and a rolling
`check --read-data-subset`), so a job has the exact behaviour, exit codes and SIGTERM
handling of the command line, and its memory goes back to the system when it ends.
"""
