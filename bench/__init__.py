"""The engram benchmark: generate data at a chosen size, run ingest, embedding, the dbt build,
queries and plain pandas / SQLite baselines on the same data, and report every figure.

`engram bench` (engram/bench/cli.py) is the entry point; runner.py orchestrates the stages.
"""
