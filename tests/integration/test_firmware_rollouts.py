"""Firmware rollouts end to end: API -> rollout worker -> ``commands`` / ``ocpp.commands``
-> gateway -> simulated 1.6 and 2.0.1 stations -> FirmwareStatusNotifications -> the
rollout's progress. Waves in order, an automatic pause on failures, a restart of the API
mid-rollout without duplicate commands, a closed maintenance window, and bad input."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from store.api_keys import create_api_key
from store.sites import upsert_site
from store.stations import provision_station
from tests.support.api import api_client, assert_problem, auth
from tests.support.firmware import (
    FW,
    commands_per_station,
    create_rollout,
    fleet,
    rollout_api,
    rollout_until,
    status_is,
    updates_received,
)

pytestmark = pytest.mark.integration
MIXED = ("1.6", "2.0.1", "1.6", "2.0.1", "1.6", "2.0.1")


def _states(rollout: dict[str, Any]) -> dict[str, str]:
    return {s["station_id"]: s["state"] for w in rollout["waves"] for s in w["stations"]}


def _firmware_versions(db_url: str, cps: list[str]) -> set[str | None]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT firmware_version FROM stations WHERE charge_point_id = ANY(%s)", (cps,)
        ).fetchall()
    return {r[0] for r in rows}


async def test_a_rollout_of_six_stations_in_waves_of_two_completes(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    """Two API replicas, each with its worker: one drives the rollout per round."""
    key = create_api_key(clean_db, "fw-ops", "operator")
    async with (
        fleet(broker, clean_db, topics, "RO", MIXED) as stations,
        rollout_api(broker, clean_db, topics) as client,
        rollout_api(broker, clean_db, topics),
    ):
        cps = [s.cp_id for s in stations]
        created = await create_rollout(
            client, key, name="sim 2", stations=cps, firmware={"location": FW}, wave_size=2
        )
        assert created["status"] == "pending"
        assert [len(w["stations"]) for w in created["waves"]] == [2, 2, 2]
        done = await rollout_until(client, key, created["rollout_id"], status_is("completed"))
        assert set(_states(done).values()) == {"installed"}
        assert done["counts"] == {"installed": 6}
        assert done["current_wave"] == 3
        # Wave n+1 was sent only after wave n had finished.
        waves = done["waves"]
        for before, after in itertools.pairwise(waves):
            finished = max(s["updated_at"] for s in before["stations"])
            assert min(s["sent_at"] for s in after["stations"]) >= finished
        assert commands_per_station(clean_db, cps) == dict.fromkeys(cps, 1)
        assert [updates_received(s) for s in stations] == [1] * 6
        assert await _eventually_updated(clean_db, cps)
        listed = await client.get("/v1/firmware-rollouts", headers=auth(key))
        assert [r["rollout_id"] for r in listed.json()["items"]] == [created["rollout_id"]]


async def _eventually_updated(db_url: str, cps: list[str]) -> bool:
    from tests.support.polling import apoll

    versions = await apoll(
        lambda: _firmware_versions(db_url, cps), lambda v: v == {"sim-2.0.0"}, 20, "the boots"
    )
    return versions == {"sim-2.0.0"}


async def test_a_wave_over_its_failure_threshold_pauses_the_rollout(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    key = create_api_key(clean_db, "fw-ops", "operator")
    async with (
        fleet(broker, clean_db, topics, "RF", ("1.6", "2.0.1", "1.6", "2.0.1")) as stations,
        rollout_api(broker, clean_db, topics) as client,
    ):
        cps = [s.cp_id for s in stations]
        failing = f"{FW}?install_fail={cps[0]}"
        created = await create_rollout(
            client,
            key,
            name="bad build",
            stations=cps,
            firmware={"location": failing},
            wave_size=50,
            wave_unit="percent",
            failure_threshold=0.4,
            threshold_unit="fraction",
        )
        paused = await rollout_until(client, key, created["rollout_id"], status_is("paused"))
        # At once: 1 of 2 is over 0.4, whatever the other station is doing.
        assert paused["pause_reason"] == "wave 1: 1 of 2 stations failed"
        states = _states(paused)
        assert (states[cps[0]], states[cps[2]], states[cps[3]]) == ("failed", "queued", "queued")
        assert commands_per_station(clean_db, cps) == {cps[0]: 1, cps[1]: 1}
        again = await client.post(
            f"/v1/firmware-rollouts/{created['rollout_id']}/pause", headers=auth(key)
        )
        assert "a paused rollout cannot pause" in assert_problem(again, 409)["detail"]
        # Resumed: the failed wave is let through, the next one is sent and completes.
        resumed = await client.post(
            f"/v1/firmware-rollouts/{created['rollout_id']}/resume", headers=auth(key)
        )
        assert resumed.status_code == 200, resumed.text
        done = await rollout_until(client, key, created["rollout_id"], status_is("completed"))
        assert done["counts"] == {"failed": 1, "installed": 3}
        assert commands_per_station(clean_db, cps) == dict.fromkeys(cps, 1)


async def test_a_rollout_resumes_after_an_api_restart_without_sending_twice(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    key = create_api_key(clean_db, "fw-ops", "operator")
    async with fleet(broker, clean_db, topics, "RR", ("2.0.1", "1.6", "2.0.1", "1.6")) as stations:
        cps = [s.cp_id for s in stations]
        async with rollout_api(broker, clean_db, topics) as client:
            created = await create_rollout(
                client, key, name="r", stations=cps, firmware={"location": FW}, wave_size=2
            )
            rollout_id = created["rollout_id"]
            await rollout_until(
                client, key, rollout_id, lambda r: r["counts"].get("queued", 4) <= 2
            )
        # The API (and its worker) stopped mid-rollout; another one takes over.
        async with rollout_api(broker, clean_db, topics) as client:
            done = await rollout_until(client, key, rollout_id, status_is("completed"))
        assert done["counts"] == {"installed": 4}
        assert commands_per_station(clean_db, cps) == dict.fromkeys(cps, 1)
        assert [updates_received(s) for s in stations] == [1] * 4


async def test_nothing_is_sent_while_the_window_is_closed_and_bad_input_is_refused(
    broker: EmbeddedBroker, clean_db: str, topics: Topics
) -> None:
    key = create_api_key(clean_db, "fw-ops", "operator")
    billing = create_api_key(clean_db, "fw-billing", "billing")
    hour = datetime.now(UTC).hour
    closed = {"start_hour": (hour + 2) % 24, "end_hour": (hour + 3) % 24, "zone": "UTC"}
    async with (
        fleet(broker, clean_db, topics, "RW", ("1.6", "2.0.1")) as stations,
        rollout_api(broker, clean_db, topics) as client,
    ):
        cps = [s.cp_id for s in stations]
        waiting = await create_rollout(
            client, key, name="closed", stations=cps, firmware={"location": FW}, wave_size=2,
            window=closed,
        )  # fmt: skip
        # A later rollout with an open window: once its command is out, the worker has
        # passed the closed one (older rollouts first) in that round, too.
        opened = await create_rollout(
            client, key, name="open", stations=cps[:1], firmware={"location": FW}, wave_size=1
        )
        await rollout_until(
            client, key, opened["rollout_id"], lambda r: r["counts"] != {"queued": 1}
        )
        still = await rollout_until(client, key, waiting["rollout_id"], status_is("running"))
        assert set(_states(still).values()) == {"queued"}
        assert commands_per_station(clean_db, cps[1:]) == {}
        cancelled = await client.post(
            f"/v1/firmware-rollouts/{waiting['rollout_id']}/cancel", headers=auth(key)
        )
        assert cancelled.json()["status"] == "cancelled"

        async def refused(body: dict[str, Any], status: int = 422, api_key: str = key) -> str:
            resp = await client.post("/v1/firmware-rollouts", json=body, headers=auth(api_key))
            return str(assert_problem(resp, status).get("detail"))

        base = {"name": "x", "stations": cps, "firmware": {"location": FW}, "wave_size": 1}
        assert "unknown stations: NOPE" in await refused({**base, "stations": ["NOPE"]})
        assert await refused({**base, "site_id": "S1"})
        assert await refused({**base, "wave_size": 150, "wave_unit": "percent"})
        assert await refused({**base, "window": {**closed, "zone": "Mars/Base"}})
        assert await refused(base, 403, billing)
        missing = await client.get(
            "/v1/firmware-rollouts/6d2f8a14-3b7c-4e91-a05d-9c8b7a6f5e41", headers=auth(key)
        )
        assert_problem(missing, 404)


async def test_a_site_rollout_targets_the_site_stations_in_id_order(
    clean_db: str, topics: Topics
) -> None:
    """Created and read only (no worker): the site's stations become the waves."""
    key = create_api_key(clean_db, "fw-ops", "operator")
    upsert_site(clean_db, "SITE-FW", "depot", None, "Europe/Berlin")
    for cp in ("S-3", "S-1", "S-2"):
        provision_station(clean_db, cp, site_id="SITE-FW")
    provision_station(clean_db, "ELSEWHERE")
    async with api_client(clean_db, topics=topics, firmware_rollout_tick_s=0) as client:
        window = {"start_hour": 1, "end_hour": 5, "days": [0, 6], "zone": "site"}
        created = await create_rollout(
            client, key, name="depot", site_id="SITE-FW", firmware={"location": FW},
            wave_size=2, window=window, failure_threshold=1,
        )  # fmt: skip
        assert [[s["station_id"] for s in w["stations"]] for w in created["waves"]] == [
            ["S-1", "S-2"],
            ["S-3"],
        ]
        assert created["window"] == window
        assert (created["wave_count"], created["current_wave"]) == (2, 1)
        empty = await client.post(
            "/v1/firmware-rollouts",
            json={"name": "x", "site_id": "NO-SITE", "firmware": {"location": FW}, "wave_size": 1},
            headers=auth(key),
        )
        assert "has no stations" in assert_problem(empty, 422)["detail"]
        page = await client.get("/v1/firmware-rollouts", params={"limit": 1}, headers=auth(key))
        assert [r["rollout_id"] for r in page.json()["items"]] == [created["rollout_id"]]
        assert page.json()["next_cursor"] is None

        second = await create_rollout(
            client, key, name="depot again", site_id="SITE-FW", firmware={"location": FW},
            wave_size=3,
        )  # fmt: skip
        first_page = await client.get(
            "/v1/firmware-rollouts", params={"limit": 1}, headers=auth(key)
        )
        assert [r["rollout_id"] for r in first_page.json()["items"]] == [second["rollout_id"]]
        cursor = first_page.json()["next_cursor"]
        next_page = await client.get(
            "/v1/firmware-rollouts", params={"limit": 1, "cursor": cursor}, headers=auth(key)
        )
        assert [r["rollout_id"] for r in next_page.json()["items"]] == [created["rollout_id"]]
        assert next_page.json()["next_cursor"] is None
        bad = await client.get(
            "/v1/firmware-rollouts", params={"cursor": "0" * 20 + "-" + "z" * 32}, headers=auth(key)
        )
        assert_problem(bad, 422)
