"""The engram benchmark: generate data at a chosen size, run ingest, embedding, the dbt build,
queries and plain pandas / SQLite / Polars baselines on the same data, and report every figure.

`python -m bench` (bench/cli.py; `make bench`) is the entry point; runner.py orchestrates
the stages; query_speed.py measures the query layer at 1M patterns. The product never
imports this package.
"""
