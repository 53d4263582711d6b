"""`python -m bench` (`make bench`): the benchmark's command line. It lives outside the
product package: nothing in engram/, ingest/ or orchestration/ imports it."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench.paths import PROJECT_ROOT

DESCRIPTION = """\
Generate synthetic data at a size, then measure on this machine, in one run: ingest
(events/s), embedding (torch sentences/s on CPU, and GPU when present; texts embedded
vs served from the cache), dbt build (total, per model, peak RSS; and the build after
appending 1% more events, as a ratio), queries (p50/p95 of trend lookup, top-20 file
pairs, similar top-10 exact and ANN with recall@10, predict incl. embedding), disk
bytes per event and per pattern, and the same marts written plainly in pandas, in
SQLite and in Polars (lazy, streaming engine) on the same rows, each in its own child
process (peak RSS recorded; one killed for memory is reported, not fatal): their answers
are checked against the dbt marts and their time given as a ratio to dbt-duckdb's.

Sizes (patterns / events): tiny 200 / 2,000; small 20,000 / 200,000 (default, a few
minutes); medium 100,000 / 1,000,000; full 1,000,000 / 10,000,000.

Above --synthetic-threshold distinct texts, texts get synthetic clustered vectors
(bench/vectors.py) instead of the model, for the later stages only; the table
says so. The model's speed is always measured on --embed-sample real texts."""

EPILOG = """\
The table is printed and written with every raw figure to artifacts/bench/*.json;
--write-docs also replaces this size's section of docs/benchmarks.md.
example: python -m bench --size full --baseline-max-events 10000000 --write-docs
example: python -m bench --size medium --baselines polars   (only the Polars baseline)"""


def _baseline_list(text: str) -> tuple[str, ...]:
    """--baselines: names from bench.runner.BASELINES, comma-separated, in run order."""
    from bench.runner import BASELINES

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}"
        )
    return tuple(n for n in BASELINES if n in names)


def build_parser() -> argparse.ArgumentParser:
    from bench.runner import BASELINES, SIZES

    bench = argparse.ArgumentParser(
        prog="python -m bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    bench.add_argument("--size", choices=sorted(SIZES), default="small", help="preset size")
    bench.add_argument("--patterns", type=int, metavar="N", help="override the preset")
    bench.add_argument("--events", type=int, metavar="M", help="override the preset")
    bench.add_argument("--seed", type=int, default=0, metavar="S")
    bench.add_argument(
        "--synthetic-vectors",
        choices=("auto", "on", "off"),
        default="auto",
        help="synthetic clustered vectors instead of the model (default: auto)",
    )
    bench.add_argument(
        "--synthetic-threshold",
        type=int,
        default=10_000,
        metavar="N",
        help="auto uses synthetic vectors above N distinct texts (default 10000)",
    )
    bench.add_argument(
        "--embed-sample", type=int, default=2_000, metavar="N", help="texts for sentences/s"
    )
    bench.add_argument(
        "--baseline-max-events",
        type=int,
        default=2_000_000,
        metavar="M",
        help="skip the pandas/SQLite/Polars baselines above M events (default 2000000)",
    )
    bench.add_argument(
        "--baselines",
        type=_baseline_list,
        default=",".join(BASELINES),
        metavar="LIST",
        help=f"comma-separated baselines to run, of {','.join(BASELINES)} (default all)",
    )
    bench.add_argument(
        "--query-repeats", type=int, default=200, metavar="N", help="timed calls per query"
    )
    bench.add_argument(
        "--workdir",
        type=Path,
        default=PROJECT_ROOT / "artifacts" / "bench" / "work",
        metavar="DIR",
        help="scratch space for data and warehouse (default artifacts/bench/work)",
    )
    bench.add_argument("--keep", action="store_true", help="keep the scratch data afterwards")
    bench.add_argument(
        "--output",
        type=Path,
        default=PROJECT_ROOT / "artifacts" / "bench",
        metavar="DIR",
        help="where the JSON results go (default artifacts/bench)",
    )
    bench.add_argument(
        "--write-docs", action="store_true", help="update this size's docs/benchmarks.md section"
    )
    return bench


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed, rebuilt from the parsed options that differ from the defaults
    (so the docs quote a runnable command even when called as a library)."""
    from bench.runner import BASELINES

    parts = ["python", "-m", "bench"]
    if args.size != "small" or (args.patterns is None and args.events is None):
        parts += ["--size", args.size]
    defaults = {
        "patterns": None,
        "events": None,
        "seed": 0,
        "synthetic_vectors": "auto",
        "synthetic_threshold": 10_000,
        "embed_sample": 2_000,
        "baseline_max_events": 2_000_000,
        "query_repeats": 200,
    }
    for name, default in defaults.items():
        value = getattr(args, name)
        if value != default:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    if args.baselines != tuple(BASELINES):
        parts += ["--baselines", ",".join(args.baselines)]
    if args.write_docs:
        parts.append("--write-docs")
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from bench import render
    from bench.runner import BASELINES, SIZES, BenchConfig, run_benchmark

    patterns, events = SIZES[args.size]
    size = args.size
    if args.patterns is not None or args.events is not None:
        patterns = args.patterns if args.patterns is not None else patterns
        events = args.events if args.events is not None else events
        size = "custom"
    for value, name in ((patterns, "--patterns"), (events, "--events")):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    cfg = BenchConfig(
        n_patterns=patterns,
        n_events=events,
        size=size,
        seed=args.seed,
        workdir=args.workdir,
        synthetic_vectors=args.synthetic_vectors,
        synthetic_threshold=args.synthetic_threshold,
        embed_sample=args.embed_sample,
        baseline_max_events=args.baseline_max_events,
        baselines=args.baselines,
        query_repeats=args.query_repeats,
        keep_workdir=args.keep,
        command=_command_line(args),
    )

    def log(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    results = run_benchmark(cfg, log)
    print(render.table(results))
    path = render.write_json(results, args.output)
    print(f"results: {path}")
    if args.write_docs:
        docs = PROJECT_ROOT / "docs" / "benchmarks.md"
        render.update_docs(results, docs)
        print(f"updated {docs}")
    failed = results["build"]["exit_code"] != 0
    different = [
        name for name in BASELINES if results["ratios"].get(f"{name}_same_answers") is False
    ]
    if failed:
        print("bench: dbt build failed; see the log named in the JSON", file=sys.stderr)
    if different:
        print(f"bench: baseline answers differ from dbt: {different}", file=sys.stderr)
    return 1 if failed or different else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ValueError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
