"""Turn a results dict into the printed table, the JSON artifact and the docs section."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.runner import BASELINES
from engram.render import format_table

HEADERS = ["stage", "figure", "value", "note"]
NA = "n/a"


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return NA
    if abs(value) >= 1000:
        return f"{value:,.0f}{unit}"
    return f"{value:.{digits}f}{unit}"


def _bytes(value: float | None) -> str:
    if value is None:
        return NA
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{value:.0f} B"
        value /= 1024
    return NA


def _ratio(value: float | None) -> str:
    return NA if value is None else f"{value:.1f}x"


def _share(value: float | None) -> str:
    return NA if value is None else f"{value:.1%}"


def _ms(q: dict[str, Any] | None) -> str:
    if not q:
        return NA
    return f"p50 {q['p50_ms']:.2f} ms / p95 {q['p95_ms']:.2f} ms"


def _agreement(base: dict[str, Any]) -> str:
    agreement = base.get("agreement", {})
    if not agreement:
        return "no answers compared"
    bad = [name for name, a in agreement.items() if not a["same"]]
    if bad:
        return "DIFFERENT answers: " + ", ".join(bad)
    text = f"same answers as dbt on {len(agreement)} marts"
    return text


def _load_note(meta: dict[str, Any], cores: int) -> str:
    """What the load averages say. Only the start figure tells of other work: it is the
    minute before the run, while the end figure counts the benchmark's own last minute
    (a 2-thread dbt build alone reads about 2 on 2 cores)."""
    start = meta.get("load_avg_1m_start")
    if start is None:
        return "1-minute load"
    if start > cores:
        return (
            f"1-minute load; above the {cores} cores at the start: other work competed for the CPU"
        )
    return (
        f"1-minute load; below the {cores} cores at the start (no other heavy work then); "
        "the end figure includes the benchmark's own work"
    )


def rows(results: dict[str, Any]) -> list[list[str]]:
    """(stage, figure, value, note) rows; every figure the benchmark reports."""
    meta = results["meta"]
    out: list[list[str]] = []
    machine = meta["machine"]
    out.append(
        [
            "machine",
            "cores / memory",
            f"{machine['cores']} / {_bytes(machine['memory_bytes'])}",
            machine["cpu_model"],
        ]
    )
    if "load_avg_1m_start" in meta:
        out.append(
            [
                "machine",
                "load average start / end",
                f"{meta['load_avg_1m_start']:.1f} / {meta.get('load_avg_1m_end', 0):.1f}",
                _load_note(meta, machine["cores"]),
            ]
        )
    out.append(["data", "patterns / events", f"{meta['n_patterns']:,} / {meta['n_events']:,}", ""])
    gen = results.get("generate", {})
    if gen:
        out.append(
            [
                "generate",
                "events/s written",
                _num(gen["events_per_s"]),
                f"{gen['seconds']:.1f} s, {_bytes(gen['input_bytes'])} of JSONL",
            ]
        )
    ing = results.get("ingest", {})
    if ing:
        out.append(
            [
                "ingest",
                "events/s loaded",
                _num(ing["events_per_s"]),
                f"{ing['events_loaded']:,} events + {ing['patterns_loaded']:,} patterns "
                f"in {ing['seconds']:.1f} s (validated, no embedding)",
            ]
        )
    emb = results.get("embedding", {})
    if emb:
        out.append(
            [
                "embedding",
                "torch CPU sentences/s",
                _num(emb["torch_cpu_sentences_per_s"]),
                f"{emb['sample_texts']} distinct texts, {emb['torch_threads']} threads",
            ]
        )
        out.append(
            [
                "embedding",
                "GPU sentences/s",
                _num(emb["gpu_sentences_per_s"]) if emb["gpu"] else "no GPU available",
                emb["gpu"] or "torch.cuda.is_available() is False",
            ]
        )
        if emb.get("cpu_default_backend"):
            speed_up = emb["cpu_default_sentences_per_s"] / emb["torch_cpu_sentences_per_s"]
            out.append(
                [
                    "embedding",
                    f"{emb['cpu_default_backend']} CPU sentences/s",
                    _num(emb["cpu_default_sentences_per_s"]),
                    f"the CPU default; {speed_up:.1f}x torch on the same texts, cosine to "
                    f"torch's vectors >= {emb['cpu_default_cosine_to_torch_min']:.3f}",
                ]
            )
        how = (
            f"synthetic vectors ({emb['texts_synthetic']:,} texts, vectors.py)"
            if emb["vectors"] == "synthetic"
            else f"model embedded {emb['texts_embedded']:,} texts in {emb['fill_seconds']:.1f} s"
        )
        out.append(["embedding", "distinct texts", f"{emb['distinct_texts']:,}", how])
        out.append(
            [
                "embedding",
                "embedded / from cache (2nd pass)",
                f"{emb['second_pass_embedded']:,} / {emb['second_pass_cached']:,}",
                "re-running the embed step computes nothing",
            ]
        )
    build = results.get("build", {})
    if build:
        status = "ok" if build["exit_code"] == 0 else f"exit {build['exit_code']}"
        out.append(
            [
                "dbt build",
                "total (all models + tests)",
                f"{build['seconds']:.1f} s",
                f"{len(build['models'])} models {build['models_seconds']:.1f} s, "
                f"{build['n_tests']} tests {build['tests_seconds']:.1f} s, {status}"
                + (f", {build['tests_failed']} failed" if build["tests_failed"] else ""),
            ]
        )
        for name, seconds in sorted(build["models"].items(), key=lambda kv: -kv[1])[:12]:
            out.append(["dbt build", f"  {name}", f"{seconds:.2f} s", ""])
        out.append(["dbt build", "peak RSS of dbt", _bytes(build["peak_rss_bytes"]), "os.wait4"])
        for node in build.get("peak_rss_by_node", [])[:5]:
            out.append(
                ["dbt build", f"  RSS while {node['node']} ran", _bytes(node["peak_rss_bytes"]), ""]
            )
    inc = results.get("incremental", {})
    app = results.get("append", {})
    if inc:
        out.append(
            [
                "incremental",
                "build after +1% events, +1% patterns",
                f"{inc['seconds']:.1f} s",
                f"{_ratio(inc['ratio_to_full'])} of the full build; "
                f"{app.get('events_loaded', 0):,} events and "
                f"{app.get('patterns_loaded', 0):,} new patterns appended, "
                f"{app.get('texts_embedded', 0)} texts embedded, "
                f"{app.get('texts_cached', 0):,} served from cache",
            ]
        )
    ref = results.get("refresh", {})
    ref_pub = results.get("refresh_publish", {})
    if ref:
        out.append(
            [
                "incremental",
                "publish after the refresh",
                f"{ref_pub['seconds']:.1f} s",
                f"{ref_pub.get('mode', 'full')}; {_share(ref['publish_ratio'])} of the full one",
            ]
        )
        steps = sorted(ref_pub.get("steps", {}).items(), key=lambda kv: -kv[1][0])
        for step, (seconds, how) in steps[:5]:
            out.append(["incremental", f"  publish: {step}", f"{seconds:.1f} s", how])
        out.append(
            [
                "incremental",
                "build + publish: refresh / full",
                f"{ref['refresh_build_publish_seconds']:.1f} s / "
                f"{ref['full_build_publish_seconds']:.1f} s",
                f"**{_share(ref['ratio'])}** of the full build + publish",
            ]
        )
    queries = results.get("queries", {})
    if queries and "skipped" not in queries:
        out.append(["queries", "trend lookup (1 pattern)", _ms(queries["trend_lookup"]), ""])
        out.append(["queries", "top-20 file pairs", _ms(queries["top20_file_pairs"]), ""])
        out.append(["queries", "similar top-10 exact", _ms(queries["similar_top10_exact"]), ""])
        ann_note = f"recall@10 {queries['ann_recall_at_10']:.3f} (ties count)"
        if "ann_recall_at_10_ids" in queries:
            ann_note += f"; {queries['ann_recall_at_10_ids']:.3f} by ids"
        if not queries.get("ann_index_used"):
            ann_note += " (no ANN index: exact fallback)"
        out.append(["queries", "similar top-10 ANN", _ms(queries["similar_top10_ann"]), ann_note])
        out.append(
            [
                "queries",
                "predict (incl. embedding)",
                _ms(queries["predict_incl_embedding"]),
                "query text embedded on CPU each time",
            ]
        )
    elif queries:
        out.append(["queries", "all", NA, queries["skipped"]])
    pub = results.get("publish", {})
    if pub and "skipped" not in pub:
        out.append(["publish", "serving copy + ANN index", f"{pub['seconds']:.1f} s", ""])
    disk = results.get("disk", {})
    if disk:
        out.append(
            [
                "disk",
                "warehouse bytes / event",
                _num(disk["bytes_per_event"]),
                f"{_bytes(disk['warehouse_bytes'])} after checkpoint, before the append",
            ]
        )
        if disk.get("live_bytes_per_event") is not None:
            out.append(
                [
                    "disk",
                    "warehouse live bytes / event",
                    _num(disk["live_bytes_per_event"]),
                    f"the file less {_bytes(disk['free_bytes'])} of free blocks "
                    "(left by tables rewritten whole; `engram compact` returns them)",
                ]
            )
        out.append(["disk", "warehouse bytes / pattern", _num(disk["bytes_per_pattern"]), ""])
        if disk.get("serving_bytes"):
            out.append(["disk", "serving copy", _bytes(disk["serving_bytes"]), "marts + index"])
    after = results.get("disk_after_refresh", {})
    if after:
        out.append(
            [
                "disk",
                "warehouse bytes / event after the refresh",
                _num(after["bytes_per_event"]),
                f"{_bytes(after['warehouse_bytes'])} after checkpoint",
            ]
        )
        if after.get("live_bytes_per_event") is not None:
            out.append(
                [
                    "disk",
                    "warehouse live bytes / event after the refresh",
                    _num(after["live_bytes_per_event"]),
                    f"the file less {_bytes(after['free_bytes'])} of free blocks",
                ]
            )
    dbt_marts = results.get("dbt_marts", {})
    ratios = results.get("ratios", {})
    if dbt_marts:
        out.append(
            [
                "baselines",
                "dbt-duckdb (same marts)",
                f"{dbt_marts['seconds']:.2f} s",
                f"`dbt run --full-refresh` wall; run phase "
                f"{ratios.get('dbt_run_phase_seconds', 0):.2f} s; " + ", ".join(dbt_marts["marts"]),
            ]
        )
    for name, label in BASELINES.items():
        base = results.get("baselines", {}).get(name)
        if not base:
            continue
        if "skipped" in base:
            out.append(["baselines", label, NA, base["skipped"]])
            continue
        out.append(
            [
                "baselines",
                label,
                f"{base['compute_seconds']:.2f} s",
                f"+ {base['load_seconds']:.1f} s loading; peak RSS "
                f"{base.get('peak_rss_bytes', 0) / 2**30:.1f} GiB"
                + (
                    f" ({base['compute_peak_rss_bytes'] / 2**30:.1f} GiB before the answer check)"
                    if base.get("compute_peak_rss_bytes")
                    else ""
                )
                + f"; {_agreement(base)}",
            ]
        )
        note = (
            f"vs dbt wall time; {_ratio(ratios.get(f'{name}_vs_dbt_run_phase'))} "
            "vs dbt's run phase (no start-up)"
        )
        if ratios.get(f"{name}_same_answers") is False:
            note = "withheld: its answers differ from the dbt marts (or none were compared)"
        out.append(
            ["baselines", f"speed-up over {label}", _ratio(ratios.get(f"{name}_vs_dbt_wall")), note]
        )
    return out


def table(results: dict[str, Any]) -> str:
    return format_table(HEADERS, rows(results), max_width=110)


def write_json(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = results["meta"]["started_at"].replace(":", "").replace("+0000", "Z")
    path = directory / f"{stamp}-{results['meta']['size']}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def markdown(results: dict[str, Any]) -> str:
    """One size's section of docs/benchmarks.md: the command, when, where, and the table."""
    meta = results["meta"]
    machine = meta["machine"]
    lines = [
        f"Command: `{meta['command']}`  ",
        f"Run: {meta['started_at']} to {meta['finished_at']} (UTC)  ",
        f"Machine: {machine['cores']} cores ({machine['cpu_model']}), "
        f"{_bytes(machine['memory_bytes'])} memory, "
        f"{'GPU ' + machine['gpu'] if machine['gpu'] else 'no GPU'}; "
        f"Python {machine['python']}, DuckDB {machine['duckdb']}, dbt-core {machine['dbt_core']}, "
        f"pandas {machine['pandas']}, Polars {machine.get('polars', NA)}, "
        f"torch {machine['torch']}  ",
        f"Load average (1 min) at start / end: {_num(meta.get('load_avg_1m_start'))} / "
        f"{_num(meta.get('load_avg_1m_end'))} ({_load_note(meta, machine['cores'])})",
        "",
        "| stage | figure | value | note |",
        "|---|---|---|---|",
    ]
    for row in rows(results):
        cells = [c.replace("|", "\\|") for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def update_docs(results: dict[str, Any], docs: Path) -> str:
    """Replace this size's section (between its markers) in docs/benchmarks.md; a size with
    no section yet (a custom one) gets a new section at the end. Returns the section key."""
    meta = results["meta"]
    key = meta["size"]
    if key == "custom":
        key = f"{meta['n_patterns']}x{meta['n_events']}"
    begin, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    text = docs.read_text()
    section = f"{begin}\n{markdown(results)}{end}"
    if begin in text:
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        text = pattern.sub(lambda _: section, text)
    else:
        heading = f"### {meta['n_patterns']:,} patterns, {meta['n_events']:,} events"
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{section}\n"
    docs.write_text(text)
    return key
