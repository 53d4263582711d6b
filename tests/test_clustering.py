"""Pure-function tests for the clustering, nearest-neighbour and credible-interval code
behind the semantic and prediction marts (no dbt, no warehouse)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.stats import beta as beta_dist
from sklearn.metrics import adjusted_rand_score

from engram.numeric.clustering import (
    average_linkage,
    canonical_labels,
    cluster_embeddings,
    cluster_keyed,
    cluster_texts,
    distinctive_terms,
    embedding_array,
    embedding_matrix,
    normalize,
    partition,
    stable_ids,
    summarize,
    two_level_table,
)
from engram.numeric.neighbors import key_lists, nearest_neighbors
from engram.numeric.posterior import beta_interval


def blobs(
    n_centers: int, per_center: int, noise: float, dim: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around random (nearly orthogonal) centres: within-blob cosine is about
    1 / (1 + noise^2), between blobs about 0."""
    rng = np.random.default_rng(seed)
    centers = normalize(rng.normal(size=(n_centers, dim)))
    truth = np.repeat(np.arange(n_centers), per_center)
    x = centers[truth] + rng.normal(scale=noise / np.sqrt(dim), size=(len(truth), dim))
    order = rng.permutation(len(truth))
    return normalize(x[order]), truth[order]


def test_normalize_scales_rows_and_keeps_zero_rows() -> None:
    x = normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(x[0], [0.6, 0.8])
    assert np.all(x[1] == 0)


def test_average_linkage_merges_exactly_down_to_the_threshold() -> None:
    # angles 0, 10 and 90 degrees: cos(10deg) = 0.985, the third is orthogonal to both
    angles = np.radians([0.0, 10.0, 90.0])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    ones = np.ones(3, dtype=np.int64)
    assert average_linkage(x, ones, threshold=0.98).tolist() == [0, 0, 1]
    assert average_linkage(x, ones, threshold=0.99).tolist() == [0, 1, 2]
    # mean similarity of {0, 10} to 90 is (cos 90 + cos 80) / 2 = 0.087
    assert average_linkage(x, ones, threshold=0.08).tolist() == [0, 0, 0]
    assert average_linkage(x, ones, threshold=0.09).tolist() == [0, 0, 1]


def test_weighted_linkage_equals_linkage_of_the_expanded_points() -> None:
    """A group given as (sum, count) must merge as its members would: the group
    similarity sum_a . sum_b / (n_a n_b) is the mean pairwise cosine."""
    rng = np.random.default_rng(3)
    points = normalize(rng.normal(size=(12, 5)))
    counts = rng.integers(1, 5, size=12)
    expanded = np.repeat(points, counts, axis=0)
    owner = np.repeat(np.arange(12), counts)
    for threshold in (0.1, 0.3, 0.5):
        weighted = average_linkage(points * counts[:, None], counts, threshold)
        tree = linkage(expanded.astype(np.float64), method="average", metric="cosine")
        flat = fcluster(tree, t=1 - threshold + 1e-12, criterion="distance")
        # every member of a group lands with its group, and the partitions agree
        for g in range(12):
            assert len(set(flat[owner == g])) == 1
        assert adjusted_rand_score(flat[np.searchsorted(owner, np.arange(12))], weighted) == 1


def test_partition_covers_every_row_once_in_small_leaves() -> None:
    x, _ = blobs(30, 40, noise=0.5)
    leaves = partition(x, leaf_size=100, seed=1)
    seen = np.concatenate(leaves)
    assert sorted(seen.tolist()) == list(range(len(x)))
    assert max(len(leaf) for leaf in leaves) <= 100
    # identical rows cannot be split by k-means; the fallback still bounds the leaves
    same = np.ones((250, 4), dtype=np.float32)
    leaves = partition(same, leaf_size=100)
    assert sorted(np.concatenate(leaves).tolist()) == list(range(250))
    assert max(len(leaf) for leaf in leaves) <= 100


def test_cluster_embeddings_recovers_blobs_exactly_and_locally() -> None:
    x, truth = blobs(40, 25, noise=0.5)  # within-blob cosine about 0.8, between about 0
    exact = cluster_embeddings(x, threshold=0.5)
    assert adjusted_rand_score(truth, exact) == 1.0
    # leaves far smaller than the data force the k-means split and cross-leaf merge rounds
    local = cluster_embeddings(x, threshold=0.5, leaf_size=60)
    assert adjusted_rand_score(truth, local) == 1.0


def test_local_rounds_agree_with_exact_linkage_on_overlapping_groups() -> None:
    x, _ = blobs(60, 20, noise=1.2, seed=5)  # blobs touch: the cut matters
    exact = cluster_embeddings(x, threshold=0.35)
    local = cluster_embeddings(x, threshold=0.35, leaf_size=150)
    assert adjusted_rand_score(exact, local) > 0.9


