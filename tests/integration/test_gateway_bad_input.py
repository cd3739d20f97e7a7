"""Bad input gets the protocol's error and never disturbs other stations; a broker
outage turns into CALLERROR InternalError, and a retry after recovery succeeds."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from tests.support.gateway import (
    NOW,
    envelopes,
    gateway_config,
    open_station,
    rpc,
    wait_for_envelopes,
)

pytestmark = pytest.mark.integration


async def raw_exchange(ws: Any, text: str) -> list[Any]:
    await ws.send(text)
    async with asyncio.timeout(10):
        return list(json.loads(await ws.recv()))


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('[2, "m-1", "Heartbeat", {', ["m-1", "FormationViolation"]),
        ("this is not json", ["-1", "FormationViolation"]),
        ('{"not": "an array"}', ["-1", "FormationViolation"]),
        ('[2, "m-2", "Heartbeat"]', ["m-2", "ProtocolError"]),
        ('[7, "m-3", "Heartbeat", {}]', ["m-3", "FormationViolation"]),
        ('[2, "m-4", "Heartbeat", []]', ["m-4", "FormationViolation"]),
        ('[2, "m-5", "FlyToTheMoon", {}]', ["m-5", "NotImplemented"]),
        ('[2, "m-6", "Reset", {"type": "Hard"}]', ["m-6", "NotSupported"]),
        ('[2, "m-7", "Authorize", {}]', ["m-7", "ProtocolError"]),
        (
            '[2, "m-8", "StartTransaction", {"connectorId": "one", "idTag": "A", "meterStart": 0,'
            f' "timestamp": "{NOW}"}}]',
            ["m-8", "TypeConstraintViolation"],
        ),
        ('[2, "m-9", "Heartbeat", {"extra": 1}]', ["m-9", "FormationViolation"]),
        (
            '[2, "m-10", "StatusNotification", {"connectorId": 1, "errorCode": "NoError",'
            ' "status": "Sleeping"}]',
            ["m-10", "FormationViolation"],
        ),
        (
            '[2, "m-11", "StopTransaction", {"transactionId": 1, "meterStop": 5,'
            ' "timestamp": "yesterday"}]',
            ["m-11", "TypeConstraintViolation"],
        ),
        (
            '[2, "m-12", "StopTransaction", {"transactionId": 1, "meterStop": 5,'
            ' "timestamp": "2026-01-05T10:00:00"}]',
            ["m-12", "TypeConstraintViolation"],
        ),
        (
            '[2, "m-13", "Authorize", {"idTag": "123456789012345678901"}]',
            ["m-13", "TypeConstraintViolation"],
        ),
    ],
)
async def test_bad_frames_get_the_right_callerror_and_others_keep_being_served(
    gateway: Gateway, broker: EmbeddedBroker, topics: Topics, frame: str, expected: list[str]
) -> None:
    bad = await open_station(gateway, "CP-BAD")
    good = await open_station(gateway, "CP-GOOD")
    try:
        answer = await raw_exchange(bad, frame)
        assert answer[0] == 4
        assert answer[1:3] == expected, answer
        assert isinstance(answer[3], str)
        assert isinstance(answer[4], dict)
        # The same connection and another station both keep working.
        assert (await rpc(bad, "Heartbeat", {}))[0] == 3
        assert (await rpc(good, "Heartbeat", {}))[0] == 3
    finally:
        await bad.close()
        await good.close()
    # Nothing from the bad frame was published; the two heartbeats were.
    got = wait_for_envelopes(broker, topics.ocpp_events, 2)
    assert [e.action for e in got] == ["Heartbeat", "Heartbeat"]


async def test_oversized_frame_closes_only_that_connection_with_1009(gateway: Gateway) -> None:
    big = await open_station(gateway, "CP-BIG")
    good = await open_station(gateway, "CP-GOOD2")
    try:
        payload = {"vendorId": "x", "data": "A" * 1_000_000}
        await big.send(json.dumps([2, "big-1", "DataTransfer", payload]))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                await big.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        assert (await rpc(good, "Heartbeat", {}))[0] == 3
    finally:
        await big.close()
        await good.close()


async def test_bad_path_and_missing_subprotocol_are_rejected_at_upgrade(gateway: Gateway) -> None:
    base = f"ws://127.0.0.1:{gateway.port}"
    with pytest.raises(InvalidStatus) as not_found:
        await connect(f"{base}/wrong/CP-1", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    assert not_found.value.response.status_code == 404
    assert b"/ocpp/{charge_point_id}" in not_found.value.response.body
    with pytest.raises(InvalidStatus) as empty_id:
        await connect(f"{base}/ocpp/", subprotocols=["ocpp1.6"])  # type: ignore[list-item]
    assert empty_id.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as no_proto:
        await connect(f"{base}/ocpp/CP-1")
    assert no_proto.value.response.status_code == 400
    assert b"subprotocol" in no_proto.value.response.body
    with pytest.raises(InvalidStatus) as wrong_proto:
        await connect(f"{base}/ocpp/CP-1", subprotocols=["ocpp1.5"])  # type: ignore[list-item]
    assert wrong_proto.value.response.status_code == 400
    # A client offering several picks a supported one (see test_gateway_v201 for the order).
    ws = await open_station(gateway, "CP-1", ("ocpp1.5", "ocpp1.6"))
    try:
        assert ws.subprotocol == "ocpp1.6"
    finally:
        await ws.close()


async def test_paused_broker_gives_internal_error_then_retry_succeeds(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    config = gateway_config(broker, clean_db, topics, delivery_timeout_ms=1500)
    stop = {"transactionId": 42, "meterStop": 12345, "timestamp": NOW, "reason": "Local"}
    async with Gateway(config) as gw:
        ws = await open_station(gw, "CP-OUTAGE")
        try:
            assert (await rpc(ws, "Heartbeat", {}))[0] == 3  # producer connected
            broker.pause()
            try:
                loop = asyncio.get_running_loop()
                started = loop.time()
                failed = await rpc(ws, "StopTransaction", stop, "stop-try-1")
                elapsed = loop.time() - started
            finally:
                broker.resume()
            assert failed[0] == 4
            assert failed[2] == "InternalError"
            assert elapsed < 1.5 + 2.5
            retried = await rpc(ws, "StopTransaction", stop, "stop-try-2")
            assert retried == [3, "stop-try-2", {}]
        finally:
            await ws.close()
    got = wait_for_envelopes(broker, topics.ocpp_events, 2)
    retried_env = [e for e in got if e.unique_id == "stop-try-2"]
    assert len(retried_env) == 1
    assert retried_env[0].payload == stop
    # The first attempt may still have reached the frozen broker's socket buffer and be
    # stored after the resume (at-least-once; consumers de-duplicate), but it never got
    # a CALLRESULT, so the station retried it.
    stops = {
        e.unique_id for e in envelopes(broker, topics.ocpp_events) if e.action == "StopTransaction"
    }
    assert "stop-try-2" in stops
    assert stops <= {"stop-try-1", "stop-try-2"}


async def test_second_connection_of_a_station_supersedes_the_first(gateway: Gateway) -> None:
    first = await open_station(gateway, "CP-TWICE")
    second = await open_station(gateway, "CP-TWICE")
    try:
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(10):
                await first.recv()
        assert (await rpc(second, "Heartbeat", {}))[0] == 3
        assert gateway.connected_stations == ["CP-TWICE"]
    finally:
        await first.close()
        await second.close()
