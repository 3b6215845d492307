"""Where original files are kept: the worker reads them, a reindex re-reads them, and a user's
upload is never lost while the pipeline catches up.

Dev and single-node deployments use a directory (a volume in production); an object store
adapter would implement the same three calls.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def delete(self, key: str) -> None: ...
    async def delete_all(self, prefix: str) -> None: ...


def blob_key(tenant_id: uuid.UUID, document_id: uuid.UUID) -> str:
    return f"{tenant_id}/{document_id}"


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"blob key escapes the store: {key!r}")
        return path

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, path)  # readers never see half a file

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def delete_all(self, prefix: str) -> None:
        """Every blob under ``prefix`` (a tenant's files)."""
        await asyncio.to_thread(shutil.rmtree, self._path(prefix), ignore_errors=True)
