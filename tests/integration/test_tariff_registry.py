"""Where tariffs live and which one applies, against the real database: versions are new
rows that never change and keep their numbers exact; the most specific assignment valid
at the session's start wins (connector > station > site > everywhere, the driver's group
first at each level), windows inclusive at valid_from and exclusive at valid_until;
overlapping assignments are refused; roles; a driver's quote is used at most once."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from billing.preview import decode_json
from store import id_tokens as token_store
from store import quotes as quote_store
from store import tariff_assignments as assignment_store
from store import tariffs as tariff_store
from store.id_tokens import add_id_tag
from store.sites import site_time_zone, upsert_site
from store.stations import provision_station
from tests.support.api import api_client, assert_problem, auth
from tests.support.billing import component, element, tariff_json

pytestmark = pytest.mark.integration

# Assignments and tariff windows in the future: a version counts only from when it was
# stored (created_at, the database clock), so the tests resolve after "now".
T1 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)
T2 = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
T3 = datetime(2031, 9, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)


def iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def priced(tariff_id: str, price: str = "0.30", **fields: Any) -> dict[str, Any]:
    return tariff_json(element(component("ENERGY", price)), id=tariff_id, **fields)


@pytest.fixture
async def client(clean_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(clean_db) as api:
        yield api


@pytest.fixture
async def conn(clean_db: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as db:
        yield db


async def post_tariff(
    client: httpx.AsyncClient, key: str, body: dict[str, Any] | str
) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return await client.post(
        "/v1/tariffs",
        content=content,
        headers={**auth(key), "Content-Type": "application/json"},
    )


async def stored(client: httpx.AsyncClient, key: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = await post_tariff(client, key, body)
    assert resp.status_code == 201, resp.text
    created: dict[str, Any] = decode_json(resp.content, "response")
    return created


async def assign(
    client: httpx.AsyncClient, key: str, tariff_id: str, scope: str, target: str | None, **more: Any
) -> httpx.Response:
    body = {"tariff_id": tariff_id, "scope": scope, "target": target, **more}
    return await client.post("/v1/tariff-assignments", json=body, headers=auth(key))


async def assigned(
    client: httpx.AsyncClient, key: str, tariff_id: str, scope: str, target: str | None, **more: Any
) -> dict[str, Any]:
    resp = await assign(client, key, tariff_id, scope, target, **more)
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def resolve(client: httpx.AsyncClient, key: str, **query: Any) -> httpx.Response:
    return await client.get("/v1/tariffs/resolve", params=query, headers=auth(key))


async def resolved_id(client: httpx.AsyncClient, key: str, **query: Any) -> str:
    resp = await resolve(client, key, **query)
    assert resp.status_code == 200, resp.text
    tariff_id: str = resp.json()["tariff"]["tariff_id"]
    return tariff_id


# --------------------------------------------------------------------------- versions


async def test_versions_are_new_rows_that_never_change(
    client: httpx.AsyncClient, keys: dict[str, str], clean_db: str
) -> None:
    billing = keys["billing"]
    # Prices as a JSON number with trailing zeros and as a string: both kept exactly.
    first = priced("STD")
    first["elements"][0]["price_components"][0]["price"] = "0.2500"
    raw = json.dumps(first).replace('"0.2500"', "0.2500")
    resp = await post_tariff(client, billing, raw)
    assert resp.status_code == 201, resp.text
    v1 = decode_json(resp.content, "response")
    assert (v1["tariff_id"], v1["version"], v1["currency"]) == ("STD", 1, "EUR")
    assert v1["created_by"] == "test-billing"
    assert b'"price":0.2500' in resp.content  # an exact JSON number, never a float

    v2 = await stored(client, keys["admin"], priced("STD", "0.35"))
    assert (v2["version"], v2["created_by"]) == (2, "test-admin")

    latest = await client.get("/v1/tariffs/STD", headers=auth(keys["operator"]))
    assert latest.status_code == 200, latest.text
    assert latest.json()["version"] == 2
    old = await client.get("/v1/tariffs/STD", params={"version": 1}, headers=auth(billing))
    old_price = decode_json(old.content, "v1")["tariff"]["elements"][0]["price_components"][0]
    assert str(old_price["price"]) == "0.2500"
    versions = await client.get("/v1/tariffs/STD/versions", headers=auth(billing))
    assert [v["version"] for v in versions.json()["versions"]] == [1, 2]

    # The table itself refuses to change a stored version.
    with psycopg.connect(clean_db, autocommit=True) as db, pytest.raises(psycopg.Error) as err:
        db.execute("UPDATE tariffs SET body = '{}' WHERE tariff_id = 'STD' AND version = 1")
    assert "immutable" in str(err.value)
    again = await client.get("/v1/tariffs/STD", params={"version": 1}, headers=auth(billing))
    assert decode_json(again.content, "v1") == decode_json(old.content, "v1")

    assert_problem(
        await client.get("/v1/tariffs/STD", params={"version": 3}, headers=auth(billing)), 404
    )
    assert_problem(await client.get("/v1/tariffs/NOPE/versions", headers=auth(billing)), 404)


async def test_concurrent_writers_of_one_id_get_versions_one_after_the_other(
    clean_db: str,
) -> None:
    async def store_one(price: str) -> int:
        async with await psycopg.AsyncConnection.connect(clean_db, autocommit=True) as db:
            record = await tariff_store.create_tariff(db, priced("SAME", price), created_by="t")
            return record.version

    versions = await asyncio.gather(*(store_one(f"0.{n}0") for n in range(1, 7)))
    assert sorted(versions) == [1, 2, 3, 4, 5, 6]


async def test_listing_pages_through_the_latest_versions(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    for tariff_id in ("A", "B", "C"):
        await stored(client, keys["billing"], priced(tariff_id))
    await stored(client, keys["billing"], priced("B", "0.40"))
    first = await client.get("/v1/tariffs", params={"limit": 2}, headers=auth(keys["operator"]))
    page = first.json()
    assert [(t["tariff_id"], t["version"]) for t in page["items"]] == [("A", 1), ("B", 2)]
    assert page["next_cursor"] == "B"
    rest = await client.get(
        "/v1/tariffs", params={"limit": 2, "cursor": "B"}, headers=auth(keys["operator"])
    )
    assert [t["tariff_id"] for t in rest.json()["items"]] == ["C"]
    assert rest.json()["next_cursor"] is None


async def test_an_invalid_tariff_is_a_422_naming_the_field(
    client: httpx.AsyncClient, keys: dict[str, str], clean_db: str
) -> None:
    key = keys["billing"]
    bad_currency = assert_problem(await post_tariff(client, key, priced("X", currency="EURO")), 422)
    assert "currency" in bad_currency["detail"]
    no_elements = {k: v for k, v in priced("X").items() if k != "elements"}
    assert (
        "elements: Field required"
        in assert_problem(await post_tariff(client, key, no_elements), 422)["detail"]
    )
    negative = priced("X", "-1")
    assert (
        "elements.0.price_components.0.price"
        in assert_problem(await post_tariff(client, key, negative), 422)["detail"]
    )
    nul = priced("X", tariff_alt_text=[{"language": "en", "text": "a\u0000b"}])
    assert (
        "tariff_alt_text.0.text"
        in assert_problem(await post_tariff(client, key, nul), 422)["detail"]
    )
    deep = priced("X", energy_mix={"x": json.loads("[" * 40 + "]" * 40)})
    assert "nested deeper" in assert_problem(await post_tariff(client, key, deep), 422)["detail"]
    assert "not valid JSON" in assert_problem(await post_tariff(client, key, "{"), 422)["detail"]
    assert "id" in assert_problem(await post_tariff(client, key, priced("a/b")), 422)["detail"]
    assert_problem(await post_tariff(client, key, priced("resolve")), 422)
    assert_problem(await post_tariff(client, key, "[1]"), 422)
    with psycopg.connect(clean_db) as db:
        assert db.execute("SELECT count(*) FROM tariffs").fetchone() == (0,)


async def test_roles(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    for role in ("operator", "maintenance", "public"):
        assert_problem(await post_tariff(client, keys[role], priced("R")), 403)
    await stored(client, keys["billing"], priced("R"))
    await stored(client, keys["admin"], priced("R"))
    for role in ("billing", "operator", "admin"):
        resp = await client.get("/v1/tariffs/R", headers=auth(keys[role]))
        assert resp.status_code == 200, (role, resp.text)
    for role in ("maintenance", "public"):
        assert_problem(await client.get("/v1/tariffs/R", headers=auth(keys[role])), 403)
        assert_problem(await resolve(client, keys[role], station="CP-1"), 403)
        assert_problem(await client.get("/v1/tariff-assignments", headers=auth(keys[role])), 403)
    assert_problem(await client.get("/v1/tariffs"), 401)
    assert_problem(await assign(client, keys["operator"], "R", "default", None), 403)
    made = await assigned(client, keys["billing"], "R", "default", None)
    assert made["created_by"] == "test-billing"
    gone = f"/v1/tariff-assignments/{made['assignment_id']}"
    assert_problem(await client.delete(gone, headers=auth(keys["operator"])), 403)
    ended = await client.delete(gone, headers=auth(keys["admin"]))
    assert ended.status_code == 200, ended.text
    assert ended.json()["ended_by"] == "test-admin"


# --------------------------------------------------------------------------- resolution


async def test_the_most_specific_assignment_wins_and_the_group_first_at_its_level(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    clean_db: str,
    conn: psycopg.AsyncConnection[Any],
) -> None:
    key = keys["billing"]
    upsert_site(clean_db, "S", "Site", None)
    provision_station(clean_db, "CP-1", "S")
    provision_station(clean_db, "CP-2", "S")
    for tariff_id in ("DEFAULT", "FLEET", "SITE", "SITE-FLEET", "STATION", "STATION-FLEET", "CONN"):
        await stored(client, key, priced(tariff_id))
    await assigned(client, key, "DEFAULT", "default", None, valid_from=iso(T1))
    await assigned(client, key, "FLEET", "customer_group", "fleet", valid_from=iso(T1))
    await assigned(client, key, "SITE", "site", "S", valid_from=iso(T1))
    await assigned(client, key, "STATION", "station", "CP-1", valid_from=iso(T1))
    await assigned(
        client, key, "STATION-FLEET", "station", "CP-1", customer_group="fleet", valid_from=iso(T1)
    )
    await assigned(client, key, "CONN", "connector", "CP-1:1", valid_from=iso(T1))
    at = iso(T2)

    async def winner(**query: Any) -> str:
        return await resolved_id(client, keys["operator"], at=at, **query)

    assert await winner(station="CP-1", connector=1) == "CONN"
    assert await winner(station="CP-1", connector=2) == "STATION"
    assert await winner(station="CP-2", connector=1) == "SITE"
    assert await winner(station="CP-9", connector=1) == "DEFAULT"  # unknown station: no site
    # The driver's group beats no group at the same level and below, not above.
    assert await winner(station="CP-1", connector=2, customer_group="fleet") == "STATION-FLEET"
    assert await winner(station="CP-1", connector=1, customer_group="fleet") == "CONN"
    assert await winner(station="CP-2", customer_group="fleet") == "SITE"
    assert await winner(station="CP-9", customer_group="fleet") == "FLEET"
    assert await winner(station="CP-9", customer_group="other") == "DEFAULT"
    await assigned(
        client, key, "SITE-FLEET", "site", "S", customer_group="fleet", valid_from=iso(T1)
    )
    assert await winner(station="CP-2", customer_group="fleet") == "SITE-FLEET"
    assert await winner(station="CP-2", customer_group="other") == "SITE"

    why = (
        await resolve(client, key, station="CP-1", connector=2, customer_group="fleet", at=at)
    ).json()
    assert why["precedence"] == 5
    assert why["assignment"]["scope"] == "station"
    assert why["assignment"]["customer_group"] == "fleet"
    assert why["site_id"] == "S"
    assert "station" in why["reason"]

    applied = await assignment_store.tariff_for(conn, "CP-1", 1, None, T2)
    assert applied is not None
    tariff, tariff_id, version = applied
    assert (tariff_id, version, tariff.id) == ("CONN", 1, "CONN")
    assert tariff.elements[0].price_components[0].price == Decimal("0.30")


async def test_validity_windows_at_their_edges(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    key = keys["billing"]
    for tariff_id in ("DEFAULT", "WINDOW"):
        await stored(client, key, priced(tariff_id))
    await assigned(client, key, "DEFAULT", "default", None, valid_from=iso(T1 - timedelta(days=1)))
    await assigned(
        client, key, "WINDOW", "station", "CP-1", valid_from=iso(T1), valid_until=iso(T2)
    )
    expected = {
        T1 - US: "DEFAULT",
        T1: "WINDOW",  # valid_from inclusive
        T2 - US: "WINDOW",
        T2: "DEFAULT",  # valid_until exclusive
    }
    for at, tariff_id in expected.items():
        assert await resolved_id(client, key, station="CP-1", at=iso(at)) == tariff_id, at
    assert_problem(await resolve(client, key, station="CP-1", at=iso(T1 - timedelta(days=2))), 404)
    only_window = await client.get(
        "/v1/tariff-assignments", params={"active_at": iso(T2 - US)}, headers=auth(key)
    )
    assert [a["tariff_id"] for a in only_window.json()["items"]] == ["DEFAULT", "WINDOW"]
    after = await client.get(
        "/v1/tariff-assignments", params={"active_at": iso(T2)}, headers=auth(key)
    )
    assert [a["tariff_id"] for a in after.json()["items"]] == ["DEFAULT"]


async def test_the_version_is_the_latest_in_force_and_stored_by_then(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    key = keys["billing"]
    await stored(client, key, priced("T", "0.30"))
    # Version 2 takes effect at T2 (OCPI start_date_time); version 3 ended before T1.
    await stored(client, key, priced("T", "0.40", start_date_time=iso(T2)))
    await stored(client, key, priced("T", "0.50", end_date_time=iso(T1)))
    await assigned(client, key, "T", "default", None, valid_from="2020-01-01T00:00:00Z")

    async def version_at(at: datetime) -> int:
        resp = await resolve(client, key, station="CP-1", at=iso(at))
        assert resp.status_code == 200, resp.text
        version: int = resp.json()["tariff"]["version"]
        return version

    assert await version_at(T1 - US) == 3
    assert await version_at(T1) == 1
    assert await version_at(T2 - US) == 1
    assert await version_at(T2) == 2
    # A session that started before any version was stored has none to be priced under.
    missing = await resolve(client, key, station="CP-1", at="2021-01-01T00:00:00Z")
    assert_problem(missing, 404)


async def test_a_lower_assignment_applies_when_the_higher_ones_tariff_is_not_in_force(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    key = keys["billing"]
    await stored(client, key, priced("LATER", start_date_time=iso(T3)))
    await stored(client, key, priced("DEFAULT"))
    await assigned(client, key, "LATER", "station", "CP-1", valid_from=iso(T1))
    await assigned(client, key, "DEFAULT", "default", None, valid_from=iso(T1))
    resp = await resolve(client, key, station="CP-1", at=iso(T2))
    assert resp.json()["tariff"]["tariff_id"] == "DEFAULT"
    assert [a["tariff_id"] for a in resp.json()["passed_over"]] == ["LATER"]
    assert await resolved_id(client, key, station="CP-1", at=iso(T3)) == "LATER"


# --------------------------------------------------------------------------- assignments


async def test_overlapping_assignments_are_refused(
    client: httpx.AsyncClient, keys: dict[str, str], clean_db: str
) -> None:
    key = keys["billing"]
    await stored(client, key, priced("A"))
    open_ended = await assigned(client, key, "A", "station", "CP-1", valid_from=iso(T1))
    overlap = await assign(
        client, key, "A", "station", "CP-1", valid_from=iso(T2), valid_until=iso(T3)
    )
    assert "end it first" in assert_problem(overlap, 409)["detail"]
    # Adjacent windows do not overlap (valid_until is exclusive); another group or
    # another target is another slot.
    await assigned(
        client, key, "A", "station", "CP-1", valid_from=iso(T1 - US * 10), valid_until=iso(T1)
    )
    await assigned(client, key, "A", "station", "CP-1", customer_group="fleet", valid_from=iso(T2))
    await assigned(client, key, "A", "station", "CP-2", valid_from=iso(T2))
    await assigned(client, key, "A", "customer_group", "fleet", valid_from=iso(T2))
    assert_problem(
        await assign(client, key, "A", "customer_group", "fleet", valid_from=iso(T3)), 409
    )
    # The database itself refuses an overlap, whoever writes.
    with (
        psycopg.connect(clean_db, autocommit=True) as db,
        pytest.raises(psycopg.errors.ExclusionViolation),
    ):
        db.execute(
            "INSERT INTO tariff_assignments (tariff_id, scope, target, valid_from, created_by)"
            " VALUES ('A', 'station', 'CP-1', %s, 'sql')",
            (T3,),
        )

    # Ending one that has not begun yet: valid_until = valid_from, it never applies, and
    # its slot is free again; ending it again changes nothing.
    path = f"/v1/tariff-assignments/{open_ended['assignment_id']}"
    ended = await client.delete(path, headers=auth(key))
    assert ended.status_code == 200, ended.text
    assert ended.json()["valid_until"] == ended.json()["valid_from"]
    assert ended.json()["ended_by"] == "test-billing"
    again = await client.delete(path, headers=auth(key))
    assert again.json() == ended.json()
    await assigned(client, key, "A", "station", "CP-1", valid_from=iso(T2), valid_until=iso(T3))
    history = await client.get(
        "/v1/tariff-assignments", params={"scope": "station", "target": "CP-1"}, headers=auth(key)
    )
    # The ended one is still there, besides the adjacent, the group's and the new one.
    listed = {a["assignment_id"]: a for a in history.json()["items"]}
    assert len(listed) == 4
    assert listed[open_ended["assignment_id"]] == ended.json()
    assert_problem(await client.delete("/v1/tariff-assignments/999999", headers=auth(key)), 404)


async def test_ending_a_running_assignment_keeps_its_past(
    client: httpx.AsyncClient, keys: dict[str, str], conn: psycopg.AsyncConnection[Any]
) -> None:
    key = keys["billing"]
    await stored(client, key, priced("A"))
    started = datetime.now(UTC) - timedelta(hours=1)
    made = await assignment_store.assign(
        conn,
        tariff_id="A",
        scope=tariff_store.Scope.DEFAULT,
        target=None,
        valid_from=started,
        created_by="test",
    )
    ended_at = datetime.now(UTC)
    ended = await assignment_store.end_assignment(
        conn, made.assignment_id, ended_by="test", at=ended_at
    )
    assert ended is not None
    assert (ended.valid_from, ended.valid_until, ended.ended_at) == (started, ended_at, ended_at)
    assert ended.active_at(ended_at - US)
    assert not ended.active_at(ended_at)


async def test_assignments_that_do_not_fit_are_a_422(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    key = keys["billing"]
    assert (
        "does not exist"
        in assert_problem(await assign(client, key, "NOPE", "default", None), 422)["detail"]
    )
    await stored(client, key, priced("A"))
    assert_problem(await assign(client, key, "A", "connector", "CP-1"), 422)
    assert_problem(await assign(client, key, "A", "default", "CP-1"), 422)
    assert_problem(await assign(client, key, "A", "station", None), 422)
    assert_problem(await assign(client, key, "A", "default", None, customer_group="fleet"), 422)
    backwards = await assign(client, key, "A", "site", "S", valid_from=iso(T2), valid_until=iso(T1))
    assert "valid_until" in assert_problem(backwards, 422)["detail"]
    assert_problem(await assign(client, key, "A", "site", "S", valid_from="2031-01-01"), 422)
    assert_problem(await assign(client, key, "A", "galaxy", "S"), 422)


# --------------------------------------------------------------------------- quotes and sites


async def test_a_quote_freezes_the_tariff_and_is_used_once(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    clean_db: str,
    conn: psycopg.AsyncConnection[Any],
) -> None:
    key = keys["billing"]
    add_id_tag(clean_db, "TAG-FLEET")
    assert await token_store.set_customer_group(conn, "TAG-FLEET", "fleet")
    assert not await token_store.set_customer_group(conn, "NO-SUCH-TAG", "fleet")
    await stored(client, key, priced("PUBLIC", "0.50"))
    await stored(client, key, priced("FLEET", "0.20"))
    await assigned(client, key, "PUBLIC", "default", None, valid_from="2020-01-01T00:00:00Z")
    await assigned(
        client, key, "FLEET", "customer_group", "fleet", valid_from="2020-01-01T00:00:00Z"
    )

    quote = await quote_store.create_quote(
        conn,
        charge_point_id="CP-1",
        connector_id=1,
        id_tag="TAG-FLEET",
        valid_for=timedelta(minutes=10),
    )
    assert quote is not None
    assert (quote.tariff_id, quote.tariff_version) == ("FLEET", 1)
    anonymous = await quote_store.create_quote(
        conn, charge_point_id="CP-1", connector_id=1, id_tag=None, valid_for=timedelta(minutes=10)
    )
    assert anonymous is not None
    assert anonymous.tariff_id == "PUBLIC"

    # A new version after the quote does not change what the driver was shown.
    await stored(client, key, priced("FLEET", "0.90"))
    frozen = await quote_store.get_quote(conn, quote.quote_id)
    assert frozen is not None
    assert frozen.tariff.elements[0].price_components[0].price == Decimal("0.20")

    session = uuid.uuid4()
    used = await quote_store.attach_quote_to_session(
        conn, quote.quote_id, session, quote.created_at
    )
    assert used.session_id == session
    with pytest.raises(tariff_store.QuoteError, match="used by session"):
        await quote_store.attach_quote_to_session(conn, quote.quote_id, uuid.uuid4())
    with pytest.raises(tariff_store.QuoteError, match="another quote"):
        await quote_store.attach_quote_to_session(conn, anonymous.quote_id, session)
    with pytest.raises(tariff_store.QuoteError, match="does not exist"):
        await quote_store.attach_quote_to_session(conn, uuid.uuid4(), uuid.uuid4())
    # Expiry: usable up to valid_until, exclusive.
    with pytest.raises(tariff_store.QuoteError, match="expired"):
        await quote_store.attach_quote_to_session(
            conn, anonymous.quote_id, uuid.uuid4(), anonymous.valid_until
        )
    assert anonymous.usable_at(anonymous.valid_until - US)
    late = await quote_store.attach_quote_to_session(
        conn, anonymous.quote_id, uuid.uuid4(), anonymous.valid_until - US
    )
    assert late.session_id is not None
    assert not late.usable_at(late.created_at)


async def test_no_quote_where_no_tariff_applies(conn: psycopg.AsyncConnection[Any]) -> None:
    quote = await quote_store.create_quote(
        conn, charge_point_id="CP-1", connector_id=1, id_tag=None, valid_for=timedelta(minutes=5)
    )
    assert quote is None


async def test_site_time_zones_are_iana_names(
    clean_db: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    upsert_site(clean_db, "S", "Site", None)
    assert await site_time_zone(conn, "S") == "UTC"
    upsert_site(clean_db, "S", "Site", 11_000, time_zone="Europe/Amsterdam")
    upsert_site(clean_db, "S", "Renamed", 11_000)  # None keeps the zone
    assert await site_time_zone(conn, "S") == "Europe/Amsterdam"
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        upsert_site(clean_db, "S", "Site", None, time_zone="Mars/Olympus")
    assert await site_time_zone(conn, "S") == "Europe/Amsterdam"
    assert await site_time_zone(conn, "NOPE") is None
