"""An attacker who knows a station's id cannot lock the genuine station out: wrong
passwords cool down the source they come from, never the station id; a correct
password is admitted (from the station's known address even when that address is
cooling down); the limits raise security alerts. Real websockets from distinct
loopback source addresses (127.0.0.x), real broker and PostgreSQL, and gateway
restarts in between (the limiter's memory is gone, the database's is not)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from ingest.gateway.server import Gateway
from tests.support.gateway import alerts, basic_auth, gateway_config, provision, rpc
from tests.support.polling import apoll

pytestmark = pytest.mark.integration

GENUINE = "127.0.0.1"
ATTACKER = "127.0.0.2"
ELSEWHERE = "127.0.0.3"
CACHE_KEY = "test-gateway-auth-cache-key-0123456789"


async def login(
    gw: Gateway, cp_id: str, source: str, password: str | None = None
) -> ClientConnection:
    headers = basic_auth(cp_id) if password is None else basic_auth(cp_id, password)
    return await connect(
        f"{gw.url}/{cp_id}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers=headers,
        local_addr=(source, 0),
    )


async def status_of(gw: Gateway, cp_id: str, source: str, password: str | None = None) -> int:
    """HTTP status of a login attempt (101 when the upgrade went through)."""
    try:
        ws = await login(gw, cp_id, source, password)
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    await ws.close()
    return 101


async def served(gw: Gateway, cp_id: str, source: str) -> None:
    ws = await login(gw, cp_id, source)
    try:
        assert (await rpc(ws, "Heartbeat", {}))[0] == 3
    finally:
        await ws.close()


def limits(broker: EmbeddedBroker, database_url: str, topics: Topics, **overrides: Any) -> Any:
    overrides.setdefault("auth_failure_limit_station", 3)
    overrides.setdefault("auth_failure_limit_ip", 5)
    overrides.setdefault("auth_failure_delay_s", 0.05)
    overrides.setdefault("auth_cooldown_s", 300.0)
    return gateway_config(broker, database_url, topics, **overrides)


async def test_an_attack_on_a_station_id_after_a_restart_cools_the_attacker_not_the_station(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    cfg = limits(broker, clean_db, topics, auth_cache_key=CACHE_KEY)
    async with Gateway(cfg) as gw:
        await provision(gw, "CP-VICTIM")
        await served(gw, "CP-VICTIM", GENUINE)
    row = db.execute(
        "SELECT last_auth_ip FROM stations WHERE charge_point_id = 'CP-VICTIM'"
    ).fetchone()
    assert row == (GENUINE,)

    async with Gateway(cfg) as gw:  # restarted: nothing in memory
        assert gw.authenticator is not None
        answers = [
            await status_of(gw, "CP-VICTIM", ATTACKER, f"guess-number-{n:04d}-x") for n in range(12)
        ]
        assert answers == [401] * 5 + [429] * 7, answers
        verifications = gw.authenticator.argon2_verifications
        # The attacker's source stays cooled down, also with the right password (it
        # has no verified credential from there...)
        # ...but the genuine station gets in, from its address and from another one.
        await served(gw, "CP-VICTIM", GENUINE)
        await served(gw, "CP-VICTIM", ELSEWHERE)
        assert gw.authenticator.argon2_verifications == verifications  # HMAC, no argon2
        assert await status_of(gw, "CP-VICTIM", ATTACKER, "guess-number-9999-x") == 429

        got = await apoll(
            lambda: alerts(broker, topics), lambda a: len(a) >= 2, 20, "station and source alerts"
        )
        by_scope = {a.payload["scope"]: a for a in got}
        assert by_scope["station"].charge_point_id == "CP-VICTIM"
        assert by_scope["station"].payload["consequence"] == "slowed"
        assert by_scope["station"].payload["failures"] == 3
        assert by_scope["source_ip"].payload["source_ip"] == ATTACKER
        assert by_scope["source_ip"].payload["consequence"] == "cooled_down"


async def test_a_cooled_down_shared_address_still_admits_a_station_from_its_known_address(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    """Without a cache key nothing verified survives the restart, so the genuine
    station's password goes through argon2: it is verified because it comes from the
    station's known address, although that address (a NAT shared with the attacker)
    is cooling down; a station never seen there is refused with 429."""
    cfg = limits(broker, clean_db, topics)
    async with Gateway(cfg) as gw:
        await provision(gw, "CP-BEHIND-NAT")
        await provision(gw, "CP-NEW")
        await served(gw, "CP-BEHIND-NAT", GENUINE)

    async with Gateway(cfg) as gw:
        assert gw.authenticator is not None
        answers = [
            await status_of(gw, "CP-BEHIND-NAT", GENUINE, f"guess-number-{n:04d}-y")
            for n in range(8)
        ]
        # Attempts from the known address are always verified (slowed, not blocked).
        assert answers == [401] * 8, answers
        assert await status_of(gw, "CP-NEW", GENUINE) == 429  # the source is cooling down
        before = gw.authenticator.argon2_verifications
        await served(gw, "CP-BEHIND-NAT", GENUINE)
        assert gw.authenticator.argon2_verifications == before + 1
        # A wrong password from the known address is still a wrong password.
        assert await status_of(gw, "CP-BEHIND-NAT", GENUINE, "guess-number-0100-y") == 401
