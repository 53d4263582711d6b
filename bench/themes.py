"""`python -m bench.themes`: which cosine cut makes themes match kinds of problem, and
which makes paraphrase groups match single approaches?

For each cut it clusters the pattern descriptions (the product's own clustering,
engram.numeric.clustering, on the real embedding model) and prints the adjusted Rand index
against independent truth:

- generated data (engram.generate): the topic each pattern was drawn for (kind of
  problem) and its approach family (truth.json / metadata);
- the bundled real flask-history sample: the pattern_type the git history gives
  (add, fix, docs, ...: the kind of change), and the area it touched.

The theme cut (var cluster_merge_threshold) and the paraphrase cut (var
paraphrase_threshold) in dbt_project.yml were chosen from this table (README
"Themes and paraphrase groups").
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from bench.paths import PROJECT_ROOT
from engram.generate import generate
from engram.numeric.clustering import cluster_keyed
from ingest.embedder import Embedder

CUTS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.92, 0.95)


def _read(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _table(name: str, texts: list[str], truths: dict[str, list[str]], embedder: Embedder) -> None:
    x = embedder.encode(texts)
    keys = np.asarray(texts, dtype=object)
    print(f"\n{name}: {len(texts)} patterns, {len(set(texts))} distinct descriptions")
    header = "  cut    groups  " + "  ".join(f"ARI vs {t:<8}" for t in truths)
    print(header)
    for cut in CUTS:
        labels = cluster_keyed(keys, x, cut)
        scores = "  ".join(
            f"{adjusted_rand_score(truth, labels):>14.3f}" for truth in truths.values()
        )
        print(f"  {cut:<5}  {labels.max() + 1:>6}  {scores}")


def speed(n_patterns: int, seed: int) -> None:
    """Cost of the two levels: int_patterns__clustered's function (two cuts, stable ids,
    c-TF-IDF labels) against the one-level clustering it replaced, on the same generated
    patterns with the benchmark's synthetic clustered vectors (bench/vectors.py)."""
    import time

    import pyarrow as pa

    from bench.vectors import ClusteredVectors
    from engram.numeric.clustering import clustered_table, embedding_array, two_level_table
    from ingest.embedder import text_hash

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), n_patterns, 0, seed=seed)
        rows = _read(Path(tmp) / "patterns.jsonl")
    texts = [str(r["description"]) for r in rows]
    hashes = [text_hash(t) for t in texts]
    families = [str(r["metadata"]["family"]) for r in rows]  # type: ignore[index]
    x = ClusteredVectors().vectors(list(zip(hashes, texts, families, strict=True)))
    table = pa.table(
        {
            "pattern_id": [str(r["pattern_id"]) for r in rows],
            "description_hash": hashes,
            "description": texts,
            "embedding": embedding_array(x),
        }
    )
    started = time.perf_counter()
    clustered_table(
        table,
        group_key="description_hash",
        text="description",
        keep=("pattern_id",),
        threshold=0.5,
        names={"cluster_id": "cluster_id"},
    )
    one = time.perf_counter() - started
    started = time.perf_counter()
    two_level_table(table, theme_threshold=0.4, paraphrase_threshold=0.5)
    two = time.perf_counter() - started
    print(
        f"{n_patterns} patterns: one level {one:.1f} s, two levels with ids and labels "
        f"{two:.1f} s ({two / one:.2f}x)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.themes", description=__doc__)
    parser.add_argument("--patterns", type=int, default=1000, help="generated patterns")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--speed", type=int, metavar="N", help="only time the clustering model on N patterns"
    )
    args = parser.parse_args()
    if args.speed:
        speed(args.speed, args.seed)
        return 0
    embedder = Embedder()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), args.patterns, 0, seed=args.seed)
        rows = _read(Path(tmp) / "patterns.jsonl")
    meta = [row["metadata"] for row in rows]
    _table(
        f"generated (seed {args.seed})",
        [str(row["description"]) for row in rows],
        {
            "topic": [str(m["topic"]) for m in meta],  # type: ignore[index]
            "family": [str(m["family"]) for m in meta],  # type: ignore[index]
        },
        embedder,
    )
    real = _read(PROJECT_ROOT / "data" / "sample" / "flask-history" / "patterns.jsonl")
    _table(
        "real (flask-history sample)",
        [str(row["description"]) for row in real],
        {
            "type": [str(row.get("pattern_type")) for row in real],
            "area": [str(row["metadata"]["area"]) for row in real],  # type: ignore[index]
        },
        embedder,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
