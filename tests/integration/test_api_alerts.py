"""The alerts API against the real database: roles, filters, pagination, people's
actions and their audit trail, versions from the flow after a person acted, health."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from bus.alerts import AlertKind, AlertStatus, Severity
from store.stations import provision_station
from tests.support.alerts import AlertFacts, connector_health, fault_alert, write_alerts
from tests.support.api import T0, api_client, assert_problem, auth

pytestmark = pytest.mark.integration

OVERHEAT = AlertKind.CONNECTOR_OVERHEATING
UNKNOWN_ID = "0" * 24


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [item["alert_id"] for item in resp.json()["items"]]


def one_alert(clean_db: str, station: str = "CP-1", connector: int = 1) -> AlertFacts:
    facts = AlertFacts(station, connector, OVERHEAT, T0)
    write_alerts(clean_db, [fault_alert(facts)])
    return facts


async def test_roles(clean_db: str, keys: dict[str, str]) -> None:
    provision_station(clean_db, "CP-1")
    facts = one_alert(clean_db)
    paths = ("/v1/alerts", f"/v1/alerts/{facts.alert_id}", "/v1/stations/CP-1/health")
    actions = (f"/v1/alerts/{facts.alert_id}/acknowledge", f"/v1/alerts/{facts.alert_id}/resolve")
    async with api_client(clean_db) as client:
        for role in ("billing", "public"):
            for path in paths:
                resp = await client.get(path, headers=auth(keys[role]))
                assert role in assert_problem(resp, 403)["detail"], path
            for path in actions:
                resp = await client.post(path, headers=auth(keys[role]), json={"note": "x"})
                assert role in assert_problem(resp, 403)["detail"], path
        for path in paths:
            assert_problem(await client.get(path), 401)
        for path in actions:
            assert_problem(await client.post(path), 401)
        # Refused callers changed nothing.
        detail = (await client.get(paths[1], headers=auth(keys["admin"]))).json()
        assert detail["status"] == "open"
        assert [e["source"] for e in detail["history"]] == ["flow"]
        for role in ("maintenance", "operator", "admin"):
            for path in paths:
                resp = await client.get(path, headers=auth(keys[role]))
                assert resp.status_code == 200, (role, path, resp.text)
        # Each of the three roles may act; the key's name is the actor.
        for role, connector in (("maintenance", 2), ("operator", 3), ("admin", 4)):
            other = one_alert(clean_db, connector=connector)
            resp = await client.post(
                f"/v1/alerts/{other.alert_id}/acknowledge", headers=auth(keys[role])
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["acknowledged_by"] == f"test-{role}"
            resp = await client.post(
                f"/v1/alerts/{other.alert_id}/resolve", headers=auth(keys[role])
            )
            assert resp.json()["resolved_by"] == f"test-{role}"


def _filter_fixture(clean_db: str) -> dict[str, AlertFacts]:
    """Alerts on stations of two sites and one station never provisioned."""
    provision_station(clean_db, "CP-A", "SITE-1")
    provision_station(clean_db, "CP-B", "SITE-2")
    facts = {
        "a_hot": AlertFacts("CP-A", 1, OVERHEAT, T0),
        "a_ground": AlertFacts("CP-A", 2, AlertKind.GROUND_FAULT, T0 + timedelta(hours=1)),
        "b_meter": AlertFacts("CP-B", 1, AlertKind.METER_FAULT, T0 + timedelta(hours=2)),
        "b_hot": AlertFacts("CP-B", 2, OVERHEAT, T0 + timedelta(hours=3)),
        "c_comm": AlertFacts("CP-C", 0, AlertKind.COMM_DEGRADATION, T0 + timedelta(hours=4)),
    }
    write_alerts(
        clean_db,
        [
            fault_alert(facts["a_hot"], severity=Severity.MEDIUM),
            fault_alert(facts["a_ground"], severity=Severity.CRITICAL),
            fault_alert(
                facts["b_meter"],
                severity=Severity.LOW,
                status=AlertStatus.RESOLVED,
                after=timedelta(minutes=30),
            ),
            fault_alert(facts["b_hot"], severity=Severity.HIGH),
            fault_alert(facts["c_comm"], severity=Severity.MEDIUM),
        ],
    )
    return facts


async def test_every_filter(clean_db: str, keys: dict[str, str]) -> None:
    f = _filter_fixture(clean_db)
    newest_first = ["c_comm", "b_hot", "b_meter", "a_ground", "a_hot"]
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({}, newest_first),
        ({"station": "CP-A"}, ["a_ground", "a_hot"]),
        ({"station": "CP-C"}, ["c_comm"]),
        ({"station": "CP-Z"}, []),
        ({"site": "SITE-1"}, ["a_ground", "a_hot"]),
        ({"site": "SITE-2"}, ["b_hot", "b_meter"]),
        ({"site": "SITE-9"}, []),
        ({"kind": "connector_overheating"}, ["b_hot", "a_hot"]),
        ({"kind": "ground_fault"}, ["a_ground"]),
        ({"kind": "security"}, []),
        ({"severity": "medium"}, ["c_comm", "a_hot"]),
        ({"severity": "critical"}, ["a_ground"]),
        ({"status": "resolved"}, ["b_meter"]),
        ({"status": "open"}, ["c_comm", "b_hot", "a_ground", "a_hot"]),
        ({"status": "acknowledged"}, []),
        # since inclusive, until exclusive, on first_seen.
        ({"since": "2025-06-01T09:00:00Z"}, ["c_comm", "b_hot", "b_meter", "a_ground"]),
        ({"until": "2025-06-01T09:00:00Z"}, ["a_hot"]),
        (
            {"since": "2025-06-01T09:00:00Z", "until": "2025-06-01T11:00:00Z"},
            ["b_meter", "a_ground"],
        ),
        ({"since": "2025-06-01T10:30:00+02:00"}, newest_first[:4]),
        ({"site": "SITE-2", "kind": "connector_overheating", "status": "open"}, ["b_hot"]),
        ({"station": "CP-A", "severity": "medium", "until": "2025-06-01T08:00:01Z"}, ["a_hot"]),
    ]
    async with api_client(clean_db) as client:
        for params, expected in cases:
            resp = await client.get("/v1/alerts", params=params, headers=auth(keys["operator"]))
            assert ids(resp) == [f[name].alert_id for name in expected], params
        body = (
            await client.get("/v1/alerts", params={"site": "SITE-1"}, headers=auth(keys["admin"]))
        ).json()
        assert {item["site_id"] for item in body["items"]} == {"SITE-1"}
        assert body["next_cursor"] is None
        # An alert of a station that is on no site (or not provisioned) has no site.
        body = (
            await client.get("/v1/alerts", params={"station": "CP-C"}, headers=auth(keys["admin"]))
        ).json()
        assert body["items"][0]["site_id"] is None
        assert body["items"][0]["kind"] == "comm_degradation"
        assert body["items"][0]["connector_id"] == 0


async def test_pagination_walks_every_alert_once_in_order(
    clean_db: str, keys: dict[str, str]
) -> None:
    # 23 alerts; several share first_seen (ties broken by alert_id).
    facts = [
        AlertFacts(f"CP-{n % 4}", n, OVERHEAT, T0 + timedelta(minutes=10 * (n // 3)))
        for n in range(23)
    ]
    write_alerts(clean_db, [fault_alert(f) for f in facts])
    expected = [
        f.alert_id for f in sorted(facts, key=lambda f: (f.first_seen, f.alert_id), reverse=True)
    ]
    async with api_client(clean_db) as client:
        for limit in (1, 5, 22, 23, 100):
            seen: list[str] = []
            cursor: str | None = None
            pages = 0
            while True:
                params: dict[str, Any] = {"limit": limit}
                if cursor is not None:
                    params["cursor"] = cursor
                resp = await client.get("/v1/alerts", params=params, headers=auth(keys["admin"]))
                page = resp.json()
                seen += ids(resp)
                pages += 1
                assert len(page["items"]) <= limit
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert seen == expected, limit
            assert pages == -(-23 // limit)  # the last page is full or not, never empty
        # Filters hold across pages.
        seen, cursor = [], None
        while True:
            params = {"station": "CP-1", "limit": 2, **({"cursor": cursor} if cursor else {})}
            resp = await client.get("/v1/alerts", params=params, headers=auth(keys["admin"]))
            seen += ids(resp)
            cursor = resp.json()["next_cursor"]
            if cursor is None:
                break
        assert seen == [a for a in expected if a in {f.alert_id for f in facts[1::4]}]


async def test_invalid_input_is_a_422_problem(clean_db: str, keys: dict[str, str]) -> None:
    facts = one_alert(clean_db)
    key = auth(keys["maintenance"])
    bad_queries: list[tuple[dict[str, Any], str]] = [
        ({"kind": "overheating"}, "kind"),
        ({"severity": "urgent"}, "severity"),
        ({"status": "closed"}, "status"),
        ({"since": "2025-06-01"}, "since"),
        ({"since": "2025-06-01T08:00:00"}, "since"),  # no offset
        ({"until": "1700000000"}, "until"),
        ({"since": "2025-06-01T09:00:00Z", "until": "2025-06-01T09:00:00Z"}, "since"),
        ({"since": "2025-06-02T00:00:00Z", "until": "2025-06-01T00:00:00Z"}, "since"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"cursor": "nonsense"}, "cursor"),
        ({"cursor": f"12-{'0' * 32}"}, "cursor"),  # a sessions cursor
        ({"station": "CP\x00"}, "station"),
        ({"site": ""}, "site"),
    ]
    async with api_client(clean_db) as client:
        for params, name in bad_queries:
            resp = await client.get("/v1/alerts", params=params, headers=key)
            body = assert_problem(resp, 422)
            assert [e["name"] for e in body["errors"]] == [name], params
        for path in ("/v1/alerts/nothex", f"/v1/alerts/{'A' * 24}", f"/v1/alerts/{'0' * 25}"):
            assert_problem(await client.get(path, headers=key), 422)
            assert_problem(await client.post(f"{path}/resolve", headers=key), 422)
        action = f"/v1/alerts/{facts.alert_id}/acknowledge"
        for body_json in (
            {"note": "x" * 2001},
            {"note": "bell\x07"},
            {"note": "nul\x00"},
            {"note": 5},
            {"comment": "unknown field"},
            ["note"],
            "note",
        ):
            resp = await client.post(action, headers=key, json=body_json)
            assert_problem(resp, 422)
        resp = await client.post(
            action,
            headers={**key, "content-type": "application/json"},
            content=b'{"note": "\\ud800"}',
        )
        assert_problem(resp, 422)
        resp = await client.post(
            action, headers={**key, "content-type": "application/json"}, content=b"{not json"
        )
        assert_problem(resp, 422)
        # Nothing above touched the alert.
        detail = (await client.get(f"/v1/alerts/{facts.alert_id}", headers=key)).json()
        assert detail["status"] == "open"
        assert len(detail["history"]) == 1


async def test_unknown_alert_and_station_are_404(clean_db: str, keys: dict[str, str]) -> None:
    one_alert(clean_db, station="CP-GHOST")  # alerts of a station never provisioned
    key = auth(keys["operator"])
    async with api_client(clean_db) as client:
        assert (
            "not found"
            in assert_problem(await client.get(f"/v1/alerts/{UNKNOWN_ID}", headers=key), 404)[
                "detail"
            ]
        )
        for action in ("acknowledge", "resolve"):
            resp = await client.post(f"/v1/alerts/{UNKNOWN_ID}/{action}", headers=key)
            assert_problem(resp, 404)
        assert_problem(await client.get("/v1/stations/CP-GHOST/health", headers=key), 404)
        assert_problem(await client.get("/v1/stations/NOPE/health", headers=key), 404)


async def test_acknowledge_and_resolve_are_audited_once(
    clean_db: str, keys: dict[str, str], db: psycopg.Connection[Any]
) -> None:
    facts = one_alert(clean_db)
    base = f"/v1/alerts/{facts.alert_id}"
    maint, op = auth(keys["maintenance"]), auth(keys["operator"])
    async with api_client(clean_db) as client:
        before = datetime.now().astimezone()
        resp = await client.post(f"{base}/acknowledge", headers=maint, json={"note": "on my way\n"})
        assert resp.status_code == 200, resp.text
        acked = resp.json()
        assert acked["status"] == "acknowledged"
        assert acked["acknowledged_by"] == "test-maintenance"
        assert acked["note"] == "on my way\n"
        assert ts(acked["acknowledged_at"]) >= before - timedelta(seconds=5)
        # A repeat (another person, another note) changes nothing and records nothing.
        again = await client.post(f"{base}/acknowledge", headers=op, json={"note": "me too"})
        assert again.status_code == 200
        assert again.json() == acked
        # No body at all, and a null note, are accepted.
        resp = await client.post(f"{base}/resolve", headers=op)
        assert resp.status_code == 200, resp.text
        resolved = resp.json()
        assert resolved["status"] == "resolved"
        assert resolved["resolved_by"] == "test-operator"
        assert ts(resolved["resolved_at"]) >= ts(acked["acknowledged_at"])
        assert resolved["acknowledged_by"] == "test-maintenance"  # kept
        assert resolved["note"] == "on my way\n"  # no new note: the last one stays
        again = await client.post(f"{base}/resolve", headers=maint, json={"note": None})
        assert again.json() == resolved
        conflict = await client.post(f"{base}/acknowledge", headers=maint, json={"note": "x"})
        assert "resolved" in assert_problem(conflict, 409)["detail"]
        detail = (await client.get(base, headers=maint)).json()
    history = detail["history"]
    assert [(e["source"], e["action"], e["actor"], e["note"]) for e in history] == [
        ("flow", "opened", "model:connector", None),
        ("person", "acknowledged", "test-maintenance", "on my way\n"),
        ("person", "resolved", "test-operator", None),
    ]
    assert history[0]["evidence"]["summary"] == "connector hotter than its baseline"
    assert history[0]["at"] == detail["first_seen"]
    assert history[1]["evidence"] is None
    assert history[1]["status"] == "acknowledged"
    assert (history[2]["status"], history[2]["severity"]) == ("resolved", "high")
    assert ts(history[1]["at"]) == ts(acked["acknowledged_at"])
    assert ts(history[2]["at"]) == ts(resolved["resolved_at"])
    # The stored rows say the same (one audit row per action).
    rows = db.execute(
        "SELECT action, actor FROM alert_events WHERE alert_id = %s ORDER BY event_id",
        (facts.alert_id,),
    ).fetchall()
    assert rows == [
        ("opened", "model:connector"),
        ("acknowledged", "test-maintenance"),
        ("resolved", "test-operator"),
    ]


async def test_simultaneous_acknowledges_record_one_action(
    clean_db: str, keys: dict[str, str]
) -> None:
    facts = one_alert(clean_db)
    path = f"/v1/alerts/{facts.alert_id}"
    async with api_client(clean_db) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{path}/acknowledge", headers=auth(keys[role]))
                for role in ("maintenance", "operator", "admin") * 2
            )
        )
        assert {a.status_code for a in answers} == {200}
        assert len({a.json()["acknowledged_by"] for a in answers}) == 1
        history = (await client.get(path, headers=auth(keys["admin"]))).json()["history"]
    assert [e["action"] for e in history] == ["opened", "acknowledged"]


async def test_flow_versions_keep_a_persons_acknowledge_and_resolve(
    clean_db: str, keys: dict[str, str]
) -> None:
    acked, resolved = AlertFacts("CP-1", 1, OVERHEAT, T0), AlertFacts("CP-1", 2, OVERHEAT, T0)
    write_alerts(clean_db, [fault_alert(acked), fault_alert(resolved)])
    key = auth(keys["maintenance"])
    async with api_client(clean_db) as client:
        await client.post(f"/v1/alerts/{acked.alert_id}/acknowledge", headers=key)
        person = (await client.post(f"/v1/alerts/{resolved.alert_id}/resolve", headers=key)).json()
        # The flow publishes later versions of both: worse, then resolved by telemetry.
        later = timedelta(minutes=15)
        versions = [
            fault_alert(acked, after=later, severity=Severity.CRITICAL, summary="worse"),
            fault_alert(resolved, after=later, severity=Severity.CRITICAL, summary="worse"),
        ]
        write_alerts(clean_db, versions)
        write_alerts(clean_db, versions)  # a replay (at-least-once sink) adds nothing
        one = (await client.get(f"/v1/alerts/{acked.alert_id}", headers=key)).json()
        assert one["status"] == "acknowledged"
        assert (one["severity"], one["evidence"]["summary"]) == ("critical", "worse")
        assert ts(one["last_seen"]) == T0 + later
        assert [(e["source"], e["action"]) for e in one["history"]] == [
            ("flow", "opened"),
            ("person", "acknowledged"),
            ("flow", "updated"),
        ]
        two = (await client.get(f"/v1/alerts/{resolved.alert_id}", headers=key)).json()
        assert two["status"] == "resolved"
        assert (two["resolved_at"], two["resolved_by"]) == (
            person["resolved_at"],
            "test-maintenance",
        )
        assert [e["action"] for e in two["history"]] == ["opened", "resolved", "updated"]
        # The flow resolves the acknowledged one when the connector is healthy again.
        healthy = timedelta(hours=1)
        write_alerts(clean_db, [fault_alert(acked, after=healthy, status=AlertStatus.RESOLVED)])
        one = (await client.get(f"/v1/alerts/{acked.alert_id}", headers=key)).json()
        assert (one["status"], one["resolved_by"]) == ("resolved", None)
        assert ts(one["resolved_at"]) == T0 + healthy
        resp = await client.post(f"/v1/alerts/{acked.alert_id}/acknowledge", headers=key)
        assert_problem(resp, 409)
        # A person confirming the flow's resolve: their name, the flow's time, one audit row.
        confirmed = await client.post(
            f"/v1/alerts/{acked.alert_id}/resolve", headers=key, json={"note": "checked"}
        )
        assert confirmed.json()["resolved_by"] == "test-maintenance"
        assert ts(confirmed.json()["resolved_at"]) == T0 + healthy
        await client.post(f"/v1/alerts/{acked.alert_id}/resolve", headers=key)
        one = (await client.get(f"/v1/alerts/{acked.alert_id}", headers=key)).json()
        assert [(e["source"], e["action"]) for e in one["history"]][-2:] == [
            ("flow", "resolved"),
            ("person", "resolved"),
        ]
        assert one["history"][-1]["note"] == "checked"


def _health_fixture(clean_db: str) -> AlertFacts:
    """CP-1: alerts of every status and two connectors' health; CP-2: one alert, no
    health. Returns an open alert of CP-1 (high)."""
    provision_station(clean_db, "CP-1", "SITE-1")
    provision_station(clean_db, "CP-2")
    contributions = {"temp_rise": 4.0, "v_drop": -5.5, "a": 0.1, "b": -0.2, "c": 1.0, "d": 2.0}
    c1, c2 = AlertFacts("CP-1", 1, OVERHEAT, T0), AlertFacts("CP-1", 2, OVERHEAT, T0)
    write_alerts(
        clean_db,
        [
            fault_alert(c1, severity=Severity.HIGH),
            fault_alert(c2, severity=Severity.HIGH),
            fault_alert(
                AlertFacts("CP-1", 0, AlertKind.COMM_DEGRADATION, T0), severity=Severity.LOW
            ),
            fault_alert(
                AlertFacts("CP-1", 1, AlertKind.METER_FAULT, T0),
                severity=Severity.CRITICAL,
                status=AlertStatus.RESOLVED,
            ),
            fault_alert(AlertFacts("CP-2", 1, OVERHEAT, T0), severity=Severity.CRITICAL),
        ],
        [
            connector_health("CP-1", 2, T0, risk=0.1, phase="warming_up"),
            connector_health(
                "CP-1", 1, T0, risk=0.5, contributions=contributions, features={"power_kw": 11.0}
            ),
            # A later snapshot of connector 1 in the same batch wins.
            connector_health(
                "CP-1",
                1,
                T0 + timedelta(minutes=1),
                risk=0.93,
                contributions=contributions,
                features={"power_kw": 11.5},
            ),
        ],
    )
    return c2


async def test_station_health(clean_db: str, keys: dict[str, str]) -> None:
    c2 = _health_fixture(clean_db)
    key = auth(keys["maintenance"])
    async with api_client(clean_db) as client:
        await client.post(f"/v1/alerts/{c2.alert_id}/acknowledge", headers=key)
        body = (await client.get("/v1/stations/CP-1/health", headers=key)).json()
        assert body["station_id"] == "CP-1"
        # Open and acknowledged count; resolved ones and other stations' do not.
        assert body["unresolved_alerts"] == {"low": 1, "medium": 0, "high": 2, "critical": 0}
        one, two = body["connectors"]
        assert (one["connector_id"], one["risk"], one["phase"]) == (1, 0.93, "monitoring")
        assert ts(one["at"]) == T0 + timedelta(minutes=1)
        assert one["features"] == {"power_kw": 11.5}
        assert [(t["feature"], t["contribution"]) for t in one["top_contributions"]] == [
            ("v_drop", -5.5),
            ("temp_rise", 4.0),
            ("d", 2.0),
            ("c", 1.0),
            ("b", -0.2),
        ]
        assert (two["connector_id"], two["phase"], two["top_contributions"]) == (
            2,
            "warming_up",
            [],
        )
        # A provisioned station the flow has not scored yet.
        body = (await client.get("/v1/stations/CP-2/health", headers=key)).json()
        assert body["connectors"] == []
        assert body["unresolved_alerts"] == {"low": 0, "medium": 0, "high": 0, "critical": 1}
        # An older snapshot arriving late does not replace the newer one.
        write_alerts(clean_db, health=[connector_health("CP-1", 1, T0, risk=0.0)])
        body = (await client.get("/v1/stations/CP-1/health", headers=key)).json()
        assert body["connectors"][0]["risk"] == 0.93
