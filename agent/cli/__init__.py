"""The command line (the only user of click and rich, and the only place where
errors become exit codes: see `agent.errors` for the table)."""
