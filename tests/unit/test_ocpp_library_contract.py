"""What the gateway uses of the pinned ocpp library beyond its public API
(``ingest.gateway.protocol.CentralSystemBase``: ``send_frame``, ``call_lock``,
``wait_answer``) is still there and behaves as the wrappers assume. A new library
release that renames or reshapes them fails here, not in production."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

from ocpp.charge_point import ChargePoint
from ocpp.v16 import ChargePoint as V16ChargePoint
from ocpp.v16 import call

from ingest.gateway.protocol import CentralSystemBase


class _Connection:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, text: str) -> None:
        self.sent.append(text)

    async def recv(self) -> str:  # pragma: no cover - never read here
        raise AssertionError("not read")


def test_the_library_writes_frames_through_its_connection() -> None:
    assert inspect.iscoroutinefunction(ChargePoint._send)
    assert list(inspect.signature(ChargePoint._send).parameters) == ["self", "message"]
    connection = _Connection()
    station = V16ChargePoint("CP-1", connection)
    asyncio.run(station._send('[2,"1","Heartbeat",{}]'))
    assert connection.sent == ['[2,"1","Heartbeat",{}]']


def test_the_library_has_one_call_lock_per_connection() -> None:
    station = V16ChargePoint("CP-1", _Connection())
    assert isinstance(station._call_lock, asyncio.Lock)
    assert V16ChargePoint("CP-2", _Connection())._call_lock is not station._call_lock


def test_the_library_call_awaits_the_answer_hook_under_the_call_lock() -> None:
    source = inspect.getsource(ChargePoint.call)
    assert "self._call_lock" in source
    assert "self._get_specific_response(" in source
    assert list(inspect.signature(ChargePoint._get_specific_response).parameters) == [
        "self",
        "unique_id",
        "timeout",
    ]


def test_call_uses_our_answer_hook() -> None:
    """The library's ``call`` ends in the override: an answer delivered to it completes
    the call, with the library's own lock and writer."""

    class Station(V16ChargePoint):
        answered: list[str] = []

        # The library's signature, timeout parameter included.
        async def _get_specific_response(self, unique_id: str, timeout: Any) -> Any:  # noqa: ASYNC109
            self.answered.append(unique_id)
            raise TimeoutError

    async def run() -> tuple[list[str], list[str], bool]:
        connection = _Connection()
        station = Station("CP-1", connection, response_timeout=0.01)
        with contextlib.suppress(TimeoutError):
            await station.call(call.Heartbeat())
        return connection.sent, Station.answered, station._call_lock.locked()

    sent, answered, locked = asyncio.run(run())
    assert len(sent) == 1
    assert answered
    assert answered[0] in sent[0]
    assert not locked


def test_the_gateway_wraps_exactly_these_members() -> None:
    for name in ("send_frame", "call_lock", "wait_answer", "_get_specific_response"):
        assert hasattr(CentralSystemBase, name), name
    assert issubclass(CentralSystemBase, ChargePoint)
