"""engram: a memory for coding agents that learns which approaches work."""

from ingest import __version__

__all__ = ["__version__"]
