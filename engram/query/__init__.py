"""Questions to the warehouse, answered from the read-only serving copy.

One module per question (similar, predict, trends, files, clusters, sql), the headline
answers once (answers), the serving copy and its vector index (serving, index), the
embed() SQL function (udf), and `Memory`, the Python API that puts them together.
Import `Memory` from `engram.query.memory`; this package stays light to import.
"""
