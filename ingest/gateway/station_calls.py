"""One CALL from the gateway to a station and its answer (``call_station``), outside
the ocpp library's ``call``: the frame is serialised exactly, only the awaited message
id's answer is kept, and a closed connection ends the wait."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from ocpp.messages import CallError as LibCallError
from websockets.exceptions import ConnectionClosed

from bus.commands import decode_json, encode_json
from ingest.gateway.protocol import CentralSystemBase


class StationAnswer:
    """What came back for one CALL: a CALLRESULT payload or a CALLERROR."""

    def __init__(
        self,
        payload: dict[str, Any] | None,
        error_code: str | None = None,
        error_description: str = "",
        error_details: Any = None,
    ) -> None:
        self.payload = payload
        self.error_code = error_code
        self.error_description = error_description
        self.error_details = error_details


class ConnectionLost(Exception):
    """The station's connection ended before it answered."""


async def call_station(
    station: CentralSystemBase,
    action: str,
    payload: dict[str, Any],
    answer_timeout_s: float,
    closed: asyncio.Event,
) -> StationAnswer:
    """Send one CALL with ``payload`` serialised exactly and wait ``answer_timeout_s`` for
    its answer (``TimeoutError``) or until ``closed`` is set (``ConnectionLost``; an
    answer that arrived before the close still wins). The caller holds the station's
    call lock. Never call this from a CALL handler: the answer arrives through the
    connection's receive loop."""
    unique_id = str(uuid.uuid4())
    frame = (
        b"[2,"
        + encode_json(unique_id)
        + b","
        + encode_json(action)
        + b","
        + encode_json(payload)
        + b"]"
    )
    # Registered before sending: only this id's answer is kept (stray answers are
    # dropped by the connection), and an immediate answer cannot be missed.
    expected = station.expect_answer(unique_id)
    try:
        try:
            await station.send_frame(frame.decode())
        except ConnectionClosed as exc:
            raise ConnectionLost(str(exc)) from exc
        answer = asyncio.ensure_future(station.wait_answer(unique_id, answer_timeout_s))
        closing = asyncio.ensure_future(closed.wait())
        try:
            await asyncio.wait({answer, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not answer.done():
                answer.cancel()
        if answer.cancelled():
            raise ConnectionLost("connection closed before the station answered")
        response = answer.result()  # raises TimeoutError
    finally:
        station.forget_answer(expected)
    if isinstance(response, LibCallError):
        return StationAnswer(
            None, str(response.error_code), str(response.error_description), response.error_details
        )
    # Re-read numbers as Decimal: exact, and what the response schemas expect.
    return StationAnswer(decode_json(json.dumps(response.payload)))
