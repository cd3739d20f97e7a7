"""Gateway security over real websockets, broker and PostgreSQL: station
authentication (Basic, argon2, failure limits, profiles 0/2, TLS), idTag decisions
(Blocked/Expired/Invalid/ConcurrentTx/groups) in both versions, abuse limits and
station liveness (online/offline envelopes, station_connections)."""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bus.envelope import Kind
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from store.id_tokens import add_id_tag
from store.stations import provision_station
from tests.support.gateway import (
    NOW,
    STATION_PASSWORD,
    alerts,
    basic_auth,
    connection_events,
    gateway_config,
    open_station,
    provision,
    rpc,
)
from tests.support.polling import apoll, poll_until

pytestmark = pytest.mark.integration


async def refused(
    url: str, headers: dict[str, str] | None = None, *, ssl_context: ssl.SSLContext | None = None
) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        await connect(
            url,
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=headers,
            ssl=ssl_context,
        )
    return info.value


async def accepted(
    url: str,
    headers: dict[str, str] | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
    subprotocol: str = "ocpp1.6",
) -> ClientConnection:
    return await connect(
        url,
        subprotocols=[subprotocol],  # type: ignore[list-item]
        additional_headers=headers,
        ssl=ssl_context,
    )


@pytest.fixture
async def gateway(broker: EmbeddedBroker, clean_db: str, topics: Topics) -> AsyncIterator[Gateway]:
    async with Gateway(gateway_config(broker, clean_db, topics, id_tag_cache_ttl_s=0)) as gw:
        yield gw


# ------------------------------------------------------------------ authentication


async def test_unknown_absent_and_wrong_credentials_are_refused_at_the_upgrade(
    gateway: Gateway, db: psycopg.Connection[Any]
) -> None:
    await provision(gateway, "CP-SEC")
    url = f"{gateway.url}/CP-SEC"

    unknown = await refused(f"{gateway.url}/CP-NOBODY", basic_auth("CP-NOBODY"))
    assert unknown.response.status_code == 404
    absent = await refused(url)
    assert absent.response.status_code == 401
    assert absent.response.headers["WWW-Authenticate"].startswith("Basic")
    wrong = await refused(url, basic_auth("CP-SEC", "not-the-password-at-all"))
    assert wrong.response.status_code == 401
    other_user = await refused(url, basic_auth("CP-OTHER"))
    assert other_user.response.status_code == 401
    row = db.execute(
        "SELECT auth_failures, last_auth_failure_ip, password_hash "
        "FROM stations WHERE charge_point_id = 'CP-SEC'"
    ).fetchone()
    assert row is not None
    assert row[0] == 3
    assert row[1] == "127.0.0.1"
    assert row[2].startswith("$argon2id$")
    assert STATION_PASSWORD not in row[2]

    ws = await accepted(url, basic_auth("CP-SEC"))
    try:
        assert (await rpc(ws, "Heartbeat", {}))[0] == 3
    finally:
        await ws.close()
    row = db.execute(
        "SELECT auth_failures, last_auth_at FROM stations WHERE charge_point_id = 'CP-SEC'"
    ).fetchone()
    assert row is not None
    assert row[0] == 0
    assert row[1] is not None