def test_zero_rows_are_singletons_and_labels_are_numbered_by_first_row() -> None:
    x, _ = blobs(3, 5, noise=0.3)
    x[[2, 7]] = 0
    labels = cluster_embeddings(x, threshold=0.5)
    assert labels[0] == 0
    _, first = np.unique(labels, return_index=True)
    assert np.all(np.diff(labels[np.sort(first)]) == 1)
    for row in (2, 7):
        assert np.sum(labels == labels[row]) == 1


def test_cluster_keyed_gives_identical_texts_one_cluster() -> None:
    x, _ = blobs(4, 6, noise=0.4)
    keys = np.array([f"k{i}" for i in range(len(x))], dtype=object)
    keys[10] = keys[3]
    x[10] = x[3]
    labels = cluster_keyed(keys, x, threshold=0.5)
    assert labels[10] == labels[3]
    assert labels.tolist() == canonical_labels(labels).tolist()


def test_summarize_centroid_similarity_and_central_member() -> None:
    x, truth = blobs(5, 8, noise=0.6)
    labels = canonical_labels(truth)
    summary = summarize(x, labels)
    assert np.allclose(np.linalg.norm(summary.centroids, axis=1), 1, atol=1e-5)
    expected = normalize(np.stack([x[labels == c].mean(axis=0) for c in range(5)]))
    assert np.allclose(summary.centroids, expected, atol=1e-5)
    assert np.allclose(summary.similarity, np.sum(x * expected[labels], axis=1), atol=1e-5)
    for c in range(5):
        members = np.flatnonzero(labels == c)
        assert summary.central[c] == members[np.argmax(summary.similarity[members])]
    assert summary.sizes.tolist() == [8] * 5


def test_cluster_texts_counts_each_distinct_text_once() -> None:
    x, _ = blobs(2, 3, noise=0.3)
    # row 0's text repeated 20 times must not move the centroid or the label
    keys = np.array(["a", "b", "c", "d", "e", "f"] + ["a"] * 20, dtype=object)
    texts = np.array(["ta", "tb", "tc", "td", "te", "tf"] + ["ta"] * 20, dtype=object)
    rows = np.vstack([x, np.repeat(x[:1], 20, axis=0)])
    clusters = cluster_texts(keys, texts, rows, threshold=0.5)
    once = cluster_texts(keys[:6], texts[:6], x, threshold=0.5)
    assert np.allclose(clusters.centroids, once.centroids)
    assert clusters.label_text[:6].tolist() == once.label_text.tolist()
    assert clusters.sizes[0] == once.sizes[0] + 20


def test_embedding_arrow_round_trip_keeps_missing_rows_as_zero() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    column = embedding_array(x, missing=np.array([False, True, False]))
    assert column.null_count == 1
    back = embedding_matrix(column)
    assert np.array_equal(back[[0, 2]], x[[0, 2]])
    assert np.all(back[1] == 0)


def test_exact_neighbors_match_brute_force() -> None:
    x, _ = blobs(10, 30, noise=0.8)
    found = nearest_neighbors(x, 5)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.sort(sims, axis=1)[:, ::-1][:, :5]
    assert np.allclose(found.similarity, expected, atol=1e-5)
    assert not np.any(found.index == np.arange(len(x))[:, None])


@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_approximate_neighbors_recall_against_exact(method: str) -> None:
    x, _ = blobs(400, 30, noise=0.8, dim=32)  # 12,000 rows: a dozen k-means leaves
    exact = nearest_neighbors(x, 10, method="exact")
    approx = nearest_neighbors(x, 10, method=method, n_probe=8)
    hits = [len(set(a) & set(e)) for a, e in zip(approx.index, exact.index, strict=True)]
    assert np.mean(hits) / 10 >= 0.95
    assert not np.any(approx.index == np.arange(len(x))[:, None])
    valid = approx.index >= 0
    assert np.allclose(
        approx.similarity[valid],
        np.sum(x[np.nonzero(valid)[0]] * x[approx.index[valid]], axis=1),
        atol=2e-3,  # the HNSW index stores f16
    )


def test_min_similarity_keeps_exactly_the_neighbours_above_it() -> None:
    x, _ = blobs(50, 20, noise=0.7)
    full = nearest_neighbors(x, 8, method="exact")
    floored = nearest_neighbors(x, 8, method="exact", min_similarity=0.7)
    above = full.similarity >= 0.7
    assert np.array_equal(floored.index[above], full.index[above])
    assert np.all(floored.index[~above] == -1)
    assert 0 < above.sum() < above.size  # the floor cut something and kept something
    ivf = nearest_neighbors(x, 8, method="ivf", min_similarity=0.7)
    assert np.all(ivf.similarity[ivf.index >= 0] >= 0.7)


