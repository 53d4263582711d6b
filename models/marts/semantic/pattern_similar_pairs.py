"""Each pattern's nearest other patterns with cosine >= var('similarity_threshold').

kNN runs once per distinct description (engram/neighbors.py: exact blocked matrix products
up to 20k distinct texts, an inverted-file search over k-means leaves above); patterns
sharing a description are each other's first neighbours at similarity 1.0, then come the
patterns of the neighbouring texts.
At most var('similar_pairs_k') rows per pattern; patterns without an embedding get none.
"""

import numpy as np
import pyarrow as pa

from engram.numeric.clustering import embedding_matrix
from engram.numeric.neighbors import expand_duplicates, nearest_neighbors


def model(dbt, session):
    dbt.config(materialized="table")
    k = int(dbt.config.get("similar_pairs_k"))
    threshold = float(dbt.config.get("similarity_threshold"))
    embedded = dbt.ref("stg_patterns").filter("embedding is not null")
    # ids and keys sorted, then one vector per distinct description in key order (what
    # np.unique returns): fetching every pattern's copy sorted by id held 1M embeddings
    # (1.5 GB) in DuckDB's buffer pool, past profiles.yml's memory_limit
    patterns = embedded.project("pattern_id, description_hash").order("pattern_id").to_arrow_table()
    vectors = (
        embedded.aggregate(
            "description_hash, any_value(embedding) as embedding", "description_hash"
        )
        .order("description_hash")
        .to_arrow_table()
    )
    ids = np.asarray(patterns.column("pattern_id").to_pylist(), dtype=object)
    keys = np.asarray(patterns.column("description_hash").to_pylist(), dtype=str)
    unique_keys, key_of_row = np.unique(keys, return_inverse=True)
    if not np.array_equal(
        unique_keys, np.asarray(vectors.column("description_hash").to_pylist(), dtype=str)
    ):
        raise ValueError("pattern_similar_pairs: description hashes and vectors disagree")
    neighbours = nearest_neighbors(
        embedding_matrix(vectors.column("embedding")), k, min_similarity=threshold
    )
    row, other, similarity, rank = expand_duplicates(key_of_row.reshape(-1), neighbours, k)
    keep = similarity >= threshold  # rows are best first, so ranks stay 1..j
    return pa.table(
        {
            "pattern_id": pa.array(ids[row[keep]], type=pa.string()),
            "similar_pattern_id": pa.array(ids[other[keep]], type=pa.string()),
            "similarity": pa.array(np.minimum(similarity[keep], 1.0), type=pa.float64()),
            "rank": pa.array(rank[keep], type=pa.int64()),
        }
    )