async def test_repeated_failures_for_a_station_slow_and_alert_but_never_block_it(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    cfg = gateway_config(
        broker,
        clean_db,
        topics,
        auth_failure_limit_station=3,
        auth_failure_limit_ip=100,
        auth_failure_delay_s=0.5,
    )
    async with Gateway(cfg) as gw:
        await provision(gw, "CP-BRUTE")
        url = f"{gw.url}/CP-BRUTE"
        for _ in range(3):
            assert (
                await refused(url, basic_auth("CP-BRUTE", "guess-guess-guess-1"))
            ).response.status_code == 401
        # Over the limit: wrong passwords are still 401, answered later...
        started = time.monotonic()
        assert (
            await refused(url, basic_auth("CP-BRUTE", "guess-guess-guess-2"))
        ).response.status_code == 401
        assert time.monotonic() - started >= 0.5
        # ...and the right password gets in at once.
        ws = await accepted(url, basic_auth("CP-BRUTE"))
        await ws.close()

        got = await apoll(
            lambda: alerts(broker, topics), lambda a: len(a) >= 1, 20, "a security alert"
        )
        assert got[0].kind == Kind.SECURITY_ALERT
        assert got[0].charge_point_id == "CP-BRUTE"
        assert got[0].payload["alert"] == "repeated_failed_authentication"
        assert got[0].payload["scope"] == "station"
        assert got[0].payload["consequence"] == "slowed"
        assert got[0].payload["failures"] == 3
        assert got[0].payload["gateway_id"] == gw.gateway_id
        assert STATION_PASSWORD not in json.dumps(got[0].payload)


async def test_failures_from_one_source_ip_are_limited_across_station_ids(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    cfg = gateway_config(
        broker, clean_db, topics, auth_failure_limit_station=100, auth_failure_limit_ip=4
    )
    async with Gateway(cfg) as gw:
        await provision(gw, "CP-IP")
        for n in range(4):  # enumerating ids counts against the source address
            assert (
                await refused(f"{gw.url}/CP-GUESS-{n}", basic_auth(f"CP-GUESS-{n}"))
            ).response.status_code == 404
        assert (await refused(f"{gw.url}/CP-IP", basic_auth("CP-IP"))).response.status_code == 429
        got = await apoll(
            lambda: alerts(broker, topics), lambda a: len(a) >= 1, 20, "a security alert"
        )
        assert got[0].payload["scope"] == "source_ip"
        assert got[0].payload["source_ip"] == "127.0.0.1"


async def test_successful_logins_are_cached_and_profiles_0_and_2_apply(
    gateway: Gateway, clean_db: str
) -> None:
    assert gateway.authenticator is not None
    await provision(gateway, "CP-STORM")
    before = gateway.authenticator.argon2_verifications
    for _ in range(5):  # a reconnect storm verifies the password once
        ws = await accepted(f"{gateway.url}/CP-STORM", basic_auth("CP-STORM"))
        await ws.close()
    assert gateway.authenticator.argon2_verifications == before + 1
    # A new password takes effect at once (the cache is bound to the stored hash).
    await provision(gateway, "CP-STORM", "a-brand-new-password-2")
    assert (
        await refused(f"{gateway.url}/CP-STORM", basic_auth("CP-STORM"))
    ).response.status_code == 401
    ws = await accepted(f"{gateway.url}/CP-STORM", basic_auth("CP-STORM", "a-brand-new-password-2"))
    await ws.close()

    await asyncio.to_thread(provision_station, clean_db, "CP-LEGACY", security_profile=0)
    ws = await accepted(f"{gateway.url}/CP-LEGACY")  # profile 0: explicitly no auth
    await ws.close()
    await asyncio.to_thread(provision_station, clean_db, "CP-NOPASS")
    assert (
        await refused(f"{gateway.url}/CP-NOPASS", basic_auth("CP-NOPASS"))
    ).response.status_code == 401
    await asyncio.to_thread(
        provision_station, clean_db, "CP-TLSONLY", password=STATION_PASSWORD, security_profile=2
    )
    assert (
        await refused(f"{gateway.url}/CP-TLSONLY", basic_auth("CP-TLSONLY"))
    ).response.status_code == 403
    with pytest.raises(ValueError, match="16-40"):
        provision_station(clean_db, "CP-SHORT", password="short")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "gateway.pem", folder / "gateway.key"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return ca, cert_path, key_path


async def test_tls_security_profile_2_with_basic_auth(
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    tls_files: tuple[trustme.CA, Path, Path],
) -> None:
    ca, cert_path, key_path = tls_files
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    cfg = gateway_config(broker, clean_db, topics, tls_cert=str(cert_path), tls_key=str(key_path))
    async with Gateway(cfg) as gw:
        assert gw.url.startswith("wss://127.0.0.1:")
        await asyncio.to_thread(
            provision_station, clean_db, "CP-TLS", password=STATION_PASSWORD, security_profile=2
        )
        ws = await accepted(f"{gw.url}/CP-TLS", basic_auth("CP-TLS"), ssl_context=client_ctx)
        try:
            assert (await rpc(ws, "Heartbeat", {}))[0] == 3
        finally:
            await ws.close()
        assert (
            await refused(
                f"{gw.url}/CP-TLS",
                basic_auth("CP-TLS", "wrong-password-wrong"),
                ssl_context=client_ctx,
            )
        ).response.status_code == 401
        # Clients that do not trust the CA, or speak plain ws://, get nowhere.
        with pytest.raises(ssl.SSLCertVerificationError):
            await connect(
                f"{gw.url}/CP-TLS",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                additional_headers=basic_auth("CP-TLS"),
            )
        with pytest.raises((InvalidHandshake, OSError, EOFError, TimeoutError)):
            await connect(
                f"ws://127.0.0.1:{gw.port}/ocpp/CP-TLS",
                open_timeout=5,
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                additional_headers=basic_auth("CP-TLS"),
            )


# ------------------------------------------------------------------ idTag decisions


def start16(tag: str, connector: int = 1) -> dict[str, Any]:
    return {"connectorId": connector, "idTag": tag, "meterStart": 0, "timestamp": NOW}


def _add_the_16_tokens(clean_db: str) -> None:
    past = datetime.now(UTC) - timedelta(days=1)
    add_id_tag(clean_db, "T16-BLOCKED", status="Blocked")
    add_id_tag(clean_db, "T16-EXPIRED", expiry_date=past)
    add_id_tag(clean_db, "T16-OK", parent_id_tag="FLEET-A")
    add_id_tag(clean_db, "T16-MATE", parent_id_tag="FLEET-A")
    add_id_tag(clean_db, "T16-BADGROUP", parent_id_tag="FLEET-B")
    add_id_tag(clean_db, "FLEET-B", status="Blocked")


async def _id_tag_info(
    ws: ClientConnection, action: str, payload: dict[str, Any]
) -> dict[str, Any]:
    frame = await rpc(ws, action, payload)
    assert frame[0] == 3, frame
    return dict(frame[2]["idTagInfo"])


async def _check_the_16_token_statuses(a: ClientConnection, b: ClientConnection) -> None:
    info = _id_tag_info
    assert await info(a, "Authorize", {"idTag": "T16-BLOCKED"}) == {"status": "Blocked"}
    assert await info(a, "Authorize", {"idTag": "T16-EXPIRED"}) == {"status": "Expired"}
    assert await info(a, "Authorize", {"idTag": "T16-NOBODY"}) == {"status": "Invalid"}
    assert await info(a, "Authorize", {"idTag": "T16-BADGROUP"}) == {"status": "Blocked"}
    # Tags sharing a parent are a group: both answered with the parent.
    assert await info(a, "Authorize", {"idTag": "T16-OK"}) == {
        "status": "Accepted",
        "parentIdTag": "FLEET-A",
    }
    assert await info(b, "Authorize", {"idTag": "T16-MATE"}) == {
        "status": "Accepted",
        "parentIdTag": "FLEET-A",
    }
    assert (await info(a, "StartTransaction", start16("T16-BLOCKED")))["status"] == "Blocked"


async def _check_the_16_concurrent_starts(a: ClientConnection, b: ClientConnection) -> None:
    info = _id_tag_info
    first = await rpc(a, "StartTransaction", start16("T16-OK"))
    assert first[2]["idTagInfo"] == {"status": "Accepted", "parentIdTag": "FLEET-A"}
    # The same card at another station while the first transaction runs.
    assert await info(b, "StartTransaction", start16("T16-OK")) == {
        "status": "ConcurrentTx",
        "parentIdTag": "FLEET-A",
    }
    # Authorize is not refused (the driver may want to stop the running one) ...
    assert (await info(b, "Authorize", {"idTag": "T16-OK"}))["status"] == "Accepted"
    # ... a retried start on the same connector is not concurrent, another one is.
    again = await rpc(a, "StartTransaction", start16("T16-OK"))
    assert again[2]["idTagInfo"]["status"] == "Accepted"
    tx = again[2]["transactionId"]
    assert (await info(a, "StartTransaction", start16("T16-OK", 2)))["status"] == "ConcurrentTx"
    # A group member is a different card: not concurrent.
    assert (await info(b, "StartTransaction", start16("T16-MATE")))["status"] == "Accepted"
    stop = await rpc(a, "StopTransaction", {"transactionId": tx, "meterStop": 10, "timestamp": NOW})
    assert stop[0] == 3
    assert (await info(b, "StartTransaction", start16("T16-OK")))["status"] == "Accepted"


async def test_16_tokens_blocked_expired_invalid_concurrent_and_groups(
    gateway: Gateway, broker: EmbeddedBroker, topics: Topics, clean_db: str
) -> None:
    _add_the_16_tokens(clean_db)
    a = await open_station(gateway, "CP-16-A")
    b = await open_station(gateway, "CP-16-B")
    try:
        await _check_the_16_token_statuses(a, b)
        await _check_the_16_concurrent_starts(a, b)
    finally:
        await a.close()
        await b.close()
    got = poll_until(
        lambda: [e for e in alerts(broker, topics) if e.payload["alert"] == "concurrent_id_tag"],
        lambda a: len(a) >= 2,
        20,
        "concurrent idTag alerts",
    )
    assert got[0].charge_point_id == "CP-16-B"
    assert got[0].payload["id_tag"] == "T16-OK"
    assert got[0].payload["other_charge_point_id"] == "CP-16-A"


def tx201(event: str, tx: str, token: str | None, evse: int = 1, seq: int = 0) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": event,
        "timestamp": NOW,
        "triggerReason": "Authorized",
        "seqNo": seq,
        "transactionInfo": {"transactionId": tx},
        "evse": {"id": evse, "connectorId": 1},
    }
    if token is not None:
        payload["idToken"] = {"idToken": token, "type": "ISO14443"}
    return payload


async def test_201_tokens_blocked_expired_invalid_concurrent_and_groups(
    gateway: Gateway, clean_db: str
) -> None:
    add_id_tag(clean_db, "T2-BLOCKED", status="Blocked")
    add_id_tag(clean_db, "T2-EXPIRED", status="Expired")
    add_id_tag(clean_db, "T2-OK", parent_id_tag="GROUP-2")
    a = await open_station(gateway, "CS-2-A", ("ocpp2.0.1",))
    b = await open_station(gateway, "CS-2-B", ("ocpp2.0.1",))
    try:

        async def info(
            ws: ClientConnection, action: str, payload: dict[str, Any]
        ) -> dict[str, Any]:
            frame = await rpc(ws, action, payload)
            assert frame[0] == 3, frame
            return dict(frame[2]["idTokenInfo"])

        def tok(value: str) -> dict[str, Any]:
            return {"idToken": {"idToken": value, "type": "ISO14443"}}

        assert (await info(a, "Authorize", tok("T2-BLOCKED")))["status"] == "Blocked"
        assert (await info(a, "Authorize", tok("T2-EXPIRED")))["status"] == "Expired"
        assert (await info(a, "Authorize", tok("T2-NOBODY")))["status"] == "Invalid"
        assert await info(a, "Authorize", tok("T2-OK")) == {
            "status": "Accepted",
            "groupIdToken": {"idToken": "GROUP-2", "type": "Central"},
        }
        assert (await info(a, "TransactionEvent", tx201("Started", "TX-A", "T2-OK")))[
            "status"
        ] == "Accepted"
        # Repeating the token in the same transaction is fine; elsewhere it is concurrent.
        assert (await info(a, "TransactionEvent", tx201("Updated", "TX-A", "T2-OK", seq=1)))[
            "status"
        ] == "Accepted"
        concurrent = await info(b, "TransactionEvent", tx201("Started", "TX-B", "T2-OK"))
        assert concurrent == {
            "status": "ConcurrentTx",
            "groupIdToken": {"idToken": "GROUP-2", "type": "Central"},
        }
        ended = await rpc(a, "TransactionEvent", tx201("Ended", "TX-A", None, seq=2))
        assert ended == [3, ended[1], {}]
        assert (await info(b, "TransactionEvent", tx201("Updated", "TX-B", "T2-OK", seq=1)))[
            "status"
        ] == "Accepted"
    finally:
        await a.close()
        await b.close()


# ------------------------------------------------------------------ abuse limits


async def test_a_flooding_station_does_not_starve_another(gateway: Gateway) -> None:
    flood = await open_station(gateway, "CP-FLOOD")
    calm = await open_station(gateway, "CP-CALM")
    answers = 0

    async def send_flood() -> None:
        for n in range(5000):
            await flood.send(json.dumps([2, f"f{n}", "Heartbeat", {}]))

    async def drain_flood() -> None:
        nonlocal answers
        async for _ in flood:
            answers += 1

    sender = asyncio.create_task(send_flood())
    drainer = asyncio.create_task(drain_flood())
    latencies: list[float] = []
    try:
        deadline = time.monotonic() + 20
        while answers < 50:  # the flood is in full swing
            assert time.monotonic() < deadline, "the flooding station got no answers"
            assert not drainer.done()
            await asyncio.sleep(0.01)
        for n in range(40):
            started = time.perf_counter()
            frame = await rpc(
                calm,
                "MeterValues",
                {
                    "connectorId": 1,
                    "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": str(n)}]}],
                },
            )
            latencies.append(time.perf_counter() - started)
            assert frame[0] == 3
    finally:
        sender.cancel()
        drainer.cancel()
        await asyncio.gather(sender, drainer, return_exceptions=True)
        await flood.close()
        await calm.close()
    p95 = statistics.quantiles(latencies, n=20)[-1]
    assert p95 < 0.5, latencies
    # The flood was slowed down (read later), not answered at wire speed.
    assert gateway.metrics.throttled._value.get() > 0
    assert answers < 5000