def test_key_lists_put_a_texts_own_rows_first_then_its_neighbours_rows() -> None:
    """Each key's list (what pattern_similar_pairs takes a pattern's list from): its own
    rows at similarity 1 in row order, then the nearest other key's rows in row order,
    k + 1 in all; with a mask, only the masked keys' lists."""
    x, _ = blobs(3, 1, noise=0.0)  # three distinct, orthogonal-ish texts
    key_of_row = np.array([0, 1, 1, 2, 2, 2, 0])
    neighbours = nearest_neighbors(x, 2)
    lists = key_lists(key_of_row, neighbours, 3)
    by_key: dict[int, list[tuple[int, int, float, bool]]] = {}
    for owner, position, member, similarity, same in zip(
        lists.owner, lists.position, lists.member, lists.similarity, lists.same_key, strict=True
    ):
        by_key.setdefault(int(owner), []).append(
            (int(position), int(member), float(similarity), bool(same))
        )
    assert all(len(items) == 4 for items in by_key.values())  # k + 1
    assert [p for p, _, _, _ in by_key[2]] == [0, 1, 2, 3]
    # key 2 lists its own rows 3, 4, 5 at similarity 1, then the nearest key's first row
    assert [(m, s, same) for _, m, s, same in by_key[2][:3]] == [
        (3, 1.0, True),
        (4, 1.0, True),
        (5, 1.0, True),
    ]
    nearest_key = int(neighbours.index[2, 0])
    assert by_key[2][3][1] == int(np.flatnonzero(key_of_row == nearest_key)[0])
    assert not by_key[2][3][3]
    assert [m for _, m, _, _ in by_key[0][:2]] == [0, 6]
    masked = key_lists(key_of_row, neighbours, 3, keys=np.array([False, True, False]))
    assert set(masked.owner.tolist()) == {1}
    assert masked.member.tolist() == [m for _, m, _, _ in by_key[1]]


def test_beta_interval_matches_scipy_quantiles() -> None:
    alpha = np.array([1.0, 5.4375, 30.0, 0.5])
    beta = np.array([1.0, 2.5625, 70.0, 0.5])
    low, high = beta_interval(alpha, beta, 0.9)
    assert np.allclose(low, beta_dist.ppf(0.05, alpha, beta))
    assert np.allclose(high, beta_dist.ppf(0.95, alpha, beta))
    mean = alpha / (alpha + beta)
    assert np.all((low <= mean) & (mean <= high))
    # ten times the evidence at the same mean: a narrower interval
    low10, high10 = beta_interval(alpha * 10, beta * 10, 0.9)
    assert np.all(high10 - low10 < high - low)
    with pytest.raises(ValueError):
        beta_interval(alpha, beta, 1.0)


def test_beta_interval_computes_each_distinct_pair_once_with_the_same_bits() -> None:
    """Repeated (alpha, beta) pairs are computed once (most of pattern_predictions' rows
    repeat one); the answer is bit for bit scipy's per row, NaN and infinite shapes too."""
    from scipy.special import betaincinv

    rng = np.random.default_rng(3)
    alpha = np.round(rng.uniform(0, 20, 5000), 1)
    beta = np.round(rng.uniform(0, 20, 5000), 1)
    alpha[::97], beta[::89] = np.nan, np.inf
    low, high = beta_interval(alpha, beta, 0.8)
    a, b = np.maximum(alpha, 1e-9), np.maximum(beta, 1e-9)
    tail = (1 - 0.8) / 2
    assert np.array_equal(low, betaincinv(a, b, tail), equal_nan=True)
    assert np.array_equal(high, betaincinv(a, b, 1 - tail), equal_nan=True)


def test_stable_ids_depend_on_membership_only() -> None:
    keys = np.array(["p3", "p1", "p2", "p4"])
    first = stable_ids(np.array([0, 1, 0, 2]), keys, "pg_")
    # same memberships, numbered and ordered differently: same ids
    reordered = stable_ids(np.array([1, 0, 0]), np.array(["p4", "p3", "p2"]), "pg_")
    assert first[0] == reordered[0]  # {p2, p3}
    assert first[2] == reordered[1]  # {p4}
    assert all(i.startswith("pg_") and len(i) == 15 for i in first)
    assert len(set(first)) == 3
    # one member more changes the id
    grown = stable_ids(np.array([0, 0, 0]), np.array(["p3", "p2", "p5"]), "pg_")
    assert grown[0] != first[0]


