"""Incremental builds give the answers of a full rebuild, and keep cluster ids.

Generated data (planted paraphrase families) is split: 95% is ingested and built, then the
rest (5% of the events and 5% of the patterns, most of them paraphrases of patterns
already there) is appended and built incrementally. A copy of that warehouse is then
rebuilt with --full-refresh, and every mart must be equal, with cluster / group / theme ids
compared as partitions (each id replaced by its cluster's smallest member), the one
documented difference (README "Incremental builds").
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from engram.build import build, run_dbt
from engram.generate import generate
from engram.numeric.clustering import normalize, two_level_table
from engram.numeric.incremental import (
    BOOKKEEPING,
    PLACED_BY_CLUSTERING,
    PLACED_BY_JOIN,
    DistinctTexts,
    carry_ids,
    drift_exceeded,
    extend_labels,
    founding_ids,
    key_digests,
    stamp_column,
    two_level_refresh,
    two_level_refresh_texts,
    write_stamp,
)
from engram.numeric.neighbors import leaf_index, nearest_neighbors, neighbors_of
from engram.numeric.posterior import interval_code
from engram.project import dbt_vars
from ingest.embedder import Embedder
from ingest.loader import ingest_paths

HOLD_OUT_EVERY = 20  # every 20th pattern and every 20th event arrive in the second batch
CLUSTER_TABLES = ("int_patterns__clustered", "int_contexts__clustered")
PATTERN_ID_COLUMNS = ("cluster_id", "theme_id", "paraphrase_group_id")
# tables whose rows depend on which group / theme a pattern is in
PATTERN_PARTITIONED = (
    "int_patterns__clustered",
    "pattern_clusters",
    "dim_patterns",
    "pattern_themes",
    "pattern_alerts",
)
ALLOWED_EMPTY = ("pattern_alerts", "recommendation_log", "recommendation_outcomes")


# --------------------------------------------------------------------------- unit level


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_new_text_joins_the_cluster_within_the_cut_and_the_rest_found_new_ones() -> None:
    x = np.stack(
        [
            unit([1, 0, 0]),
            unit([1, 0.1, 0]),  # cluster 0
            unit([0, 1, 0]),  # cluster 1
            unit([1, 0.05, 0.02]),  # new: mean cosine to cluster 0 ~ 1 -> joins 0
            unit([0, 0, 1]),  # new, far from both: founds
            unit([0, 0.05, 1]),  # new, next to the previous one: same new cluster
        ]
    )
    old = np.array([0, 0, 1, -1, -1, -1])
    ext = extend_labels(x, old, threshold=0.5)
    assert ext.labels.tolist() == [0, 0, 1, 0, 2, 2]
    assert (ext.joined, ext.founded) == (1, 1)


def test_joining_uses_the_mean_over_the_members_not_the_nearest_member() -> None:
    # the new text is identical to one member of cluster 0, but its mean cosine to the
    # cluster (0.5 * (1 + 0)) is below a 0.6 cut: average linkage would not merge it
    x = np.stack([unit([1, 0]), unit([0, 1]), unit([1, 0])])
    ext = extend_labels(x, np.array([0, 0, -1]), threshold=0.6)
    assert ext.labels[2] != 0
    assert extend_labels(x, np.array([0, 0, -1]), threshold=0.5).labels[2] == 0


def test_ids_are_founding_member_hashes_and_carry_over_one_to_one() -> None:
    ids = founding_ids(np.array([0, 1, 0]), np.array(["b", "c", "a"]), "pg_")
    assert ids[0] == founding_ids(np.array([0, 0]), np.array(["a", "b"]), "pg_")[0]
    assert ids[0] != ids[1] and ids[0].startswith("pg_")
    # new cluster 0 holds most of old A; new cluster 1 the rest of A and all of B
    carried = carry_ids(
        np.array([0, 0, 0, 1, 1, 1, 2]), np.array(["A", "A", "A", "A", "B", "B", ""])
    )
    assert carried == {0: "A", 1: "B"}
    assert drift_exceeded(21, 100, 0.2) and not drift_exceeded(20, 100, 0.2)


def test_the_per_text_refresh_equals_the_per_row_one() -> None:
    """two_level_refresh_texts (what int_patterns__clustered runs on a refresh) against
    two_level_refresh over every row (the reference): new patterns with known texts, new
    texts that join and that found clusters, a pattern whose text changed, repeated texts;
    the distinct-text input built here with pandas, as the model builds it in SQL."""
    import pyarrow as pa

    rng = np.random.default_rng(3)
    n_texts, n_rows = 300, 3000
    centres = rng.normal(size=(12, 24)).astype(np.float32)
    vectors = centres[rng.integers(0, 12, n_texts)] + 0.7 * rng.normal(size=(n_texts, 24))
    # the last 10 new texts: 5 pairs around fresh directions, far from every old group
    vectors[-10:] = np.repeat(rng.normal(size=(5, 24)) * 3, 2, axis=0) + 0.1 * rng.normal(
        size=(10, 24)
    )
    vectors = vectors.astype(np.float32)
    words = np.array(
        ["fix", "race", "async", "timeout", "flask", "docs", "config", "revert", "cache", "lock"]
    )
    texts = np.array([" ".join(rng.choice(words, 4)) + f" w{i}" for i in range(n_texts)])
    hashes = np.array([f"h{i:05d}" for i in range(n_texts)])
    ids = np.array([f"p{i:06d}" for i in range(n_rows)])
    text_of = rng.integers(0, n_texts - 20, n_rows)  # the last 20 texts are new ones
    text_of[rng.choice(n_rows, 60, replace=False)] = rng.integers(n_texts - 20, n_texts, 60)

    def rows(which: np.ndarray, text: np.ndarray) -> pa.Table:
        return pa.table(
            {
                "pattern_id": ids[which].tolist(),
                "description": texts[text[which]].tolist(),
                "description_hash": hashes[text[which]].tolist(),
                "embedding": pa.array(
                    vectors[text[which]].tolist(), type=pa.list_(pa.float32(), 24)
                ),
            }
        )

    before = np.flatnonzero((rng.random(n_rows) > 0.05) & (text_of < n_texts - 20))
    previous = two_level_table(rows(before, text_of), theme_threshold=0.3, paraphrase_threshold=0.5)
    previous = previous.append_column("placed_by", pa.array([PLACED_BY_CLUSTERING] * len(before)))
    changed_text = text_of.copy()
    changed_text[before[0]] = (text_of[before[0]] + 1) % (n_texts - 20)  # a text edit
    now = rows(np.arange(n_rows), changed_text)
    want, mode = two_level_refresh(
        now, previous, theme_threshold=0.3, paraphrase_threshold=0.5, drift_share=0.5
    )
    assert mode == "incremental"

    frame = now.select(["pattern_id", "description_hash", "description"]).to_pandas()
    old = frame.merge(previous.to_pandas(), on=["pattern_id", "description_hash"])
    per_text = (
        frame.groupby("description_hash")
        .agg(
            first_key=("pattern_id", "min"),
            n_rows=("pattern_id", "size"),
            description=("description", "first"),
        )
        .join(
            old.groupby("description_hash")[
                ["theme_id", "paraphrase_group_id", "cluster_id"]
            ].first()
        )
        .sort_values("first_key")
    )
    distinct = DistinctTexts(
        keys=per_text.index.to_numpy(dtype=object),
        texts=per_text["description"].to_numpy(dtype=object),
        first_key=per_text["first_key"].to_numpy(dtype=object),
        n_rows=per_text["n_rows"].to_numpy(),
        old_theme=per_text["theme_id"].fillna("").to_numpy(dtype=object),
        old_group=per_text["paraphrase_group_id"].fillna("").to_numpy(dtype=object),
        old_number=per_text["cluster_id"].fillna(-1).astype(np.int64).to_numpy(),
    )
    index_of = {h: i for i, h in enumerate(hashes.tolist())}
    x = vectors[[index_of[h] for h in distinct.keys.tolist()]]

    def members(text_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        position = {
            h: i
            for i, h in zip(
                text_indices.tolist(), distinct.keys[text_indices].tolist(), strict=True
            )
        }
        hit = frame["description_hash"].isin(position)
        return (
            frame.loc[hit, "description_hash"].map(position).to_numpy(),
            frame.loc[hit, "pattern_id"].to_numpy(),
        )

    got = two_level_refresh_texts(
        distinct, x, theme_threshold=0.3, paraphrase_threshold=0.5, members=members
    ).to_pandas()
    joined = frame[["pattern_id", "description_hash"]].merge(got, on="description_hash")
    expected = want.to_pandas().drop(columns=["placed_by"])
    joined = joined[expected.columns].sort_values("pattern_id").reset_index(drop=True)
    expected = expected.sort_values("pattern_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, expected, check_dtype=False)
    # the case covers what it says: texts joined, texts founded, groups grew
    new_texts = distinct.old_group == ""
    assert new_texts.sum() >= 20
    founded = ~got["paraphrase_group_id"].isin(previous.column("paraphrase_group_id").to_pylist())
    assert 0 < int((founded & new_texts).sum()) < int(new_texts.sum())


def test_neighbours_of_some_rows_match_the_full_search_and_find_who_may_list_them() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(30, 48)).astype(np.float32)
    x = np.repeat(centres, 40, axis=0) + 0.6 * rng.normal(size=(1200, 48)).astype(np.float32)
    rows = np.arange(5, 1200, 97)
    full = nearest_neighbors(x, 6, min_similarity=0.3, method="exact")
    some, near = neighbors_of(x, rows, 6, min_similarity=0.3)
    assert np.array_equal(some.index, full.index[rows])
    assert np.allclose(some.similarity, full.similarity[rows])
    # near = every row with cosine >= 0.3 to one of `rows` (a recomputation)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit[rows] @ unit.T
    sims[np.arange(len(rows)), rows] = -1
    assert np.array_equal(near, (sims >= 0.3).any(axis=0))
    assert near.sum() > len(rows)
    # a full list's own k-th similarity raises its bar: only rows a new one can enter
    floor = full.similarity[:, -1].astype(np.float64)
    _, near_full = neighbors_of(x, rows, 6, min_similarity=0.3, near_floor=floor)
    assert np.array_equal(near_full, (sims >= np.maximum(0.3, floor)[None, :]).any(axis=0))
    assert 0 < near_full.sum() < near.sum()
    # above the exact limit: the inverted-file search, approximate; most lists still match
    ivf, _ = neighbors_of(x, rows, 6, min_similarity=0.3, exact_max_rows=100)
    hits = [
        len(set(a[a >= 0]) & set(b[b >= 0]))
        for a, b in zip(ivf.index, full.index[rows], strict=True)
    ]
    assert sum(hits) >= 0.8 * int((full.index[rows] >= 0).sum())
    # the inverted file built once by the caller (a refresh searches twice) gives the same
    leaves = leaf_index(normalize(x))
    ivf_given, near_given = neighbors_of(
        x, rows, 6, min_similarity=0.3, exact_max_rows=100, leaves=leaves
    )
    ivf_again, near_again = neighbors_of(x, rows, 6, min_similarity=0.3, exact_max_rows=100)
    assert np.array_equal(ivf_given.index, ivf_again.index)
    assert np.array_equal(near_given, near_again)
    with pytest.raises(ValueError, match="leaves are for"):
        neighbors_of(x[:-1], rows, 6, min_similarity=0.3, exact_max_rows=100, leaves=leaves)


# --------------------------------------------------------------------------- warehouses


def split(source: Path, first: Path, second: Path) -> set[str]:
    """Write the first and second batch; returns the held-out pattern ids."""
    patterns = [
        orjson.loads(line) for line in (source / "patterns.jsonl").read_bytes().splitlines()
    ]
    held = {p["pattern_id"] for i, p in enumerate(patterns) if i % HOLD_OUT_EVERY == 7}
    events = [orjson.loads(line) for line in (source / "events.jsonl").read_bytes().splitlines()]
    for folder in (first, second):
        folder.mkdir()

    def write(path: Path, rows: list[dict]) -> None:
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))

    write(first / "patterns.jsonl", [p for p in patterns if p["pattern_id"] not in held])
    write(second / "patterns.jsonl", [p for p in patterns if p["pattern_id"] in held])
    late = [e["pattern_id"] in held or i % HOLD_OUT_EVERY == 3 for i, e in enumerate(events)]
    write(first / "events.jsonl", [e for e, x in zip(events, late, strict=True) if not x])
    write(second / "events.jsonl", [e for e, x in zip(events, late, strict=True) if x])
    return held


def table(db: Path, name: str) -> pd.DataFrame:
    schema = "intermediate" if name.startswith("int_") else "marts"
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"select * from {schema}.{name}").df()
    finally:
        con.close()


def mart_names(db: Path) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            # views too: pattern_clusters and dim_patterns are views of stored tables
            "select table_name from information_schema.tables where table_schema = 'marts' "
            "and table_type in ('BASE TABLE', 'VIEW') order by 1"
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> dict[str, object]:
    """One warehouse built on the first batch, then the second appended and built
    incrementally; a copy of it rebuilt with --full-refresh."""
    root = tmp_path_factory.mktemp("incremental")
    generate(root / "all", 400, 8000, seed=11)
    held = split(root / "all", root / "first", root / "second")
    db = root / "inc" / "engram.duckdb"
    db.parent.mkdir()
    ingest_paths([root / "first"], db, embedder=embedder)
    build(db, capture=True, publish=False)
    before = {name: table(db, name) for name in CLUSTER_TABLES}
    shutil.copy(db, root / "before.duckdb")
    ingest_paths([root / "second"], db, embedder=embedder)
    build(db, capture=True, publish=False)
    full = root / "full" / "engram.duckdb"
    full.parent.mkdir()
    shutil.copy(db, full)
    build(full, capture=True, publish=False, full_refresh=True)
    return {"root": root, "held": held, "before": before, "inc": db, "full": full}


def canonical(db: Path) -> tuple[dict[str, dict[object, str]], dict[object, str]]:
    """Every cluster named by its membership (its sorted members, hashed), so two
    warehouses agree on a name exactly when they agree on the members: per pattern-level
    id column (id -> name) and per context cluster number (-1, no task text, stays)."""
    clustered = table(db, "int_patterns__clustered")
    names = {
        column: {
            cid: "m_" + hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:16]
            for cid, members in clustered.groupby(column)["pattern_id"]
        }
        for column in PATTERN_ID_COLUMNS
    }
    contexts = table(db, "int_contexts__clustered")
    ctx = {
        cid: "m_" + hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:16]
        for cid, members in contexts.groupby("context_cluster_id")["context_hash"]
    }
    ctx[-1] = "(no task text)"
    return names, ctx


def flat(value: object) -> object:
    """A list or vector as a tuple (numbers rounded: vectors differ in float noise)."""
    if not isinstance(value, (np.ndarray, list)):
        return value
    array = np.asarray(value)
    if array.dtype.kind in "fiu":
        return tuple(np.round(array.astype(float), 5).tolist())
    return tuple(array.tolist())


def comparable(frame: pd.DataFrame, names: dict, ctx: dict) -> pd.DataFrame:
    """The frame with ids replaced by membership names and the helper columns dropped
    (placed_by, and written_at: which write wrote a similar-pairs list or a prediction),
    rows in a fixed order (floats rounded for the sort only)."""
    frame = frame.drop(columns=[c for c in ("placed_by", *BOOKKEEPING) if c in frame]).copy()
    for column, mapping in names.items():
        if column in frame:
            frame[column] = frame[column].map(mapping)
    if "context_cluster_id" in frame:
        frame["context_cluster_id"] = frame["context_cluster_id"].map(ctx)
    for column in frame.columns:  # vectors and lists compare as tuples
        if frame[column].dtype == object:
            frame[column] = frame[column].map(flat)
    keys = frame.map(lambda v: round(v, 9) if isinstance(v, float) else str(v))
    order = keys.sort_values(list(keys.columns)).index
    return frame.loc[order].reset_index(drop=True)


@pytest.mark.slow
def test_incremental_build_keeps_the_ids_of_existing_groups_and_themes(builds: dict) -> None:
    before, inc = builds["before"], builds["inc"]
    now = table(inc, "int_patterns__clustered").set_index("pattern_id")
    old = before["int_patterns__clustered"].set_index("pattern_id")
    assert len(now) == len(old) + len(builds["held"])
    for column in PATTERN_ID_COLUMNS:
        assert (now.loc[old.index, column] == old[column]).all(), column
    # the held-out patterns were placed incrementally; some joined existing groups
    new = now.loc[sorted(builds["held"])]
    assert (new["placed_by"] == PLACED_BY_JOIN).all()
    assert (now.loc[old.index, "placed_by"] == PLACED_BY_CLUSTERING).all()
    # and their rows were not written again: the refresh appended the new patterns' rows
    # alone (a row deleted and inserted again by delete+insert gets a new rowid)
    rowids = "select pattern_id, rowid as row_number from intermediate.int_patterns__clustered"
    with duckdb.connect(str(builds["root"] / "before.duckdb"), read_only=True) as con:
        rows_before = con.execute(rowids).df().set_index("pattern_id")["row_number"]
    with duckdb.connect(str(inc), read_only=True) as con:
        rows_now = con.execute(rowids).df().set_index("pattern_id")["row_number"]
    assert (rows_now.loc[rows_before.index] == rows_before).all()
    assert rows_now.drop(rows_before.index).min() > rows_before.max()
    joined = new["paraphrase_group_id"].isin(old["paraphrase_group_id"])
    assert joined.sum() >= len(new) // 2, "paraphrases of existing patterns should join"
    assert new["theme_id"].isin(old["theme_id"]).sum() >= joined.sum()
    ctx_now = table(inc, "int_contexts__clustered").set_index("context_hash")
    ctx_old = before["int_contexts__clustered"].set_index("context_hash")
    kept = ctx_now.loc[ctx_old.index, "context_cluster_id"]
    assert (kept == ctx_old["context_cluster_id"]).all()


def test_a_write_stamp_is_never_behind_the_newest_in_the_table() -> None:
    """write_stamp is the wall clock, or just past the newest stamp already in the table
    when the clock is behind it (a clock set back, a warehouse from another machine):
    stamps only grow, so the newest stamp is always the last write's."""
    from datetime import UTC, datetime, timedelta

    con = duckdb.connect()
    before = datetime.now(UTC).replace(tzinfo=None)
    assert before <= write_stamp(con, None) <= datetime.now(UTC).replace(tzinfo=None)
    ahead = before + timedelta(days=365)
    con.execute("create table t as select ?::timestamp as written_at", [ahead])
    assert write_stamp(con, "t") == ahead + timedelta(microseconds=1)
    con.execute("update t set written_at = ?", [before - timedelta(days=1)])
    assert write_stamp(con, "t") > before
    column = stamp_column(3, ahead)
    assert str(column.type) == "timestamp[us]" and column.to_pylist() == [ahead] * 3


