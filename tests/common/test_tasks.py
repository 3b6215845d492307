"""Stopping background loops: a stop always ends, even when a cancellation is lost."""

from __future__ import annotations

import asyncio

from docuchat_common.tasks import stop_task, wait_event


async def test_a_loop_woken_as_it_is_cancelled_still_stops() -> None:
    # The outbox relay's shape: wait for a wake-up or the poll interval, go round again. With
    # 3.11's wait_for, a wake-up landing with the cancel swallowed it and the loop ran forever.
    wakeup = asyncio.Event()
    rounds = 0

    async def relay() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            await wait_event(wakeup, 30)
            wakeup.clear()

    task = asyncio.create_task(relay())
    while rounds == 0:
        await asyncio.sleep(0)
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
    survived = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            survived.set()  # swallowed: what a lost cancellation looks like
        await asyncio.sleep(30)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
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
