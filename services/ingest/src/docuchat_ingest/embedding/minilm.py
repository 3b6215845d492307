"""all-MiniLM-L6-v2 (int8 ONNX) run by onnxruntime, tokenised by ``tokenizers``; no torch.

Reproduces what sentence-transformers does for this model: wordpiece tokenisation truncated to
256 tokens (special tokens included), mean pooling over the attention mask of the
``last_hidden_state`` output, then L2 normalisation.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from .base import EmbeddingResult, Vectors, empty_result, l2_normalise
from .model_files import (
    DIMENSION,
    MAX_SEQ_LENGTH,
    MODEL_NAME,
    load_tokenizer,
    onnx_model_path,
)

IntArray = npt.NDArray[np.int64]


class MiniLMEmbedder:
    """The embedded default :class:`~docuchat_ingest.embedding.base.Embedder`.

    ``embed`` sorts the texts by token length (less padding per batch), runs batches of
    ``batch_size`` in a worker thread each (the event loop stays free), and returns the vectors
    in input order. ``tokens`` counts the wordpieces fed to the model ([CLS]/[SEP] included,
    after truncation). The ONNX session is thread-safe; one instance per process is enough.

    Batches are small: the attention tensors of a batch of 32 chunks of ~200 wordpieces
    (~100 MB) spill out of the CPU caches; the bench corpus's chunks took ~18% less CPU in
    batches of 8 than of 32 (the same texts, sorted by length either way).
    """

    model_name = MODEL_NAME
    dimension = DIMENSION

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer: Tokenizer | None = None,
        batch_size: int = 8,
        intra_op_num_threads: int = 2,
        max_length: int = MAX_SEQ_LENGTH,
        spin_wait: bool = False,
    ) -> None:
        import onnxruntime as ort

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 2 <= max_length <= MAX_SEQ_LENGTH:
            raise ValueError(f"max_length must be in 2..{MAX_SEQ_LENGTH}")
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenizer = tokenizer or load_tokenizer()
        sep = self.tokenizer.token_to_id("[SEP]")
        if sep is None:  # pragma: no cover - wrong tokenizer
            raise ValueError("tokenizer has no [SEP] token")
        self._sep_id = sep
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # onnxruntime's pool threads busy-wait for the next operator by default: between model
        # runs they burn a core that the rest of the process (parsing, I/O) needs.
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spin_wait else "0"
        )
        self._session: Any = ort.InferenceSession(
            str(model_path or onnx_model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._input_names
        if missing:  # pragma: no cover - a different export
            raise ValueError(f"ONNX model lacks inputs {sorted(missing)}")
        outputs = [o.name for o in self._session.get_outputs()]
        # A token-level output is pooled here; a sentence-level one (some exports pool inside
        # the graph) is used as is.
        if "last_hidden_state" in outputs:
            self._output, self._pooled = "last_hidden_state", False
        elif "token_embeddings" in outputs:
            self._output, self._pooled = "token_embeddings", False
        elif "sentence_embedding" in outputs:
            self._output, self._pooled = "sentence_embedding", True
        else:
            self._output = outputs[0]
            self._pooled = len(self._session.get_outputs()[0].shape) == 2
        self._lock = threading.Lock()  # one batch at a time: the threads are already all in use

    # -- tokenisation ---------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, with [CLS]/[SEP], truncated to ``max_length`` (keeping [SEP])."""
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        limit = self.max_length
        out: list[list[int]] = []
        for enc in encodings:
            ids = enc.ids
            if len(ids) > limit:
                ids = [*ids[: limit - 1], self._sep_id]
            out.append(ids)
        return out

    # -- inference ------------------------------------------------------------------------------

    def _run_batch(self, batch: list[list[int]]) -> Vectors:
        width = max(len(ids) for ids in batch)
        input_ids: IntArray = np.zeros((len(batch), width), dtype=np.int64)
        mask: IntArray = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        feeds: dict[str, IntArray] = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        with self._lock:
            (output,) = self._session.run([self._output], feeds)
        if self._pooled:
            return l2_normalise(output)
        hidden = np.asarray(output, dtype=np.float32)
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        counts = np.maximum(weights.sum(axis=1), np.float32(1e-9))
        return l2_normalise(summed / counts)

    def embed_sync(self, texts: Sequence[str]) -> EmbeddingResult:
        """The blocking version of :meth:`embed` (for benchmarks and worker threads)."""
        if not texts:
            return empty_result(self.dimension)
        ids = self.tokenize(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        vectors = np.empty((len(ids), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            vectors[chunk] = self._run_batch([ids[i] for i in chunk])
        counts = tuple(map(len, ids))
        return EmbeddingResult(vectors, sum(counts), counts)

    async def embed(self, texts: Sequence[str]) -> EmbeddingResult:
        if not texts:
            return empty_result(self.dimension)
        if len(texts) <= self.batch_size:
            # One model run (a search's query): one trip to a worker thread, not two.
            return await asyncio.to_thread(self.embed_sync, texts)
        ids = await asyncio.to_thread(self.tokenize, texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        vectors = np.empty((len(ids), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            vectors[chunk] = await asyncio.to_thread(self._run_batch, [ids[i] for i in chunk])
        counts = tuple(map(len, ids))
        return EmbeddingResult(vectors, sum(counts), counts)