def test_key_digests_tell_a_keys_rows_apart_in_any_order_and_only_those() -> None:
    """key_digests, how the stamped models find the patterns whose rows they must
    rewrite: the same rows in another order give the same (n, d); a changed value, a row
    more and a row less each change their key's digest and no other key's."""
    con = duckdb.connect()
    con.execute(
        "create table a as select 'p' || (i % 10) as pattern_id, i as rank, i * 0.5 as s "
        "from range(100) t(i)"
    )
    con.execute("create table b as select * from a order by s desc")
    row = "hash(rank, s)"

    def digests(relation: str, where: str = "") -> dict[str, tuple[int, int]]:
        sql = key_digests(relation, "pattern_id", row, where=where)
        return {key: (n, d) for key, n, d in con.execute(sql).fetchall()}

    assert digests("a") == digests("b") and len(digests("a")) == 10
    con.execute("update b set s = s + 1 where pattern_id = 'p1' and rank = 11")
    con.execute("insert into b values ('p2', 1000, 0.0)")
    con.execute("delete from b where pattern_id = 'p3' and rank = 13")
    before, after = digests("a"), digests("b")
    assert {k for k in before if before[k] != after[k]} == {"p1", "p2", "p3"}
    assert after["p2"][0] == before["p2"][0] + 1 and after["p3"][0] == before["p3"][0] - 1
    assert set(digests("a", where="pattern_id in ('p1', 'p4')")) == {"p1", "p4"}


