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


def run_process(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of one fresh process."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 and proc.stderr:
        sys.stderr.write(proc.stderr.read().decode(errors="replace"))
    if proc.stderr:
        proc.stderr.close()
    return wall, usage.ru_maxrss / 1024, proc.returncode


def engram(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "engram"), *args]


def process_costs(repeats: int) -> dict[str, tuple[float, float]]:
    """backend -> (p50 wall s, max peak RSS MB) of `engram similar` as a whole process.

    Two warehouses from the bundled sample: one embedded with the default ONNX variant,
    and a copy re-embedded with onnx-fp32, which torch may query too (same vector family;
    embedding 3,600 texts with torch here would only slow the benchmark down).
    """
    results: dict[str, tuple[float, float]] = {}
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
            walls, peaks = [], []
            for _ in range(repeats):
                wall, peak, code = run_process(command, env)
                if code != 0:
                    raise SystemExit(f"`engram similar` failed with {backend} (exit {code})")
                walls.append(wall)
                peaks.append(peak)
            results[backend] = (statistics.median(walls), max(peaks))
    return results


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
    print(f"\n{'backend':<18} {'sent/s':>8} {'vs torch':>9} {'cos min':>8} {'p1':>8} {'mean':>8}")
    reference: np.ndarray | None = None
    torch_rate = 0.0
    for backend in BACKENDS:
        vectors, rate = throughput(backend, texts, args.batch_size)
        if reference is None:
            reference, torch_rate = vectors, rate
        cosines = np.einsum("ij,ij->i", vectors, reference)
        print(
            f"{backend:<18} {rate:8.1f} {rate / torch_rate:8.2f}x "
            f"{cosines.min():8.4f} {np.percentile(cosines, 1):8.4f} {cosines.mean():8.4f}",
            flush=True,
        )
    print(f"(load average after: {os.getloadavg()[0]:.1f})")
    if args.skip_process:
        return 0
    print(f"\n`engram similar` as a whole process, {args.repeats} runs each after one warm-up")
    costs = process_costs(args.repeats)
    for backend, (p50, peak) in costs.items():
        print(f"{backend:<18} p50 {p50:6.2f} s   peak RSS {peak:6.0f} MB")
    onnx_p50, onnx_peak = costs[DEFAULT_ONNX]
    torch_p50, torch_peak = costs["torch"]
    print(
        f"ratio torch/onnx: {torch_p50 / onnx_p50:.1f}x time, "
        f"{torch_peak / onnx_peak:.1f}x memory; "
        f"targets p50 <= 1.5 s: {'met' if onnx_p50 <= 1.5 else 'NOT met'}, "
        f"peak RSS <= 350 MB: {'met' if onnx_peak <= 350 else 'NOT met'}"
    )
    print(f"(load average after: {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
