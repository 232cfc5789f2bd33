"""Engines: backup, restore, check. They talk to `agent.repo.Repository` only."""
