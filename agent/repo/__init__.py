"""The repository format: object names, packs, index, trees, snapshots.

Engines use `Repository` (repository.py), never a Storage directly. The byte-level
specification of everything here is docs/FORMAT.md.
"""
