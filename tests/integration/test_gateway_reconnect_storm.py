"""Reconnect storms with real authentication: a cold storm (argon2 per login, nothing
verified before), a storm after a gateway restart (the verified credentials kept in
the database make it cost an HMAC per station: no argon2, no refusal, no lockout),
and password hashes upgraded to the current argon2 parameters at login."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import psycopg
import pytest
from argon2 import PasswordHasher
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from store.stations import PASSWORD_HASHER, hash_password
from tests.support.gateway import STATION_PASSWORD, basic_auth, gateway_config, rpc

pytestmark = pytest.mark.integration

STORM = 200
# Generous: ~200 argon2 verifications (tens of ms each, 4 at a time) on a shared
# 2-core machine, plus the retries after 503.
STORM_BOUND_S = 90.0


def provision_many(database_url: str, ids: list[str], password_hash: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO stations (charge_point_id, password_hash, security_profile) "
            "SELECT unnest(%s::text[]), %s, 1",
            (ids, password_hash),
        )


async def test_reconnect_storm_with_real_passwords_gets_everyone_in(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    """200 stations with real passwords connect at once to a gateway that verifies
    nothing from cache: each gets in, or is refused quickly with 503 + Retry-After
    (never a handshake timeout or a 401/429) and gets in when it retries."""
    ids = [f"STORM-{i:03d}" for i in range(STORM)]
    await asyncio.to_thread(provision_many, clean_db, ids, hash_password(STATION_PASSWORD))
    cfg = gateway_config(
        broker, clean_db, topics, max_pending_verifications=16, auth_failure_limit_ip=10
    )
    busy: list[int] = []
    refused_in_s: list[float] = []

    async with Gateway(cfg) as gw:

        async def station(cp_id: str) -> ClientConnection:
            for _ in range(50):
                started = time.monotonic()
                try:
                    return await connect(
                        f"{gw.url}/{cp_id}",
                        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                        additional_headers=basic_auth(cp_id),
                        open_timeout=60,
                    )
                except InvalidStatus as exc:
                    response = exc.response
                refused_in_s.append(time.monotonic() - started)
                assert response.status_code == 503, response.status_code
                retry_after = int(response.headers["Retry-After"])
                assert 1 <= retry_after <= 30
                busy.append(retry_after)
                await asyncio.sleep(retry_after)
            raise AssertionError(f"{cp_id} never got in")

        started = time.monotonic()
        connections = await asyncio.gather(*(station(cp_id) for cp_id in ids))
        elapsed = time.monotonic() - started
        try:
            assert len(connections) == STORM
            assert elapsed < STORM_BOUND_S, f"storm took {elapsed:.1f} s"
            assert sorted(gw.connected_stations) == sorted(ids)
            # Every station is served once in.
            answers = await asyncio.gather(*(rpc(ws, "Heartbeat", {}) for ws in connections[:20]))
            assert all(a[0] == 3 for a in answers)
            assert gw.authenticator is not None
            assert gw.authenticator.argon2_verifications >= STORM
            # More logins at once than slots + queue: some were turned away, fast.
            assert busy, "expected some 503s with 16 queued verifications at most"
            assert max(refused_in_s) < 10.0
            assert gw.registry.get_sample_value("chargeflow_gateway_busy_handshakes_total") == len(
                busy
            )
        finally:
            await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)


RESTART_STORM = 300
CACHE_KEY = "storm-test-auth-cache-key-0123456789abcdef"


async def connect_retrying(url: str, cp_id: str, statuses: list[int]) -> ClientConnection:
    """Connect, retrying after 503 + Retry-After; every refusal's status is noted."""
    for _ in range(50):
        try:
            return await connect(
                f"{url}/{cp_id}",
                subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                additional_headers=basic_auth(cp_id),
                open_timeout=60,
            )
        except InvalidStatus as exc:
            statuses.append(exc.response.status_code)
            if exc.response.status_code != 503:
                raise
            await asyncio.sleep(int(exc.response.headers["Retry-After"]))
    raise AssertionError(f"{cp_id} never got in")