def rows_per_key(frame: pd.DataFrame, key: str = "pattern_id") -> dict[str, set[tuple]]:
    """Each key's rows without the bookkeeping columns (the stamp, pattern_predictions'
    input digest), as a set (floats rounded to 1e-12)."""
    values = frame.drop(columns=[column for column in BOOKKEEPING if column in frame])
    keyed = values.map(lambda v: round(v, 12) if isinstance(v, float) else v)
    groups = keyed.groupby(key)
    return {pid: set(map(tuple, group.to_numpy().tolist())) for pid, group in groups}


def check_refresh_stamps(
    before: pd.DataFrame, after: pd.DataFrame, key: str = "pattern_id"
) -> set[str]:
    """The stamps of a table a refresh rewrote per key (written_at): the first build
    wrote every row with one stamp; after the refresh each key's rows share one, the
    first build's or a newer one, and the keys with the newer one are exactly those
    whose rows differ from the first build's (new ones included). Returns them."""
    assert before["written_at"].notna().all() and before["written_at"].nunique() == 1
    assert after["written_at"].notna().all()
    (first,) = before["written_at"].unique()
    stamps = after.groupby(key)["written_at"].nunique()
    assert (stamps == 1).all(), "a key's rows are written whole, with one stamp"
    assert set(after["written_at"].unique()) <= {first, after["written_at"].max()}
    assert after["written_at"].max() > first
    rewritten = set(after.loc[after["written_at"] > first, key])
    old_rows, new_rows = rows_per_key(before, key), rows_per_key(after, key)
    differ = {p for p in set(old_rows) | set(new_rows) if old_rows.get(p) != new_rows.get(p)}
    assert rewritten == differ & set(new_rows)
    assert 0 < len(rewritten) < len(new_rows)
    return rewritten


