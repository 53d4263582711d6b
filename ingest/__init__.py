"""The bottom layer of engram: the warehouse file and its raw schema, the embedding model
and its text-hash cache, and the input contract, reader and loader.

It imports nothing from `engram` or `orchestration`; everything else builds on it.
"""

from importlib import metadata

try:
    __version__ = metadata.version("engram")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
