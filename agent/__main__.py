"""`python -m agent` is `backupctl`."""

from agent.cli.main import main

# Guarded: the backup's worker processes (agent.engine.small_files) are spawned, and a
# spawned process imports the parent's main module under another name; it must not
# run the command again.
if __name__ == "__main__":
    main()
