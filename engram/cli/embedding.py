"""`engram embedding`: which embedding backend this machine uses, and the ONNX export.

Kept apart from the other commands because it is about the model, not the marts; like
them it imports the heavy parts (torch for the export, onnxruntime) only when run.
"""

from __future__ import annotations

import argparse
import sys

from engram.cli.questions import Handler

DESCRIPTION = """\
The embedding model (all-MiniLM-L6-v2) runs on one of these backends:

  onnx-int8          ONNX Runtime, 8-bit weights: the default on CPU; never imports torch
  onnx-fp32          ONNX Runtime, fp32: the same vectors as torch (cosine ~1.0)
  onnx-int8-dynamic  plain dynamic per-channel int8, kept for comparison (less exact)
  torch              sentence-transformers on torch: the reference; default with a CUDA GPU

Choose with $ENGRAM_EMBEDDING_BACKEND (onnx = onnx-int8) or $ENGRAM_DEVICE (cuda picks
torch, cpu the ONNX default). Each stored vector is tagged model:backend; queries embed
with a variant comparable with the warehouse's vectors, and refuse with the fix otherwise.

actions:
  info     the backend this machine would use, the ONNX cache, and (with a warehouse)
           which variant its marts hold and how many vectors each variant has
  export   make the ONNX graphs (fp32 and the int8 variants) from the packaged weights
           with torch, once, into $ENGRAM_CACHE_DIR or $XDG_CACHE_HOME/engram or
           ~/.cache/engram. The ONNX backend does this by itself on first use (and says
           so on stderr); run it ahead to keep that ~30 s out of a first query."""


def add_parser(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    db_parent: argparse.ArgumentParser,
    formatter: type[argparse.HelpFormatter],
) -> dict[str, Handler]:
    """Register `engram embedding` on `engram`'s subparsers; returns name -> handler."""
    parser = commands.add_parser(
        "embedding",
        parents=[db_parent],
        formatter_class=formatter,
        help="embedding backends (onnx, torch) and the one-time ONNX export",
        description=DESCRIPTION,
        epilog="examples: engram embedding info;  engram embedding export --force",
    )
    parser.add_argument("action", choices=["info", "export"], help="what to do")
    parser.add_argument(
        "--force", action="store_true", help="export: remake the graphs even if cached"
    )
    return {"embedding": cmd_embedding}


def cmd_embedding(args: argparse.Namespace) -> int:
    if args.action == "export":
        return _export(force=args.force)
    return _info(args)


def _export(*, force: bool) -> int:
    from ingest.onnx_graphs import export, graph_dir

    def log(message: str) -> None:
        print(f"engram embedding export: {message}", file=sys.stderr, flush=True)

    log(f"cache folder {graph_dir()}")
    paths = export(force=force, log=log)
    for variant, path in paths.items():
        size_mb = path.stat().st_size / 1e6
        print(f"{variant:<14} {size_mb:6.1f} MB  {path}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from ingest.embedder import BACKEND_ENV_VAR, DEVICE_ENV_VAR, Embedder, make_tag
    from ingest.onnx_graphs import GRAPH_FILES, graph_dir, is_exported

    embedder = Embedder()
    print(f"backend     {embedder.backend} on {embedder.device}  (tag {embedder.tag})")
    print(f"            set ${BACKEND_ENV_VAR} or ${DEVICE_ENV_VAR} to change it")
    print(f"onnx cache  {graph_dir()}")
    for variant in GRAPH_FILES:
        state = "exported" if is_exported(variant) else "not exported yet"
        print(f"  {make_tag('onnx-' + variant):<34} {state}")
    _warehouse_info(args)
    return 0


def _warehouse_info(args: argparse.Namespace) -> None:
    from ingest.warehouse import connect_for_read, resolve_db_path

    db_path = resolve_db_path(getattr(args, "db", None))
    if not db_path.exists():
        print(f"warehouse   {db_path} (none yet)")
        return
    con = connect_for_read(db_path)
    try:
        tables = {
            r[0]
            for r in con.execute(
                "select table_schema || '.' || table_name from information_schema.tables"
            ).fetchall()
        }
        print(f"warehouse   {db_path}")
        if "staging.stg_embedding_model" in tables:
            row = con.execute("select embedding_model from staging.stg_embedding_model").fetchone()
            print(f"  marts read {row[0] if row else '(no vectors yet)'}")
        if "raw.embeddings" in tables:
            for model, n in con.execute(
                "select model, count(*) from raw.embeddings group by model order by model"
            ).fetchall():
                print(f"  {model:<34} {n:>9,} vectors")
    finally:
        con.close()
