"""Embedding backends: the ONNX vectors agree with torch's on real texts, each vector is
tagged with its variant and variants are never mixed, and commands that do not embed
never load a model or import torch.

The agreement check uses the bundled real flask-history sample (descriptions and task
texts, a few hundred); bench/embedding_speed.py gives the figure over all real texts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engram.build import build
from engram.query.errors import QueryError
from engram.query.memory import Memory
from ingest.embedder import (
    BACKEND_ENV_VAR,
    DEFAULT_ONNX,
    DEVICE_ENV_VAR,
    Embedder,
    EmbeddingConfigError,
    backend_for,
    compatible,
    make_tag,
    pick_backend,
)
from ingest.onnx_graphs import CACHE_ENV_VAR, graph_dir
from ingest.warehouse import connect_for_read

SAMPLE_DIR = Path(__file__).parent.parent / "data" / "sample" / "flask-history"
N_SAMPLE_TEXTS = 400


def sample_texts(n: int = N_SAMPLE_TEXTS) -> list[str]:
    """Distinct real texts: every pattern description, then task texts, up to n."""
    seen: dict[str, None] = {}
    for name, field in (("patterns.jsonl", "description"), ("events.jsonl", "context")):
        for line in (SAMPLE_DIR / name).read_text(encoding="utf-8").splitlines():
            text = json.loads(line).get(field)
            if isinstance(text, str) and text.strip():
                seen.setdefault(text, None)
    return list(seen)[:n]


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return Embedder(backend="torch").encode(sample_texts())


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(BACKEND_ENV_VAR, raising=False)
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)
    return monkeypatch


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "min_cosine"), [("onnx-fp32", 0.9999), (DEFAULT_ONNX, 0.99)])
def test_onnx_vectors_agree_with_torch_on_real_texts(
    backend: str, min_cosine: float, torch_vectors: np.ndarray
) -> None:
    texts = sample_texts()
    assert len(texts) == N_SAMPLE_TEXTS
    vectors = Embedder(backend=backend).encode(texts)
    assert vectors.shape == (len(texts), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.einsum("ij,ij->i", vectors, torch_vectors)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= min_cosine, f"{backend}: cosine {cosines.min():.4f} on {texts[worst]!r}"


@pytest.mark.slow
def test_onnx_batching_padding_and_truncation_do_not_change_vectors(
    torch_vectors: np.ndarray,
) -> None:
    """A text alone, in a padded batch, or past the 256-token limit gives its own vector:
    padding is masked out of the mean, and truncation matches sentence-transformers'."""
    embedder = Embedder(backend="onnx-fp32", batch_size=7)
    texts = sample_texts()
    alone = np.stack([embedder.encode([t])[0] for t in texts[:20]])
    np.testing.assert_allclose(alone, embedder.encode(texts)[:20], atol=2e-5)
    long_text = " ".join(texts[:200])  # far past 256 tokens
    reference = Embedder(backend="torch").encode([long_text])[0]
    assert float(embedder.encode([long_text])[0] @ reference) > 0.9999