@pytest.mark.slow
def test_an_incremental_build_stamps_the_similar_pairs_lists_it_wrote(builds: dict) -> None:
    """The refresh writes only the descriptions' lists that came out different, with a
    stamp newer than the first build's (so its data tests check those alone:
    macros/changed_rows.sql, and the serving copy syncs those alone); a list is written
    whole, with one stamp. The full refresh writes every list with one stamp."""
    lists = "int_pattern_texts__neighbors"
    before = table(builds["root"] / "before.duckdb", lists)
    inc = table(builds["inc"], lists)
    rewritten = check_refresh_stamps(before, inc, key="description_hash")
    # a text first listed by the refresh, and every list naming a new pattern, is new
    held = set(builds["held"])
    new_texts = set(inc["description_hash"]) - set(before["description_hash"])
    naming = set(inc.loc[inc["similar_pattern_id"].isin(held), "description_hash"])
    assert naming and new_texts | naming <= rewritten
    # the refresh saw the new patterns: the next one starts after them
    assert inc["patterns_through"].max() > before["patterns_through"].max()
    full = table(builds["full"], lists)
    assert full["written_at"].notna().all() and full["written_at"].nunique() == 1


@pytest.mark.slow
def test_a_refresh_rewrites_the_predictions_of_the_patterns_whose_rows_changed(
    builds: dict,
) -> None:
    """pattern_predictions after a refresh: the patterns it rewrote (a newer stamp) are
    exactly those whose rows differ from the first build's, every pattern with a new event
    among them, and the rest of the table untouched. That is a small part of it only
    because the global mean, the prior every row shrinks toward, stayed on the same step
    of its grid (macros/shrinkage.sql, prior_mean), checked here from the events."""
    from engram.build import changed_since

    watermark = pd.Timestamp(changed_since(builds["root"] / "before.duckdb"))
    before = table(builds["root"] / "before.duckdb", "pattern_predictions")
    after = table(builds["inc"], "pattern_predictions")
    with duckdb.connect(str(builds["inc"]), read_only=True) as con:
        events = con.sql(
            "select e.pattern_id, e.outcome_quality, e.loaded_at > ? as new "
            "from staging.stg_usage_events as e semi join staging.stg_patterns using (pattern_id)",
            params=[watermark.to_pydatetime()],
        ).df()
    steps = int(dbt_vars()["prior_mean_steps"])
    old_mean = events.loc[~events["new"], "outcome_quality"].mean()
    new_mean = events["outcome_quality"].mean()
    assert np.floor(old_mean * steps + 0.5) == np.floor(new_mean * steps + 0.5), (
        "this data moves the prior a step: every row is rewritten and the test proves little"
    )
    rewritten = check_refresh_stamps(before, after)
    assert set(events.loc[events["new"], "pattern_id"]) <= rewritten
    full = table(builds["full"], "pattern_predictions")
    assert full["written_at"].notna().all() and full["written_at"].nunique() == 1


@pytest.mark.slow
def test_a_refresh_recomputes_the_predictions_of_the_patterns_whose_input_digest_differs(
    builds: dict, tmp_path: Path
) -> None:
    """What a refresh of pattern_predictions compares is the input digest stored on each
    pattern's rows (input_digest), not the rows' values: run again with nothing new, it
    writes nothing; a pattern whose rows are gone (a table cut short) and one whose stored
    digest differs are recomputed, to the full build's values, and no other; a pattern
    whose values were altered under a matching digest is left as it is (only a
    `--full-refresh` rewrites it). A new interval mass changes every digest: every row is
    rewritten, with the new interval."""
    db = tmp_path / "engram.duckdb"
    shutil.copy(builds["inc"], db)
    mart = "marts.pattern_predictions"
    run = ["run", "--select", "pattern_predictions"]

    def stamps() -> pd.Series:
        frame = table(db, "pattern_predictions")
        assert frame["input_digest"].notna().all()
        return frame.groupby("pattern_id")["written_at"].max()

    before = stamps()
    run_dbt(run, db, capture=True)
    assert stamps().equals(before), "nothing changed, yet rows were rewritten"

    cut, redigested, altered = sorted(before.index)[:3]
    with duckdb.connect(str(db)) as con:
        con.execute(f"delete from {mart} where pattern_id = ?", [cut])
        con.execute(
            f"update {mart} set input_digest = -input_digest - 1 where pattern_id = ?",
            [redigested],
        )
        con.execute(f"update {mart} set predicted_success = 0.5 where pattern_id = ?", [altered])
    run_dbt(run, db, capture=True)
    after = stamps()
    assert set(after.index) == set(before.index)
    assert set(after.index[after > before.max()]) == {cut, redigested}
    now, full = table(db, "pattern_predictions"), table(builds["full"], "pattern_predictions")
    for pattern in (cut, redigested):
        assert rows_per_key(now[now["pattern_id"] == pattern]) == rows_per_key(
            full[full["pattern_id"] == pattern]
        )
    assert (now.loc[now["pattern_id"] == altered, "predicted_success"] == 0.5).all()

    wider = float(dbt_vars()["prediction_interval"]) + 0.05
    run_dbt(
        [*run, "--vars", orjson.dumps({"prediction_interval": wider}).decode()], db, capture=True
    )
    rewritten = table(db, "pattern_predictions")
    assert (rewritten["written_at"] > after.max()).all()
    merged = rewritten.merge(now, on=["context_cluster_id", "pattern_id"], suffixes=("", "_was"))
    assert len(merged) == len(now)
    assert (
        (merged["ci_high"] - merged["ci_low"]) > (merged["ci_high_was"] - merged["ci_low_was"])
    ).all()