async def test_reconnect_storm_after_a_restart_costs_no_argon2_and_locks_nobody_out(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    """300 stations logged in through one gateway (argon2 each); the gateway is
    replaced by a new one (same cache key, nothing in memory) and all 300 reconnect
    at once, with the default failure limits: every one is admitted at the first
    attempt, with no argon2 verification, no 429/503 and no security alert."""
    ids = [f"RESTART-{i:03d}" for i in range(RESTART_STORM)]
    await asyncio.to_thread(provision_many, clean_db, ids, hash_password(STATION_PASSWORD))
    cfg = gateway_config(broker, clean_db, topics, auth_cache_key=CACHE_KEY)
    first_statuses: list[int] = []
    async with Gateway(cfg) as gw:
        connections = await asyncio.gather(
            *(connect_retrying(gw.url, cp_id, first_statuses) for cp_id in ids)
        )
        assert gw.authenticator is not None
        assert gw.authenticator.argon2_verifications >= RESTART_STORM
    # (stopping the gateway closed every connection: the stations reconnect)
    await asyncio.gather(*(ws.close() for ws in connections), return_exceptions=True)
    assert set(first_statuses) <= {503}

    statuses: list[int] = []
    async with Gateway(cfg) as gw:
        outcomes = await asyncio.gather(
            *(connect_retrying(gw.url, cp_id, statuses) for cp_id in ids), return_exceptions=True
        )
        again = [c for c in outcomes if isinstance(c, ClientConnection)]
        try:
            assert [c for c in outcomes if isinstance(c, BaseException)][:3] == []
            assert set(statuses) <= {503}, statuses[:10]  # busy: retried, never refused
            assert sorted(gw.connected_stations) == sorted(ids)
            assert gw.authenticator is not None
            assert gw.authenticator.argon2_verifications == 0
            assert gw.authenticator.cached_logins == RESTART_STORM
            assert (
                gw.registry.get_sample_value(
                    "chargeflow_gateway_security_alerts_total",
                    {"alert": "repeated_failed_authentication"},
                )
                is None
            )
            answers = await asyncio.gather(*(rpc(ws, "Heartbeat", {}) for ws in again[:20]))
            assert all(a[0] == 3 for a in answers)
        finally:
            await asyncio.gather(*(ws.close() for ws in again), return_exceptions=True)
    row = db.execute(
        "SELECT count(*), max(auth_failures) FROM stations s JOIN "
        "station_verified_credentials USING (charge_point_id)"
    ).fetchone()
    assert row == (RESTART_STORM, 0)


async def test_old_argon2_parameters_are_rehashed_at_login(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    cp_id = f"REHASH-{uuid.uuid4().hex[:6]}"
    old_hash = PasswordHasher().hash(STATION_PASSWORD)  # argon2-cffi defaults: m=64 MiB
    assert PASSWORD_HASHER.check_needs_rehash(old_hash)
    await asyncio.to_thread(provision_many, clean_db, [cp_id], old_hash)
    async with Gateway(gateway_config(broker, clean_db, topics)) as gw:
        ws = await connect(
            f"{gw.url}/{cp_id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth(cp_id),
        )
        await ws.close()
        row = db.execute(
            "SELECT password_hash FROM stations WHERE charge_point_id = %s", (cp_id,)
        ).fetchone()
        assert row is not None
        new_hash = row[0]
        assert new_hash != old_hash
        assert "m=19456,t=2,p=1" in new_hash
        assert not PASSWORD_HASHER.check_needs_rehash(new_hash)
        assert PASSWORD_HASHER.verify(new_hash, STATION_PASSWORD)
        assert gw.registry.get_sample_value("chargeflow_gateway_rehashed_passwords_total") == 1
        # The upgraded hash keeps working (cache entry follows the new hash).
        ws = await connect(
            f"{gw.url}/{cp_id}",
            subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic_auth(cp_id),
        )
        assert (await rpc(ws, "Heartbeat", {}))[0] == 3
        await ws.close()
    new_station_hash = hash_password(STATION_PASSWORD)
    assert "m=19456,t=2,p=1" in new_station_hash
