"""The Embedder port and its adapters: MiniLM int8 ONNX (embedded default) and OpenAI-compatible.

Adapters are imported lazily so importing the port never loads onnxruntime or openai.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Embedder, EmbeddingResult, l2_normalise
from .model_files import DIMENSION, MAX_SEQ_LENGTH, MODEL_NAME, count_tokens, load_tokenizer

if TYPE_CHECKING:
    from .minilm import MiniLMEmbedder
    from .openai_compat import OpenAIEmbedder

__all__ = [
    "DIMENSION",
    "MAX_SEQ_LENGTH",
    "MODEL_NAME",
    "Embedder",
    "EmbeddingResult",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "count_tokens",
    "l2_normalise",
    "load_tokenizer",
]


def __getattr__(name: str) -> Any:
    if name == "MiniLMEmbedder":
        from .minilm import MiniLMEmbedder

        return MiniLMEmbedder
    if name == "OpenAIEmbedder":
        from .openai_compat import OpenAIEmbedder

        return OpenAIEmbedder
    raise AttributeError(name)
