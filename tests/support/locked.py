"""Running an engine as a command does: under the lock the command declares.

The engines take no lock of their own; they assert the one they need is held
(agent.repo.lock.require_lock). A test that runs an engine directly takes it here, as
agent/cli/opening.py does for the command."""

from __future__ import annotations

from typing import Any

from agent.repo.lock import RepositoryLock



def run_locked(engine: Any, *, exclusive: bool = False, operation: str = "test") -> Any:
    """engine.run() with a lock on engine.repo held meanwhile (shared, or exclusive)."""
    with RepositoryLock(engine.repo, operation, exclusive=exclusive):
        return engine.run()
