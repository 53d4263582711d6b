"""Embedding backends side by side, in one run: agreement with torch, ingest throughput,
and what one `engram similar` process costs.

    python -m bench.embedding_speed                   # everything (~5 min on 2 cores)
    python -m bench.embedding_speed --max-texts 300 --repeats 3   # a smoke run

1. Texts: every distinct pattern description and task text (event context) of the real
   datasets (../shared/datasets/{flask,werkzeug}-history, else the bundled flask sample).
2. Each backend embeds all of them, batch 64, after a one-batch warm-up (model load not
   timed): sentences/s, and the ratio to torch measured in this same run.
3. Agreement: per text, the cosine between the backend's vector and torch's; min, p1
   and mean. The requirement (>= 0.99) is read as "for every text", i.e. the min.
4. Whole process: `engram similar TEXT` run as a fresh process (warm OS cache) on a
   warehouse built from the bundled sample, once embedded with the default ONNX variant
   and a copy re-embedded with onnx-fp32 (which torch and onnx-fp32 queries read): wall
   time p50 and peak RSS (wait4's ru_maxrss) for the default ONNX variant, onnx-fp32 and
   torch.

Numbers only; the verdicts are printed beside them, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ingest.embedder import BACKEND_ENV_VAR, DEFAULT_ONNX, Embedder
from ingest.warehouse import CHECKOUT_ROOT

DATASETS = ("flask-history", "werkzeug-history")
SAMPLE = CHECKOUT_ROOT / "data" / "sample" / "flask-history"
BACKENDS = ("torch", "onnx-fp32", "onnx-int8", "onnx-int8-dynamic")
QUERY = "fix the test that fails only around midnight"


def dataset_dirs() -> list[Path]:
    shared = Path(os.environ.get("ENGRAM_DATASETS", CHECKOUT_ROOT.parent / "shared" / "datasets"))
    found = [shared / name for name in DATASETS if (shared / name).is_dir()]
    return found or [SAMPLE]


def real_texts(dirs: list[Path]) -> list[str]:
    """Distinct descriptions and task texts, in first-seen order."""
    seen: dict[str, None] = {}
    for folder in dirs:
        for name, field in (("patterns.jsonl", "description"), ("events.jsonl", "context")):
            path = folder / name
            if not path.exists():
                continue
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    text = json.loads(line).get(field)
                    if isinstance(text, str) and text.strip():
                        seen.setdefault(text, None)
    return list(seen)


def throughput(backend: str, texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    embedder = Embedder(backend=backend, batch_size=batch_size)
    embedder.encode(texts[:batch_size])  # load + warm-up, not timed
    started = time.perf_counter()
    vectors = embedder.encode(texts)
    return vectors, len(texts) / (time.perf_counter() - started)


# A fresh, small interpreter starts each measured process: Linux carries a process's
# peak RSS across fork+exec, so a child forked from this (torch-loaded) benchmark would
# report this process's peak, not its own.
LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.perf_counter() - started
err = proc.stderr.read().decode(errors="replace")
print(json.dumps({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
                  "rss_mb": usage.ru_maxrss / 1024, "code": os.waitstatus_to_exitcode(status),
                  "stderr": err[-2000:]}))
"""