def test_the_predictions_digest_covers_the_code_that_computes_the_interval(builds: dict) -> None:
    """Each stored input_digest is the pattern's digest from the posterior's macro combined
    with the interval's mass and engram.numeric.posterior.interval_code() (recomputed here
    from the macro), and no pattern's matches under another code: a new beta_interval or
    another SciPy makes every digest differ, so the next refresh rewrites every row (the
    test above: a differing digest is recomputed)."""
    mass = float(dbt_vars()["prediction_interval"])

    def digests(con: duckdb.DuckDBPyConnection, code: str) -> dict[str, int]:
        return dict(
            con.execute(
                "select pattern_id, (hash(input_digest, ?::double, ?)::hugeint "
                "- 9223372036854775808)::bigint "
                "from intermediate.int_pattern_predictions__input_digests()",
                [mass, code],
            ).fetchall()
        )

    with duckdb.connect(str(builds["inc"]), read_only=True) as con:
        stored = dict(
            con.execute(
                "select pattern_id, any_value(input_digest) from marts.pattern_predictions "
                "group by pattern_id"
            ).fetchall()
        )
        now, other = digests(con, interval_code()), digests(con, interval_code() + "'")
    assert len(stored) > 100
    assert stored == now
    assert not {pattern for pattern in stored if stored[pattern] == other[pattern]}


def weekly_loads(db: Path) -> tuple[object, object, set[str]]:
    """For the tests of a model with its own watermark (macros/own_watermark.sql): the
    newest and oldest load among the weekly sums' groups, and the patterns with a group
    loaded after the oldest (the second batch's, in the `builds` warehouses)."""
    with duckdb.connect(str(db), read_only=True) as con:
        newest, first_load = con.execute(
            "select max(max_loaded_at), min(max_loaded_at) "
            "from intermediate.int_pattern_weeks__aggregated"
        ).fetchone()
        late = {
            row[0]
            for row in con.execute(
                "select distinct pattern_id from intermediate.int_pattern_weeks__aggregated "
                "where max_loaded_at > ?",
                [first_load],
            ).fetchall()
        }
    return newest, first_load, late


def saved_watermark(db: Path, side: str) -> list[tuple]:
    """A model's own watermark row: (processed_through, recomputed_all)."""
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"select processed_through, recomputed_all from {side}").fetchall()


@pytest.mark.slow
def test_a_refresh_recomputes_the_trend_summary_of_the_patterns_past_its_own_watermark(
    builds: dict, tmp_path: Path
) -> None:
    """pattern_trend_summary keeps its own watermark (macros/own_watermark.sql): a refresh
    recomputes the patterns with a week loaded after it, to the full build's values, and
    leaves the others' rows as they are; with the watermark behind (a run killed before
    the model's commit), the patterns loaded since are recomputed too; without one (as
    after a merge) every row is, and the watermark says so for the scoped tests."""
    db = tmp_path / "engram.duckdb"
    shutil.copy(builds["inc"], db)
    mart = "marts.pattern_trend_summary"
    side = "intermediate.pattern_trend_summary__watermark"  # not in marts: not served
    run = ["run", "--select", "pattern_trend_summary"]
    full = table(builds["full"], "pattern_trend_summary").set_index("pattern_id").sort_index()
    newest, first_load, late = weekly_loads(db)
    assert saved_watermark(db, side) == [(newest, False)]  # the refresh took in all, scoped

    with duckdb.connect(str(db)) as con:
        con.execute(f"update {mart} set avg_quality = -1")
        # behind: as if the second batch's refresh never committed this model
        con.execute(f"update {side} set processed_through = ?", [first_load])
    assert 0 < len(late) < len(full)
    run_dbt(run, db, capture=True)
    now = table(db, "pattern_trend_summary").set_index("pattern_id").sort_index()
    assert set(now.index) == set(full.index)
    assert set(now.index[now["avg_quality"] != -1]) == late
    pd.testing.assert_frame_equal(
        now.loc[sorted(late)], full.loc[sorted(late)], check_exact=False, rtol=1e-9
    )
    assert saved_watermark(db, side) == [(newest, False)]

    with duckdb.connect(str(db)) as con:
        con.execute(f"drop table {side}")
    run_dbt(run, db, capture=True)
    pd.testing.assert_frame_equal(
        table(db, "pattern_trend_summary").set_index("pattern_id").sort_index(),
        full,
        check_exact=False,
        rtol=1e-9,
    )
    assert [recomputed for _, recomputed in saved_watermark(db, side)] == [True]


def test_a_refresh_recomputes_the_profiles_of_patterns_with_new_events_or_placed_anew(
    builds: dict, tmp_path: Path
) -> None:
    """int_patterns__profiled (the stored part of dim_patterns) keeps its own watermark: a
    run recomputes the patterns with a week of events loaded after it, and a pattern whose
    stored cluster columns differ from its clustering now, to the values they had, and
    leaves every other row as stored; without the watermark (as after a merge) every row
    is recomputed, and the watermark says so."""
    db = tmp_path / "engram.duckdb"
    shutil.copy(builds["inc"], db)
    profiled = "intermediate.int_patterns__profiled"
    side = "intermediate.int_patterns__profiled__watermark"
    run = ["run", "--select", "int_patterns__profiled"]
    expected = table(db, "int_patterns__profiled").set_index("pattern_id").sort_index()
    newest, first_load, late = weekly_loads(db)
    assert saved_watermark(db, side) == [(newest, False)]  # the refresh took in all, scoped
    # the group's label is not stored here (dim_patterns joins it by description)
    assert "cluster_label" not in expected.columns
    placed = expected.index[expected["cluster_id"].notna()].difference(sorted(late))
    relabelled = str(placed[0])
    with duckdb.connect(str(db)) as con:
        con.execute(f"update {profiled} set usage_count = -1")
        con.execute(
            f"update {profiled} set paraphrase_group_id = 'a group it is no longer in' "
            "where pattern_id = ?",
            [relabelled],
        )
        # behind: as if the second batch's refresh never committed this model
        con.execute(f"update {side} set processed_through = ?", [first_load])
    assert 0 < len(late) < len(expected) - 1

    run_dbt(run, db, capture=True)
    now = table(db, "int_patterns__profiled").set_index("pattern_id").sort_index()
    assert set(now.index) == set(expected.index)
    recomputed = sorted(late | {relabelled})
    assert set(now.index[now["usage_count"] != -1]) == set(recomputed)
    pd.testing.assert_frame_equal(now.loc[recomputed], expected.loc[recomputed])
    assert saved_watermark(db, side) == [(newest, False)]

    with duckdb.connect(str(db)) as con:
        con.execute(f"drop table {side}")
    run_dbt(run, db, capture=True)
    pd.testing.assert_frame_equal(
        table(db, "int_patterns__profiled").set_index("pattern_id").sort_index(), expected
    )
    assert [recomputed for _, recomputed in saved_watermark(db, side)] == [True]


