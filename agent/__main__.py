"""`python -m agent` is `backupctl`."""

from agent.cli.main import main

main()