# ------------------------------------------------------------------ liveness


async def test_offline_after_the_grace_period_online_again_on_reconnect(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    cfg = gateway_config(broker, clean_db, topics, offline_grace_s=0.5)
    async with Gateway(cfg) as gw:
        ws = await open_station(gw, "CP-LIVE")
        await apoll(
            lambda: db.execute(
                "SELECT gateway_id FROM station_connections WHERE charge_point_id = 'CP-LIVE'"
            ).fetchone(),
            lambda row: row == (gw.gateway_id,),
            20,
            "the connection row",
        )
        await ws.close()
        events = await apoll(
            lambda: connection_events(broker, topics, "CP-LIVE"),
            lambda e: len(e) >= 2,
            20,
            "online and offline",
        )
        assert [e.payload["state"] for e in events] == ["online", "offline"]
        assert events[0].payload == {
            "state": "online",
            "reason": "connected",
            "gateway_id": gw.gateway_id,
        }
        assert events[1].payload["reason"] == "connection closed (code 1000)"
        assert events[1].ocpp_version == "1.6"
        assert db.execute("SELECT count(*) FROM station_connections").fetchone() == (0,)
        # (the row goes before the grace period starts)

        # Back within the grace period: online again and no offline in between.
        url = f"{gw.url}/CP-LIVE"
        ws = await accepted(url, basic_auth("CP-LIVE"))
        await ws.close()
        ws = await accepted(url, basic_auth("CP-LIVE"))
        try:
            events = await apoll(
                lambda: connection_events(broker, topics, "CP-LIVE"),
                lambda e: len(e) >= 4,
                20,
                "two more online events",
            )
            assert [e.payload["state"] for e in events] == ["online", "offline", "online", "online"]
            assert (await rpc(ws, "Heartbeat", {}))[0] == 3
        finally:
            await ws.close()
        events = await apoll(
            lambda: connection_events(broker, topics, "CP-LIVE"),
            lambda e: len(e) >= 5,
            20,
            "the last offline",
        )
        assert events[-1].payload["state"] == "offline"


async def test_a_silent_station_is_disconnected_and_goes_offline(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    cfg = gateway_config(
        broker,
        clean_db,
        topics,
        heartbeat_interval_s=1,
        silence_timeout_factor=0.5,
        offline_grace_s=0.2,
    )
    async with Gateway(cfg) as gw:
        ws = await open_station(gw, "CP-QUIET")
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(20):
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1000
        events = await apoll(
            lambda: connection_events(broker, topics, "CP-QUIET"),
            lambda e: len(e) >= 2,
            20,
            "offline after silence",
        )
        assert events[-1].payload["state"] == "offline"
        assert events[-1].payload["reason"] == "silent for 0.5 s"


async def test_pending_offline_is_published_when_the_gateway_stops(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    cp_id = f"CP-STOP-{uuid.uuid4().hex[:6]}"
    cfg = gateway_config(broker, clean_db, topics, offline_grace_s=3600)
    async with Gateway(cfg) as gw:
        ws = await open_station(gw, cp_id)
        assert (await rpc(ws, "Heartbeat", {}))[0] == 3
    events = poll_until(
        lambda: connection_events(broker, topics, cp_id),
        lambda e: len(e) >= 2,
        20,
        "offline at shutdown",
    )
    assert events[-1].payload["state"] == "offline"
    assert events[-1].payload["reason"] == "gateway stopping"


async def test_a_sweep_during_a_connect_does_not_re_register_the_station(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    """The replica's own sweep (restore_own) runs while a station's connect is being
    recorded: the station is held but its row is not written yet. It must not be
    taken for a swept row (re-recorded, a second online published). The connect is
    held at the station's liveness lock while the sweep looks at the rows."""
    cfg = gateway_config(broker, clean_db, topics, replica_heartbeat_s=3600)
    async with Gateway(cfg) as gw:
        assert gw.liveness is not None
        liveness = gw.liveness
        await provision(gw, "CP-RACE")
        lock = liveness._lock("CP-RACE")
        await lock.acquire()
        try:
            ws = await accepted(f"{gw.url}/CP-RACE", basic_auth("CP-RACE"))
            await apoll(
                lambda: gw.held_stations(),
                lambda held: "CP-RACE" in held,
                20,
                "the connection held, its connect waiting for the lock",
            )
            sweep = asyncio.create_task(liveness.restore_own(gw.held_stations))
            # Both wait for the station's lock: the connect first, then the sweep
            # (whose look at the rows found none) -- or the sweep already skipped it.
            await apoll(
                lambda: len(lock._waiters or ()),
                lambda n: n >= 2 or sweep.done(),
                20,
                "the sweep at the station's lock",
            )
        finally:
            lock.release()
        try:
            assert await sweep == []
            assert (await rpc(ws, "Heartbeat", {}))[0] == 3
            events = await apoll(
                lambda: connection_events(broker, topics, "CP-RACE"),
                lambda e: len(e) >= 1,
                20,
                "the online event",
            )
            # A second look once the connect is recorded: still nothing to restore.
            assert await liveness.restore_own(gw.held_stations) == []
        finally:
            await ws.close()
    events = poll_until(
        lambda: connection_events(broker, topics, "CP-RACE"),
        lambda e: len(e) >= 2,
        20,
        "online and offline",
    )
    assert [(e.payload["state"], e.payload["reason"]) for e in events][:1] == [
        ("online", "connected")
    ]
    assert [e.payload["state"] for e in events] == ["online", "offline"]
