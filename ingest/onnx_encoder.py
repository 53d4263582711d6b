"""all-MiniLM-L6-v2 on ONNX Runtime: tokenizers + onnxruntime + numpy, never torch.

It reproduces sentence-transformers' pipeline for this model step by step, so its vectors
agree with the torch ones: the model's own tokenizer.json (lower-casing WordPiece) with
truncation at the model's max_seq_length (256, from sentence_bert_config.json) and padding
to the longest text in the batch, the transformer (the exported graph), mean pooling over
the attention mask, and L2 normalisation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ingest.onnx_graphs import INPUT_NAMES


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxEncoder:
    """Encodes with one ONNX graph; the session uses every core this process may use."""

    def __init__(
        self, graph: Path, tokenizer_json: Path, max_length: int, threads: int | None = None
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_json))
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_count()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no optimizer chatter on stderr
        self.session: Any = ort.InferenceSession(
            str(graph), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors for one batch (padded to its longest)."""
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        feeds = dict(zip(INPUT_NAMES, (ids, mask, types), strict=True))
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        counts = np.clip(weights.sum(axis=1), 1e-9, None)
        pooled = summed / counts
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """All texts, batched by length (short with short) so padding stays small."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: np.ndarray | None = None
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            vectors = self.encode_batch([texts[i] for i in chunk])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[chunk] = vectors
        assert out is not None
        return out
