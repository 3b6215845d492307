"""Stopping background loops: a stop always ends, even when a cancellation is lost."""

from __future__ import annotations

import asyncio

from docuchat_common.tasks import stop_task, wait_event


async def test_a_loop_woken_as_it_is_cancelled_still_stops() -> None:
    # The outbox relay's shape: wait for a wake-up or the poll interval, go round again. With
    # 3.11's wait_for, a wake-up landing with the cancel swallowed it and the loop ran forever.
    wakeup, waiting = asyncio.Event(), asyncio.Event()

    async def relay() -> None:
        while True:
            waiting.set()
            await wait_event(wakeup, 30)
            wakeup.clear()

    task = asyncio.create_task(relay())
    await waiting.wait()
    wakeup.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done and task.cancelled()


async def test_wait_event_says_whether_the_event_came() -> None:
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 5) is True


async def test_stop_task_cancels_again_a_task_that_survived_the_first_cancel() -> None:
    started, survived, never = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            survived.set()  # swallowed: what a lost cancellation looks like
        await never.wait()

    task = asyncio.create_task(stubborn())
    await started.wait()
    await asyncio.wait_for(stop_task(task, grace=0.05), 5)
    assert survived.is_set() and task.cancelled()


async def test_stop_task_accepts_nothing_and_finished_tasks() -> None:
    await stop_task(None)

    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    await stop_task(task)  # reported in the log, not raised: stop goes on with the next step
    assert task.done()
