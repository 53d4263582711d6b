"""The generator's output is pinned byte for byte, and its templates round-trip from JSON.

The hashes below were produced by the pre-refactor generator (ingest/generate.py at commit
11d7859, templates still written as Python), so moving the templates into
engram/generate/topics.json left the output byte-identical for a given seed. Any change to
the templates, the quality model or the draw order changes them: regenerate on purpose.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest

from engram.generate import TOPICS, Family, Topic, generate

FILES = ("patterns.jsonl", "events.jsonl", "truth.json")

# (generate kwargs, sha256 of patterns.jsonl, events.jsonl, truth.json)
GOLDEN: dict[str, tuple[dict[str, Any], tuple[str, str, str]]] = {
    "default-period": (
        {"n_patterns": 300, "n_events": 6_000, "seed": 7},
        (
            "bca347cc5fd8a88e14ff5dbe341ac0fbc9df1cd3815bf4c226db327014f63ba0",
            "4be3e03862838c749af0bfef21d89edff8bbbccbf660d61333c3d0d10db92d12",
            "5935e59073f1e36e9a0065ae01347fe8bd12f4c7839e20b714d92f42e915f503",
        ),
    ),
    "short-period": (
        {"n_patterns": 50, "n_events": 500, "seed": 0, "weeks": 10},
        (
            "2db0e109518107daa2dd29e1256bf56f34f8944073b2e9cea96e402d135d0322",
            "e923aab5d55034311c5f4bcc4258261145f7d56472086566edc9aa595c5d6c3f",
            "94117e5ab1f98c5d12f1d44d159c9b5cc3a3ba6a82cafb223cafd3be1a4e4220",
        ),
    ),
    "larger": (
        {"n_patterns": 2_000, "n_events": 20_000, "seed": 5},
        (
            "272774ebe8ed17e891fca155302bc016903a322fb71d4fea9625f6e7ed1e488a",
            "b2d3ca75bc34dac4cfbc5b93ec2953faa02d1ff3ac31a8edfa3a1c0f6555f835",
            "d73fb98fd11275b7d72054f857d18d52494f0a53f08aa54e9f39ac955d7d58ce",
        ),
    ),
    "no-events": (
        {"n_patterns": 1, "n_events": 0, "seed": 0},
        (
            "30a485c8361dd87aa42fb16057301bf5f151613df19375e4f56dea9f77ebf110",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6195014a507f3ae7439de2d30e4b005895a8fe576b6199b3258b06b5f1f1b129",
        ),
    ),
    "fewer-patterns-than-topics": (
        {"n_patterns": 5, "n_events": 40, "seed": 3, "weeks": 3, "start": date(2024, 2, 29)},
        (
            "5053f9ea8332f1f0d7d7290e57ecdf06610810e8a9bcaeddbf3c62bab45c1372",
            "2dc31b61980359a4583e0b14cb70b60030cdd36876813955c2458bf99778ac52",
            "f5efdad4863709a039888100db836b452b81ae7863f86114642b7f10d28ea00b",
        ),
    ),
    "one-pattern-per-topic": (
        {"n_patterns": 16, "n_events": 100, "seed": 11},
        (
            "8dd74598d9960827b3edb576a1371377396cdd24900439181dcbf9c9cc137a84",
            "01674981e4dd68a52f4d88d232894b5f1e1bda92787c6f41ae3383d175d3c25c",
            "25b5fbf8570cb7df0f0c7d0947bab27968ea85a19551b42cbc73fc29f4e39df1",
        ),
    ),
    # one past the 50,000-row chunk, for patterns and events alike
    "two-chunks": (
        {"n_patterns": 50_001, "n_events": 50_001, "seed": 9, "weeks": 26},
        (
            "e18aa9166421bb2ba57e958fce6c4e2b343670d432a45d90800a6b7914b835ee",
            "e6c21da53fe6fa87e84462787234f26986acc7c18a4264ecb76793c56f3dfd9f",
            "0dbf31d91598d56ab1ece91b61dc3337ae096639994ebf59de42d2024afae8ee",
        ),
    ),
}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_output_is_byte_identical_to_the_pinned_hashes(tmp_path: Path, name: str) -> None:
    kwargs, expected = GOLDEN[name]
    generate(tmp_path, **kwargs)
    got = tuple(hashlib.sha256((tmp_path / f).read_bytes()).hexdigest() for f in FILES)
    assert dict(zip(FILES, got, strict=True)) == dict(zip(FILES, expected, strict=True))


def test_topics_round_trip_from_the_package_data() -> None:
    raw = orjson.loads((resources.files("engram.generate") / "topics.json").read_bytes())
    assert len(TOPICS) == len(raw) == 16
    assert all(isinstance(t, Topic) for t in TOPICS)
    assert all(isinstance(f, Family) for t in TOPICS for f in t.families)
    hash(TOPICS)  # frozen and tuples all the way down, as when the templates were code
    fields = [f.name for f in dataclasses.fields(Topic)]
    assert all(list(t) == fields for t in raw), "topics.json keys are Topic's fields, in order"
    # TOPICS holds exactly what the JSON says: nothing dropped, reordered or retyped
    rebuilt = orjson.loads(orjson.dumps([dataclasses.asdict(t) for t in TOPICS]))
    assert rebuilt == raw
    assert sum(len(t.families) for t in TOPICS) == 64
