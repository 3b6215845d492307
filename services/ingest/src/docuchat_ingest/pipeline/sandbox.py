"""Parsing in separate processes with a time and a memory budget per document.

A hostile or pathological file (a decompression bomb, a PDF that sends MuPDF into a loop, a
crash in C code) must cost the worker one document, never the worker. Parsing runs in
long-lived child processes (PyMuPDF's import costs seconds: it is paid once), each on one
document at a time; a child's address space is capped with RLIMIT_AS, and a parse that
overruns its time is ended by killing that child, which is then replaced. Either way the
document fails with a stable code.
"""

from __future__ import annotations

import asyncio
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


class _Child:
    """One parser process (replaced after a kill): one document at a time, so the time and
    memory budget is that document's."""

    def __init__(self, max_memory_bytes: int) -> None:
        self.max_memory_bytes = max_memory_bytes
        self._pool: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_child,
                initargs=(self.max_memory_bytes,),
            )
        return self._pool

    def kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)


class ParserSandbox:
    """``processes`` parser children, each parsing one document at a time: a large document
    does not hold up the small ones behind it (the model would idle meanwhile), and a child
    that overruns its budget is killed and replaced alone."""

    def __init__(
        self,
        *,
        timeout_seconds: float = 120.0,
        max_memory_bytes: int = 1 << 30,
        processes: int = 1,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self.timeout_seconds = timeout_seconds
        self.max_memory_bytes = max_memory_bytes
        self._children = [_Child(max_memory_bytes) for _ in range(processes)]
        self._idle: asyncio.Queue[_Child] = asyncio.Queue()
        for child in self._children:
            self._idle.put_nowait(child)

    async def warm(self) -> None:
        """Start the children and import the parsers now (seconds with PyMuPDF), not on the
        first documents."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(child.executor(), _ready) for child in self._children)
        )

    async def parse(
        self, data: bytes, *, filename: str, media_type: str, max_pages: int
    ) -> ParsedDocument:
        child = await self._idle.get()
        try:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(
                child.executor(), _parse, data, filename, media_type, max_pages
            )
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    return await future
            except TimeoutError:
                log.warning(
                    "parse over its time budget; parser process replaced", filename=filename
                )
                child.kill()
                raise ParseError(
                    "parse_timeout", f"parsing took longer than {self.timeout_seconds:.0f} s"
                ) from None
            except BrokenProcessPool:
                log.warning("parser process died; replaced", filename=filename)
                child.kill()
                raise ParseError("corrupt_file", "the parser crashed on this file") from None
            except asyncio.CancelledError:
                # The abandoned parse must not eat into the next document's time budget.
                child.kill()
                raise
        finally:
            self._idle.put_nowait(child)

    def close(self) -> None:
        for child in self._children:
            child.kill()
