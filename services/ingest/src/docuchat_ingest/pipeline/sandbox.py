"""Parsing in a separate process with a time and a memory budget.

A hostile or pathological file (a decompression bomb, a PDF that sends MuPDF into a loop, a
crash in C code) must cost the worker one document, never the worker. Parsing runs in a
long-lived child process (PyMuPDF's import costs seconds: it is paid once); the child's
address space is capped with RLIMIT_AS, and a parse that overruns its time is ended by killing
the child, which is then replaced. Either way the document fails with a stable code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import resource
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from docuchat_common.logging import get_logger
from docuchat_ingest.parsing import ParsedDocument, ParseError, load_parsers, parse_document

log = get_logger(__name__)


def _start_child(max_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    # The format parsers are imported on first use; PyMuPDF's import alone is about a
    # CPU-second that the first PDF (after a start or a replacement) would otherwise wait for.
    load_parsers()


def _parse(data: bytes, filename: str, media_type: str, max_pages: int) -> ParsedDocument:
    try:
        return parse_document(data, filename=filename, media_type=media_type, max_pages=max_pages)
    except MemoryError:
        raise ParseError("resource_limit", "the document needs more memory than allowed") from None


def _ready() -> bool:
    return True  # the child's initializer has loaded the parsers


class ParserSandbox:
    def __init__(self, *, timeout_seconds: float = 120.0, max_memory_bytes: int = 2 << 30) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_memory_bytes = max_memory_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = asyncio.Lock()  # one document at a time per worker: the budget is per parse

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_child,
            initargs=(self.max_memory_bytes,),
        )

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    async def warm(self) -> None:
        """Start the child and import the parsers now (seconds with PyMuPDF), not on the
        first document."""
        async with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
            await asyncio.get_running_loop().run_in_executor(self._pool, _ready)

    async def parse(
        self, data: bytes, *, filename: str, media_type: str, max_pages: int
    ) -> ParsedDocument:
        async with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._pool, _parse, data, filename, media_type, max_pages)
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    return await future
            except TimeoutError:
                log.warning(
                    "parse over its time budget; parser process replaced", filename=filename
                )
                self._kill()
                raise ParseError(
                    "parse_timeout", f"parsing took longer than {self.timeout_seconds:.0f} s"
                ) from None
            except (BrokenProcessPool, concurrent.futures.process.BrokenProcessPool):
                log.warning("parser process died; replaced", filename=filename)
                self._kill()
                raise ParseError("corrupt_file", "the parser crashed on this file") from None

    def close(self) -> None:
        self._kill()
