"""The Spark extras (requirements-spark.lock) sit on top of requirements.lock without
touching it: `make spark-test` installs them into the same .venv right after `make test`
(.ci/run), so a pin shared by both files, or a loose pin, could silently change a package
the main suite was run against."""

from __future__ import annotations

import re

from ingest.warehouse import CHECKOUT_ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def pins(name: str) -> dict[str, str]:
    """Normalised package name -> pinned version; every non-comment line must be `a==b`."""
    found: dict[str, str] = {}
    for line in (CHECKOUT_ROOT / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{name}: not an exact pin: {line!r}"
        found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def test_the_spark_lock_adds_packages_and_repins_none() -> None:
    main, spark = pins("requirements.lock"), pins("requirements-spark.lock")
    assert {"dbt-spark", "pyspark"} <= set(spark)
    assert not set(main) & set(spark), sorted(set(main) & set(spark))
    # no CUDA build of anything: the machine and CI are CPU-only, torch stays +cpu
    assert not [n for n in spark if n.startswith("nvidia-") or n == "torch"]