def run_process(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """wall s, cpu s (user+sys), peak RSS MB and exit code of one fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    if result["code"] != 0:
        sys.stderr.write(result["stderr"])
    return result


def engram(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "engram"), *args]


def process_costs(repeats: int) -> dict[str, dict[str, float]]:
    """backend -> p50 wall s, p50 CPU s, max peak RSS MB of `engram similar` as a whole
    process.

    Two warehouses from the bundled sample: one embedded with the default ONNX variant,
    and a copy re-embedded with onnx-fp32, which torch may query too (same vector family;
    embedding 3,600 texts with torch here would only slow the benchmark down).
    """
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="engram-embbench-") as tmp:
        base = dict(os.environ)
        base.pop(BACKEND_ENV_VAR, None)
        base["DBT_TARGET_PATH"] = f"{tmp}/target"
        base["DBT_LOG_PATH"] = f"{tmp}/logs"
        int8_db = Path(tmp) / "int8" / "engram.duckdb"
        fp32_db = Path(tmp) / "fp32" / "engram.duckdb"
        for db, backend in ((int8_db, DEFAULT_ONNX), (fp32_db, "onnx-fp32")):
            env = {**base, BACKEND_ENV_VAR: backend}
            db.parent.mkdir()
            if db == fp32_db:  # the same rows, re-embedded
                shutil.copy(int8_db, db)
            else:
                quiet = ("--quiet",)
                subprocess.run(
                    engram("ingest", str(SAMPLE), "--db", str(db), *quiet), env=env, check=True
                )
            subprocess.run(
                engram("build", "--db", str(db)), env=env, check=True, stdout=subprocess.DEVNULL
            )
        for backend, db in ((DEFAULT_ONNX, int8_db), ("onnx-fp32", fp32_db), ("torch", fp32_db)):
            env = {**base, BACKEND_ENV_VAR: backend}
            command = engram("similar", QUERY, "--db", str(db), "-k", "5")
            run_process(command, env)  # warm the OS cache
            runs = [run_process(command, env) for _ in range(repeats)]
            if any(run["code"] != 0 for run in runs):
                raise SystemExit(f"`engram similar` failed with {backend}")
            results[backend] = {
                "p50": statistics.median(run["wall"] for run in runs),
                "cpu_p50": statistics.median(run["cpu"] for run in runs),
                "rss": max(run["rss_mb"] for run in runs),
            }
    return results


def throughput_table(texts: list[str], batch_size: int) -> None:
    """Steps 2-3: sentences/s and cosine to torch, per backend."""
    print(f"\n{'backend':<18} {'sent/s':>8} {'vs torch':>9} {'cos min':>8} {'p1':>8} {'mean':>8}")
    reference: np.ndarray | None = None
    torch_rate = 0.0
    for backend in BACKENDS:
        vectors, rate = throughput(backend, texts, batch_size)
        if reference is None:
            reference, torch_rate = vectors, rate
        cosines = np.einsum("ij,ij->i", vectors, reference)
        print(
            f"{backend:<18} {rate:8.1f} {rate / torch_rate:8.2f}x "
            f"{cosines.min():8.4f} {np.percentile(cosines, 1):8.4f} {cosines.mean():8.4f}",
            flush=True,
        )
    print(f"(load average after: {os.getloadavg()[0]:.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.embedding_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--max-texts", type=int, default=0, help="cap the texts (0: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=9, help="`engram similar` runs each")
    parser.add_argument("--skip-process", action="store_true", help="skip step 4")
    parser.add_argument("--skip-throughput", action="store_true", help="skip steps 2-3")
    args = parser.parse_args(argv)

    dirs = dataset_dirs()
    texts = real_texts(dirs)
    total = len(texts)
    if args.max_texts and args.max_texts < total:  # a fixed random sample of both datasets
        texts = random.Random(0).sample(texts, args.max_texts)
    cores = len(os.sched_getaffinity(0))
    names = ", ".join(str(d) for d in dirs)
    print(f"texts: {len(texts):,} of the {total:,} distinct texts in {names}")
    print(f"machine: {cores} cores usable, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_throughput:
        throughput_table(texts, args.batch_size)
    if args.skip_process:
        return 0
    print(f"\n`engram similar` as a whole process, {args.repeats} runs each after one warm-up")
    print(f"(load average before: {os.getloadavg()[0]:.1f})", flush=True)
    costs = process_costs(args.repeats)
    for backend, cost in costs.items():
        print(
            f"{backend:<18} p50 {cost['p50']:6.2f} s wall  {cost['cpu_p50']:6.2f} s CPU  "
            f"peak RSS {cost['rss']:6.0f} MB"
        )
    onnx, torch_cost = costs[DEFAULT_ONNX], costs["torch"]
    print(
        f"torch/{DEFAULT_ONNX}: {torch_cost['p50'] / onnx['p50']:.1f}x wall, "
        f"{torch_cost['cpu_p50'] / onnx['cpu_p50']:.1f}x CPU, "
        f"{torch_cost['rss'] / onnx['rss']:.1f}x peak RSS; targets for {DEFAULT_ONNX}: "
        f"p50 <= 1.5 s {'met' if onnx['p50'] <= 1.5 else 'NOT met'}, "
        f"peak RSS <= 350 MB {'met' if onnx['rss'] <= 350 else 'NOT met'}"
    )
    print(f"(load average after: {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
