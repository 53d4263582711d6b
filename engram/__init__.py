"""engram: a memory for coding agents that learns which approaches work."""

__version__ = "0.1.0"