@pytest.mark.slow
def test_a_warehouse_from_before_the_stamp_gains_it_on_its_next_refresh(
    builds: dict, embedder: Embedder, tmp_path: Path
) -> None:
    """A warehouse built before the stamps (pattern_predictions with `refreshed_after`, a
    refresh's watermark or null, and no `written_at`) refreshes without a --full-refresh:
    the table is written whole once, every row with the new stamp, the old column gone,
    and it equals the incremental build's. (Left as it was, its rows would have no stamp
    for the serving copy to sync by.) The same refresh upgrades a warehouse whose
    pattern_similar_pairs is a table of per-pattern lists (before the lists were stored
    per description): the lists are built whole, the table becomes the view, and its
    rows equal the incremental build's."""
    db = tmp_path / "engram.duckdb"
    shutil.copy(builds["root"] / "before.duckdb", db)
    with duckdb.connect(str(db)) as con:
        predictions = "marts.pattern_predictions"
        con.execute(f"alter table {predictions} rename column written_at to refreshed_after")
        con.execute(f"update {predictions} set refreshed_after = null")
        con.execute(
            "create table marts.similar_pairs_table as select *, now()::timestamp as written_at "
            "from marts.pattern_similar_pairs"
        )
        con.execute("drop view marts.pattern_similar_pairs")
        con.execute("alter table marts.similar_pairs_table rename to pattern_similar_pairs")
        con.execute("drop table intermediate.int_pattern_texts__neighbors")
    ingest_paths([builds["root"] / "second"], db, embedder=embedder)
    build(db, capture=True, publish=False)
    with duckdb.connect(str(db), read_only=True) as con:
        kinds = dict(
            con.execute(
                "select table_name, table_type from information_schema.tables "
                "where table_name in ('pattern_similar_pairs', 'int_pattern_texts__neighbors')"
            ).fetchall()
        )
    assert kinds == {"pattern_similar_pairs": "VIEW", "int_pattern_texts__neighbors": "BASE TABLE"}
    lists = table(db, "int_pattern_texts__neighbors")
    assert lists["written_at"].nunique() == 1
    for mart, key, rtol in (
        # similarities are float32 products: a full search and a refresh's differ in the
        # last bits (int_pattern_texts__neighbors.FLOOR_SLACK)
        ("pattern_similar_pairs", ["pattern_id", "rank"], 1e-6),
        ("pattern_predictions", ["context_cluster_id", "pattern_id"], 1e-12),
    ):
        now = table(db, mart)
        assert "refreshed_after" not in now.columns
        if mart == "pattern_predictions":
            assert now["written_at"].notna().all() and now["written_at"].nunique() == 1
        bookkeeping = [column for column in BOOKKEEPING if column in now]
        expected = table(builds["inc"], mart).drop(columns=bookkeeping)
        pd.testing.assert_frame_equal(
            now.drop(columns=bookkeeping).sort_values(key).reset_index(drop=True),
            expected.sort_values(key).reset_index(drop=True),
            check_exact=False,
            rtol=rtol,
        )


def same_members(x: pd.DataFrame, y: pd.DataFrame) -> pd.Series:
    """Per pattern (x's and y's rows are the same patterns): True when the patterns sharing
    its paraphrase group, and those sharing its theme, are the same in x and in y."""
    out = pd.Series(True, index=x.index)
    for column in ("paraphrase_group_id", "theme_id"):
        mates_x = x.groupby(column).groups
        mates_y = y.groupby(column).groups
        out &= pd.Series(
            [
                set(mates_x[gx]) == set(mates_y[gy])
                for gx, gy in zip(x[column], y.loc[x.index, column], strict=True)
            ],
            index=x.index,
        )
    return out


def agreement(a: pd.Series, b: pd.Series) -> float:
    return float(adjusted_rand_score(a.astype(str), b.loc[a.index].astype(str)))


@pytest.mark.slow
def test_incremental_builds_leave_no_scratch_tables(builds: dict) -> None:
    """dbt-duckdb's incremental Python models stage rows in main.<model>__dbt_tmp<time>
    and keep it; the on-run-end hook (macros/drop_python_model_scratch.sql) drops them, or
    every refresh would leave three more tables in the file."""
    for db in (builds["inc"], builds["full"]):
        with duckdb.connect(str(db), read_only=True) as con:
            left = con.sql(
                "select table_schema, table_name from information_schema.tables "
                "where contains(table_name, '__dbt_tmp')"
            ).fetchall()
        assert left == [], db