def test_distinctive_terms_prefer_words_frequent_in_the_cluster_and_rare_elsewhere() -> None:
    texts = np.array(
        [
            "retry the flaky test with a timeout",
            "rerun the flaky test after a timeout",
            "fix the flaky test",
            "update the docs index",
            "update the docs build",
        ],
        dtype=object,
    )
    terms = distinctive_terms(texts, np.array([0, 0, 0, 1, 1]), top=2)
    # 'test' and 'flaky' appear in every member of cluster 0 and never in cluster 1;
    # 'the' is a stopword, 'timeout' appears in two members only
    assert sorted(terms[0]) == ["flaky", "test"]
    assert sorted(terms[1]) == ["docs", "update"]


def test_two_levels_label_with_the_medoid_and_nest_on_clear_structure() -> None:
    import pyarrow as pa

    # two themes (far apart), each with two paraphrase groups (close pairs)
    rng = np.random.default_rng(3)
    themes = normalize(rng.normal(size=(2, 32)))
    offsets = normalize(rng.normal(size=(4, 32)))
    group_centres = normalize(themes[[0, 0, 1, 1]] * 2.0 + offsets * 0.9)
    members = np.repeat(np.arange(4), 3)
    x = normalize(group_centres[members] + rng.normal(scale=0.05, size=(12, 32)))
    texts = [f"approach {g} variant {i}" for i, g in enumerate(members)]
    table = pa.table(
        {
            "pattern_id": [f"p{i:02d}" for i in range(12)],
            "description_hash": [f"h{i}" for i in range(12)],
            "description": texts,
            "embedding": embedding_array(x),
        }
    )
    out = two_level_table(table, theme_threshold=0.5, paraphrase_threshold=0.9).to_pandas()
    assert out["paraphrase_group_id"].nunique() == 4
    assert out["theme_id"].nunique() == 2
    # each group lies inside one theme
    assert (out.groupby("paraphrase_group_id")["theme_id"].nunique() == 1).all()
    # the label starts with the description of the member nearest the centroid, and that
    # member is never farther from the centroid than the median member
    for _, theme in out.groupby("theme_id"):
        medoid = theme.loc[theme["similarity_to_theme_centroid"].idxmax()]
        assert (theme["theme_medoid_pattern_id"] == medoid["pattern_id"]).all()
        assert theme["theme_label"].iloc[0].startswith(texts[int(medoid["pattern_id"][1:])])
        assert (
            medoid["similarity_to_theme_centroid"] >= theme["similarity_to_theme_centroid"].median()
        )
    # cluster_* are the paraphrase level under their older names
    assert out["cluster_id"].nunique() == 4
    assert (out.groupby("cluster_id")["paraphrase_group_id"].nunique() == 1).all()


def test_two_level_table_on_one_vector_per_description_equals_per_row_vectors() -> None:
    """int_patterns__clustered hands the clustering one vector per distinct description
    (KeyedRows) instead of one per pattern; the answer must be the per-row answer."""
    import pyarrow as pa

    from engram.numeric.clustering import KeyedRows, keyed_rows

    x_keys, _truth = blobs(6, 8, 0.3, dim=32, seed=5)
    rng = np.random.default_rng(9)
    key_of_row = rng.integers(0, len(x_keys), size=400)  # 400 patterns, 48 descriptions
    hashes = [f"h{k:03d}" for k in key_of_row]
    table = pa.table(
        {
            "pattern_id": [f"p{i:04d}" for i in range(400)],
            "description_hash": hashes,
            "description": [f"text {k}" for k in key_of_row],
        }
    )
    per_row = table.append_column("embedding", embedding_array(x_keys[key_of_row]))
    used = np.unique(key_of_row)
    vectors = pa.table(
        {
            "description_hash": [f"h{k:03d}" for k in used],
            "embedding": embedding_array(x_keys[used]),
        }
    )
    x = keyed_rows(
        table.column("description_hash"), vectors.to_batches(max_chunksize=7), "description_hash"
    )
    assert isinstance(x, KeyedRows) and len(x) == 400 and x.vectors.shape == (len(used), 32)
    expected = two_level_table(per_row, theme_threshold=0.4, paraphrase_threshold=0.7)
    got = two_level_table(table, theme_threshold=0.4, paraphrase_threshold=0.7, x=x)
    assert got.equals(expected)
    # vectors that do not line up with the rows' keys are refused, not silently misread
    with pytest.raises(ValueError, match="disagree"):
        keyed_rows(
            table.column("description_hash"), vectors.slice(1).to_batches(), "description_hash"
        )