def test_backend_choice_follows_the_settings(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(DEVICE_ENV_VAR, "cpu")
    assert pick_backend() == (DEFAULT_ONNX, "cpu")
    clean_env.setenv(DEVICE_ENV_VAR, "cuda")
    assert pick_backend() == ("torch", "cuda")
    clean_env.setenv(BACKEND_ENV_VAR, "onnx")
    with pytest.raises(EmbeddingConfigError, match="CPU only"):
        pick_backend()
    clean_env.setenv(DEVICE_ENV_VAR, "cpu")
    assert pick_backend() == ("onnx-int8", "cpu")
    clean_env.setenv(BACKEND_ENV_VAR, "onnx-fp32")
    assert Embedder().tag == "all-MiniLM-L6-v2:onnx-fp32"
    clean_env.setenv(BACKEND_ENV_VAR, "tensorflow")
    with pytest.raises(EmbeddingConfigError, match="tensorflow"):
        Embedder()


def test_tags_compare_by_family(clean_env: pytest.MonkeyPatch) -> None:
    torch_tag, fp32, int8 = make_tag("torch"), make_tag("onnx-fp32"), make_tag("onnx-int8")
    assert compatible(torch_tag, fp32) and compatible("all-MiniLM-L6-v2", fp32)
    assert not compatible(int8, fp32) and not compatible(int8, make_tag("onnx-int8-dynamic"))
    assert not compatible("other-model:onnx-int8", int8)
    # a query against torch vectors uses the light fp32 graph on a CPU
    assert backend_for(torch_tag, "cpu") == "onnx-fp32"
    assert backend_for(int8) == "onnx-int8"
    clean_env.setenv(BACKEND_ENV_VAR, "torch")
    with pytest.raises(ValueError, match=r"onnx-int8.*torch.*unset"):
        backend_for(int8)


def test_cache_dir_follows_xdg_and_override(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.delenv(CACHE_ENV_VAR, raising=False)
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert graph_dir().is_relative_to(tmp_path / "xdg" / "engram" / "onnx")
    clean_env.setenv(CACHE_ENV_VAR, str(tmp_path / "mine"))
    assert graph_dir().is_relative_to(tmp_path / "mine" / "onnx")


# ---- tags in the warehouse -------------------------------------------------------------


def other_backend(tag: str) -> str:
    """A backend whose vectors are not comparable with tag's."""
    return "onnx-int8" if compatible(tag, make_tag("onnx-fp32")) else "onnx-fp32"


@pytest.fixture(scope="module")
def stored_tag(sample_warehouse: Path) -> str:
    """The variant conftest's sample warehouse was embedded with (the machine's default,
    one backend for ingest and build: fixtures never mix backends)."""
    return Embedder().tag


@pytest.fixture
def memory(sample_warehouse: Path, clean_env: pytest.MonkeyPatch) -> Iterator[Memory]:
    with Memory(sample_warehouse) as opened:
        yield opened


@pytest.mark.slow
def test_every_vector_is_tagged_and_the_marts_read_one_tag(
    sample_warehouse: Path, stored_tag: str
) -> None:
    con = connect_for_read(sample_warehouse)
    try:
        tags = con.execute("select distinct model from raw.embeddings").fetchall()
        assert tags == [(stored_tag,)]
        (active,) = con.execute(
            "select embedding_model from staging.stg_embedding_model"
        ).fetchone()
        assert active == stored_tag
        # The loader embeds each chunk's texts as it stages them, so the closing pass may
        # find nothing left to embed; what it must record is the tag and that every
        # referenced text has a vector under it.
        runs = con.execute("select model, texts_referenced from raw.embedding_runs").fetchall()
        (vectors,) = con.execute("select count(*) from raw.embeddings").fetchone()
        assert runs[0][0] == stored_tag and runs[0][1] == vectors > 0
    finally:
        con.close()


@pytest.mark.slow
def test_queries_embed_with_the_warehouses_variant(memory: Memory, stored_tag: str) -> None:
    assert memory.embedding_model == stored_tag
    hits = memory.find_similar("Fix a defect in the test suite.", k=3)
    assert hits["pattern_id"].iloc[0] == "fix@tests"  # its own description
    assert compatible(memory.query_embedder.embedder.tag, stored_tag)


@pytest.mark.slow
def test_an_incomparable_query_variant_is_refused_with_the_fix(
    sample_warehouse: Path, stored_tag: str, clean_env: pytest.MonkeyPatch
) -> None:
    other = other_backend(stored_tag)
    clean_env.setenv(BACKEND_ENV_VAR, other)
    with Memory(sample_warehouse) as memory, pytest.raises(QueryError) as refused:
        memory.find_similar("flaky test", k=3)
    message = str(refused.value)
    assert stored_tag in message and make_tag(other) in message
    assert (
        f"unset ${BACKEND_ENV_VAR}" in message
        and f"{BACKEND_ENV_VAR}={other} engram build" in message
    )
    clean_env.delenv(BACKEND_ENV_VAR)
    # an embedder handed in explicitly is checked too
    with (
        Memory(sample_warehouse, embedder=Embedder(backend=other)) as memory,
        pytest.raises(QueryError, match=stored_tag),
    ):
        memory.find_similar("flaky test", k=3)


@pytest.mark.slow
def test_switching_backend_reembeds_and_the_marts_follow(
    sample_warehouse: Path, stored_tag: str, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "engram.duckdb"
    shutil.copy(sample_warehouse, db)
    other = other_backend(stored_tag)
    clean_env.setenv(BACKEND_ENV_VAR, other)
    # the embed pass + the staging models that read the tag (the rest is tested elsewhere)
    build(db, select="stg_embedding_model stg_patterns stg_contexts", capture=True, publish=False)
    con = connect_for_read(db)
    try:
        counts = dict(
            con.execute("select model, count(*) from raw.embeddings group by model").fetchall()
        )
        assert counts[make_tag(other)] == counts[stored_tag] > 0
        (active,) = con.execute(
            "select embedding_model from staging.stg_embedding_model"
        ).fetchone()
        assert active == make_tag(other)
        # the mart holds the new variant's vectors, not the old ones (recomputed here)
        description, stored = con.execute(
            "select description, embedding from staging.stg_patterns order by pattern_id limit 1"
        ).fetchone()
    finally:
        con.close()
    fresh = Embedder(backend=other).encode([description])[0]
    np.testing.assert_allclose(np.asarray(stored, dtype=np.float32), fresh, atol=1e-5)
    old = Embedder(backend=stored_tag.partition(":")[2]).encode([description])[0]
    assert not np.allclose(old, fresh, atol=1e-5)  # so the check above could fail


# ---- what each command imports ---------------------------------------------------------

PROBE = """
import json, sys
from engram.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
watched = ("torch", "sentence_transformers", "transformers", "onnxruntime", "tokenizers",
           "dagster", "dbt", "scipy")
print(json.dumps({"code": code, "loaded": [m for m in watched if m in sys.modules]}))
"""


def loaded_modules(*args: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != BACKEND_ENV_VAR},
        check=False,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, result.stderr
    return report["loaded"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["trends"],
        ["files"],
        ["sql", "select count(*) from marts.dim_patterns"],
    ],
    ids=["help", "trends", "files", "sql"],
)
def test_commands_that_do_not_embed_load_no_model(sample_warehouse: Path, args: list[str]) -> None:
    loaded = loaded_modules(*args, "--db", str(sample_warehouse))
    for heavy in ("torch", "sentence_transformers", "transformers", "onnxruntime"):
        assert heavy not in loaded, f"`engram {args[0]}` imported {heavy}"


@pytest.mark.slow
def test_similar_on_onnx_imports_neither_torch_nor_dagster_dbt_scipy(
    sample_warehouse: Path, stored_tag: str
) -> None:
    if stored_tag == make_tag("torch"):
        pytest.skip("the sample warehouse was embedded with torch ($ENGRAM_EMBEDDING_BACKEND)")
    loaded = loaded_modules("similar", "flaky test", "--db", str(sample_warehouse))
    assert "onnxruntime" in loaded  # it did embed, on ONNX
    assert not {"torch", "sentence_transformers", "transformers", "dagster", "dbt", "scipy"} & set(
        loaded
    ), loaded