def test_incremental_then_full_refresh_give_the_same_marts(builds: dict) -> None:
    """Every mart equal to a --full-refresh's, ids compared as memberships. The one
    documented difference: a re-clustering may cut some groups / themes differently from
    the incremental placement (README "Incremental builds"), so rows that depend on a
    pattern's group or theme are compared where both builds made the same group and theme,
    and the disagreement is bounded by the full clustering's own instability."""
    inc, full = builds["inc"], builds["full"]
    names_inc, ctx_inc = canonical(inc)
    names_full, ctx_full = canonical(full)
    marts = mart_names(inc)
    assert marts == mart_names(full) and len(marts) >= 10
    a = table(inc, "int_patterns__clustered").set_index("pattern_id")
    b = table(full, "int_patterns__clustered").set_index("pattern_id")
    same = pd.Series(True, index=a.index)
    for column in ("paraphrase_group_id", "theme_id"):
        same &= a[column].map(names_inc[column]) == b.loc[a.index, column].map(names_full[column])
    agreeing = set(same[same].index)
    # themes whose members all agree, on their groups too (a theme row counts its groups)
    theme_name = a["theme_id"].map(names_inc["theme_id"])
    same_themes = set(theme_name[same.groupby(theme_name).transform("all")])
    # the skeptic's baseline: a full clustering before and after the append, on the
    # patterns both saw; incremental vs re-cluster must disagree no more than that
    before = builds["before"]["int_patterns__clustered"].set_index("pattern_id")
    for column in ("paraphrase_group_id", "theme_id"):
        incremental_vs_full = agreement(a[column], b[column])
        full_vs_full = agreement(before[column], b[column])
        assert incremental_vs_full >= full_vs_full - 0.02, (
            column,
            incremental_vs_full,
            full_vs_full,
        )
    # Rows compared below are those in the same group and theme in both builds. How many
    # that is moves with float noise between machines (the model's vectors differ in the
    # last bits by CPU kind): 48.5% on an AVX2-only machine on 2026-12-02, where the same
    # code had passed a bound of 50% on the CI machine hours before. So it is held against
    # the skeptic's baseline, two full clusterings before and after the append, on the
    # patterns both saw (there: 52.6% exactly the same for both), and kept large enough
    # to compare.
    common = before.index
    skeptic = same_members(before, b.loc[common])
    incremental = same_members(a.loc[common], b.loc[common])
    assert incremental.mean() >= skeptic.mean() - 0.05, (incremental.mean(), skeptic.mean())
    assert len(agreeing) >= 0.4 * len(a)
    compared = 0
    # the per-description lists pattern_similar_pairs reads too: refreshed in place
    stored = ("int_pattern_texts__neighbors",)
    for name in [*CLUSTER_TABLES, *stored, *marts]:
        left = table(inc, name)
        right = table(full, name)
        if name in PATTERN_PARTITIONED:
            if "pattern_id" in left:
                left = left[left["pattern_id"].isin(agreeing)]
                right = right[right["pattern_id"].isin(agreeing)]
            else:
                left = left[left["theme_id"].map(names_inc["theme_id"]).isin(same_themes)]
                right = right[right["theme_id"].map(names_full["theme_id"]).isin(same_themes)]
        x = comparable(left, names_inc, ctx_inc)
        y = comparable(right, names_full, ctx_full)
        assert len(x) > 0 or name in ALLOWED_EMPTY, name
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-6, obj=name)
        compared += 1
    assert compared == len(marts) + len(CLUSTER_TABLES) + len(stored)
    # and the full refresh really re-clustered: every row placed by a clustering
    assert (b["placed_by"] == PLACED_BY_CLUSTERING).all()


@pytest.mark.slow
def test_passing_the_drift_bound_reclusters_and_carries_ids_over(
    builds: dict, embedder: Embedder
) -> None:
    root = builds["root"]
    db = root / "drift" / "engram.duckdb"
    db.parent.mkdir()
    shutil.copy(root / "before.duckdb", db)
    ingest_paths([root / "second"], db, embedder=embedder)
    # 5% new patterns is past a 1% bound: the clustered models re-cluster everything
    run_dbt(
        [
            "run",
            "--select",
            "int_patterns__clustered int_contexts__clustered",
            "--vars",
            "{recluster_drift_share: 0.01}",
        ],
        db,
        capture=True,
    )
    drift = table(db, "int_patterns__clustered").set_index("pattern_id")
    assert (drift["placed_by"] == PLACED_BY_CLUSTERING).all()
    # the same partition as the full refresh (the same algorithm on the same input) ...
    full = table(builds["full"], "int_patterns__clustered").set_index("pattern_id")
    for column in ("theme_id", "paraphrase_group_id"):
        pairs = pd.DataFrame({"a": drift[column], "b": full.loc[drift.index, column]})
        assert pairs.groupby("a")["b"].nunique().max() == 1, column
        assert pairs.groupby("b")["a"].nunique().max() == 1, column
    # ... with the old ids kept wherever a cluster carries on
    old = builds["before"]["int_patterns__clustered"]
    for column in ("theme_id", "paraphrase_group_id"):
        kept = set(drift[column]) & set(old[column])
        assert len(kept) >= 0.9 * old[column].nunique(), column


def independent_context_weeks(db: Path) -> pd.DataFrame:
    """int_pattern_context_weeks__aggregated recomputed in pandas from staging: the events
    of known patterns summed per (project, context cluster, pattern, week), a task text
    without a cluster in -1."""
    with duckdb.connect(str(db), read_only=True) as con:
        events = con.sql(
            "select project_id, pattern_id, context_hash, event_week as week, outcome_quality "
            "from staging.stg_usage_events "
            "where pattern_id in (select pattern_id from staging.stg_patterns)"
        ).df()
        contexts = con.sql(
            "select context_hash, context_cluster_id from intermediate.int_contexts__clustered"
        ).df()
    located = events.merge(contexts, on="context_hash", how="left")
    located["context_cluster_id"] = located["context_cluster_id"].fillna(-1).astype("int64")
    located["sq"] = located["outcome_quality"] ** 2
    return ordered_cells(
        located.groupby(["project_id", "context_cluster_id", "pattern_id", "week"])
        .agg(
            n_events=("outcome_quality", "size"),
            sum_quality=("outcome_quality", "sum"),
            sum_sq_quality=("sq", "sum"),
        )
        .reset_index()
    )


def ordered_cells(frame: pd.DataFrame) -> pd.DataFrame:
    keys = ["project_id", "context_cluster_id", "pattern_id", "week"]
    frame = frame.astype({"context_cluster_id": "int64", "n_events": "int64"})
    frame["week"] = pd.to_datetime(frame["week"])
    return frame.sort_values(keys).reset_index(drop=True)[[*keys, *VALUES]]


VALUES = ["n_events", "sum_quality", "sum_sq_quality"]


def assert_context_weeks_are_right(db: Path) -> None:
    built = ordered_cells(table(db, "int_pattern_context_weeks__aggregated"))
    expected = independent_context_weeks(db)
    pd.testing.assert_frame_equal(built, expected, check_exact=False, rtol=1e-9)


