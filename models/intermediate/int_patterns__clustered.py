"""Every pattern in exactly one paraphrase group and one theme (engram/numeric/clustering.py).

Two cuts of the same average-linkage clustering of the description embeddings:
paraphrase groups at var('cluster_merge_threshold') (0.5: one approach in other words, the
older "clusters") and themes at var('theme_threshold') (one kind of problem). Both cuts
were chosen by measurement (python -m bench.themes; README "Themes and paraphrase
groups"). Identical descriptions are clustered once (by description_hash). Group and theme
ids are hashes of the sorted member pattern ids, so a rebuild that leaves a group's members
unchanged keeps its id; cluster_id (0..k-1, the paraphrase level numbered by smallest
pattern_id) is kept for older readers.
"""

from engram.numeric.clustering import two_level_table


def model(dbt, session):
    dbt.config(materialized="table")
    patterns = (
        dbt.ref("stg_patterns")
        .project("pattern_id, description, description_hash, embedding")
        .order("pattern_id")
        # streamed in batches: a whole-result fetch is held in DuckDB's buffer pool, where
        # 1M embeddings (1.5 GB) overran profiles.yml's memory_limit
        .to_arrow_reader(100_000)
        .read_all()
    )
    return two_level_table(
        patterns,
        theme_threshold=float(dbt.config.get("theme_threshold")),
        paraphrase_threshold=float(dbt.config.get("cluster_merge_threshold")),
    )
