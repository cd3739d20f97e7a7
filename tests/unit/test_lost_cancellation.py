"""A worker that lost its cancellation (Python 3.11's ``wait_for`` drops one that lands
as the awaited wait completes: psycopg_pool's wait for a connection at start-up) must not
hold its owner's shutdown for ever: the API's lifespan once hung 300 s on the firmware
rollout worker that way."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from fastapi import FastAPI

from api import firmware_rollouts
from api.command_changes import CommandChanges


async def _loses_one_cancellation(*_: Any, **__: Any) -> None:
    with contextlib.suppress(asyncio.CancelledError):  # as if it landed as wait_for completed
        await asyncio.sleep(30)
    await asyncio.sleep(30)  # and the worker went on with its work


async def test_the_rollout_worker_ends_with_its_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firmware_rollouts.RolloutWorker, "round", _loses_one_cancellation)
    entered = asyncio.Event()
    async with asyncio.timeout(10):
        async with firmware_rollouts.rollout_worker(FastAPI(), tick_s=0.01):
            entered.set()
            await asyncio.sleep(0.05)  # the worker is in its round
    assert entered.is_set()


async def test_the_command_listener_ends_with_its_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    changes = CommandChanges("postgresql://nobody@127.0.0.1:9/none")
    monkeypatch.setattr(changes, "_listen_forever", _loses_one_cancellation)
    changes.start()
    await asyncio.sleep(0.05)
    async with asyncio.timeout(10):
        await changes.aclose()