@pytest.mark.slow
def test_context_weeks_are_refreshed_per_changed_pattern_and_whole_when_a_counted_text_moves(
    builds: dict, embedder: Embedder, tmp_path: Path
) -> None:
    """int_pattern_context_weeks__aggregated on a refresh recomputes only the (pattern,
    week) groups with new events (a planted wrong sum in an untouched group survives the
    refresh, and every other row equals an independent recomputation); a task text it had
    counted that is now in another context cluster recomputes every row (the planted
    sum is gone); events loaded before their pattern are counted once the pattern is."""
    db = tmp_path / "engram.duckdb"
    shutil.copy(builds["root"] / "before.duckdb", db)
    second = pd.read_json(builds["root"] / "second" / "events.jsonl", lines=True)
    touched = set(second["pattern_id"])
    with duckdb.connect(str(db)) as con:
        canary = con.execute(
            "select pattern_id, week from intermediate.int_pattern_context_weeks__aggregated "
            "where pattern_id not in (select unnest(?)) order by all limit 1",
            [sorted(touched)],
        ).fetchone()
        assert canary is not None
        con.execute(
            "update intermediate.int_pattern_context_weeks__aggregated "
            "set sum_sq_quality = sum_sq_quality + 1000 where pattern_id = ? and week = ?",
            list(canary),
        )
    ingest_paths([builds["root"] / "second"], db, embedder=embedder)
    build(db, capture=True, publish=False)

    def canary_count() -> float:
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute(
                "select max(sum_sq_quality) "
                "from intermediate.int_pattern_context_weeks__aggregated "
                "where pattern_id = ? and week = ?",
                list(canary),
            ).fetchone()[0]  # type: ignore[index]

    def recomputed_all() -> bool:
        """What the run recorded for its scoped tests (macros/changed_rows.sql)."""
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute(
                "select bool_and(recomputed_all) "
                "from intermediate.int_pattern_context_weeks__aggregated__watermark"
            ).fetchone()[0]  # type: ignore[index]

    assert canary_count() > 1000  # left alone: its pattern had no new events
    assert recomputed_all() is False  # its tests checked the changed patterns' rows
    built = ordered_cells(table(db, "int_pattern_context_weeks__aggregated"))
    expected = independent_context_weeks(db)

    def planted(frame: pd.DataFrame) -> pd.Series:
        return (frame["pattern_id"] == canary[0]) & (frame["week"] == pd.Timestamp(canary[1]))

    assert planted(built).any()
    pd.testing.assert_frame_equal(
        built[~planted(built)].reset_index(drop=True),
        expected[~planted(expected)].reset_index(drop=True),
        check_exact=False,
        rtol=1e-9,
    )
    assert set(built["pattern_id"]) & builds["held"]  # the new patterns' cells are there

    # a counted task text moves to another cluster (as a re-clustering may move it)
    with duckdb.connect(str(db)) as con:
        target = con.execute(
            "select context_cluster_id, any_value(context_cluster_label) "
            "from intermediate.int_contexts__clustered group by 1 order by 1 desc limit 1"
        ).fetchone()
        moved = con.execute(
            "select context_hash from intermediate.int_contexts__clustered "
            "where context_hash in (select context_hash from staging.stg_usage_events) "
            "and context_cluster_id <> ? order by 1 limit 1",
            [target[0]],  # type: ignore[index]
        ).fetchone()
        assert target is not None and moved is not None
        con.execute(
            "update intermediate.int_contexts__clustered "
            "set context_cluster_id = ?, context_cluster_label = ? where context_hash = ?",
            [target[0], target[1], moved[0]],
        )
    build(db, capture=True, publish=False)
    assert canary_count() < 1000  # every row recomputed
    assert recomputed_all() is True  # and its tests checked every row
    assert_context_weeks_are_right(db)

    # a task text clustered after some of its events were counted (then in -1, as when
    # its text was embedded late): here one made unknown to the clustering and to the
    # map the model saved, so the next build places it again
    with duckdb.connect(str(db)) as con:
        con.execute(
            "update intermediate.int_pattern_context_weeks__aggregated "
            "set sum_sq_quality = sum_sq_quality + 1000 where pattern_id = ? and week = ?",
            list(canary),
        )
        for state in ("int_contexts__clustered", "int_pattern_context_weeks__aggregated__contexts"):
            con.execute(f"delete from intermediate.{state} where context_hash = ?", [moved[0]])
    build(db, capture=True, publish=False)
    assert canary_count() < 1000
    assert recomputed_all() is True
    assert_context_weeks_are_right(db)

    # events of a pattern not recorded yet are left out, then counted once it is
    late = tmp_path / "late"
    late.mkdir()
    event = second.iloc[0].to_dict()
    events = [
        {**event, "event_id": f"late-{i}", "pattern_id": "p-late", "timestamp": event["timestamp"]}
        for i in range(3)
    ]
    for row in events:
        row["timestamp"] = pd.Timestamp(row["timestamp"]).strftime("%Y-%m-%dT%H:%M:%SZ")
    (late / "events.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in events))
    ingest_paths([late], db, embedder=embedder)
    build(db, capture=True, publish=False)
    assert "p-late" not in set(table(db, "int_pattern_context_weeks__aggregated")["pattern_id"])
    (late / "events.jsonl").unlink()
    pattern = {
        "pattern_id": "p-late",
        "description": "Retry the flaky network call with exponential backoff.",
        "pattern_type": "fix",
        "first_seen": "2024-01-01T00:00:00Z",
        "metadata": {},
    }
    (late / "patterns.jsonl").write_bytes(orjson.dumps(pattern) + b"\n")
    ingest_paths([late], db, embedder=embedder)
    build(db, capture=True, publish=False)
    cells = table(db, "int_pattern_context_weeks__aggregated")
    assert cells.loc[cells["pattern_id"] == "p-late", "n_events"].sum() == 3
    assert_context_weeks_are_right(db)


@pytest.mark.slow
def test_a_warehouse_from_before_the_split_refreshes_into_the_same_clusters(
    builds: dict, embedder: Embedder
) -> None:
    """A warehouse built before issue 18's split stored every group fact on each pattern's
    row of int_patterns__clustered and pattern_clusters as a table. Its next incremental
    build must drop those columns (the group facts now live per description in
    int_pattern_texts__described), turn pattern_clusters into the view, and give the
    very rows a warehouse built after the split gives from the same data."""
    root = builds["root"]
    db = root / "before_split" / "engram.duckdb"
    db.parent.mkdir()
    shutil.copy(root / "before.duckdb", db)
    with duckdb.connect(str(db)) as con:
        con.execute(
            "create or replace table intermediate.int_patterns__clustered as "
            "select c.*, p.cluster_size, p.cluster_label, p.theme_size, p.theme_label "
            "from intermediate.int_patterns__clustered as c "
            "join marts.pattern_clusters as p using (pattern_id)"
        )
        con.execute("create table marts.pattern_clusters_old as from marts.pattern_clusters")
        con.execute("drop view marts.pattern_clusters")
        con.execute("alter table marts.pattern_clusters_old rename to pattern_clusters")
    ingest_paths([root / "second"], db, embedder=embedder)
    build(db, capture=True, publish=False)
    with duckdb.connect(str(db), read_only=True) as con:
        columns = [
            row[0]
            for row in con.execute(
                "select column_name from information_schema.columns where table_schema = "
                "'intermediate' and table_name = 'int_patterns__clustered' "
                "order by ordinal_position"
            ).fetchall()
        ]
        (kind,) = con.execute(
            "select table_type from information_schema.tables "
            "where table_schema = 'marts' and table_name = 'pattern_clusters'"
        ).fetchone()  # type: ignore[misc]
    assert columns == [
        "pattern_id",
        "description_hash",
        "cluster_id",
        "theme_id",
        "paraphrase_group_id",
        "placed_by",
    ]
    assert kind == "VIEW"
    for name in ("int_patterns__clustered", "pattern_clusters"):
        got = table(db, name).sort_values("pattern_id").reset_index(drop=True)
        want = table(builds["inc"], name).sort_values("pattern_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, obj=name)
