"""Garbage collector tuning: what startup built is frozen, the young generation is collected
less often, and stopping gives the frozen objects back to the collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from docuchat_common.memory import release_garbage_collector, tune_garbage_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_a_started_service_freezes_startup_and_collects_young_objects_less_often() -> None:
    tune_garbage_collector(20_000)

    assert gc.get_threshold()[0] == 20_000
    assert gc.get_freeze_count() > 0  # out of every collection's walk

    release_garbage_collector()

    assert gc.get_freeze_count() == 0  # collectable again


@pytest.mark.usefixtures("restored_collector")
def test_zero_keeps_cpythons_collector() -> None:
    before = gc.get_threshold()

    tune_garbage_collector(0)

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
