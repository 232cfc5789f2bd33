"""backupctl: the encrypted, deduplicating backup agent of a medical practice.

Layers point down only (see docs/REFERENCE.md, "Layout"):
cli -> config/reports -> engine -> repo -> crypto, storage -> errors, clock.
"""

__version__ = "0.1.0"
