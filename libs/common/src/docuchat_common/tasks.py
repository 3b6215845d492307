"""Stopping background loops so that a stop always ends.

A cancelled task can survive its cancellation: on Python 3.11 ``asyncio.wait_for`` returns the
inner result when the cancel lands just as that result arrives (cpython gh-86296), and a loop
that then goes round again never ends. Loops here wait with ``asyncio.timeout`` instead, and
``stop_task`` still cancels again, loudly, if one ever outlives its grace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from typing import Any

import structlog

log = structlog.get_logger(__name__)


async def stop_task(task: asyncio.Task[Any] | None, *, grace: float = 5.0) -> None:
    """Cancel ``task`` and wait until it has ended, re-cancelling every ``grace`` seconds."""
    if task is None or task.done():
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.warning("task ended with an error", task=task.get_name(), exc_info=task.exception())
        return
    task.cancel()
    while True:
        done, _ = await asyncio.wait({task}, timeout=grace)
        if done:
            break
        log.warning("task survived its cancellation; cancelling again", task=task.get_name())
        task.cancel()
    if not task.cancelled() and task.exception() is not None:
        log.warning("task ended with an error", task=task.get_name(), exc_info=task.exception())


async def wait_event(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
    """Wait for ``event`` at most ``timeout`` seconds; whether it was set. Cancellation always
    propagates (unlike ``asyncio.wait_for`` on 3.11)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()


async def finish_or_abandon(
    tasks: Collection[asyncio.Task[Any]], grace: float, *, what: str, **log_context: Any
) -> None:
    """Give ``tasks`` ``grace`` seconds to finish, then stop those still going (a stop must
    end: work abandoned uncommitted is delivered again), saying so for each."""
    if not tasks:
        return
    _done, held = await asyncio.wait(set(tasks), timeout=grace)
    for task in held:
        log.warning(f"{what} abandoned at stop; it will be delivered again", **log_context)
        await stop_task(task)
