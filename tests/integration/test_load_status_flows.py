"""The load and status flows end to end: real broker, real Bytewax Kafka input, real
PostgreSQL. Two sites, OCPP 1.6 and 2.0.1 stations and a billing smart meter."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main

from bus.admin import read_topic
from bus.envelope import Envelope, encode_envelope
from bus.load import SiteLoad, decode_site_load
from bus.normalized import EvseStates
from bus.producer import Producer, producer_config
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.config import FlowConfig
from flows.load.dataflow import build_flow as build_load_flow
from flows.load.logic import MinuteRow
from flows.recovery import ensure_recovery_dir
from flows.status.dataflow import build_flow as build_status_flow
from store.aggregates import AGGREGATE_VIEWS, refresh_aggregates
from store.api_keys import create_api_key
from store.load import write_load_batch
from store.stations import provision_station
from tests.support.api import api_client, auth
from tests.support.load_events import (
    T0,
    connection,
    meter_reading,
    mv16,
    mv201,
    start16,
    status16,
    status201,
    tx201,
)
from tests.support.paths import ROOT

pytestmark = pytest.mark.integration

S = timedelta(seconds=1)
M = timedelta(minutes=1)


@pytest.fixture
def load_db(clean_db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(clean_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sites (site_id, name, capacity_w) VALUES"
            " ('S-NORTH', 'North car park', 30000), ('S-SOUTH', 'South', 11000)"
        )
        for cp, site in (("N1", "S-NORTH"), ("N2", "S-NORTH"), ("S1", "S-SOUTH")):
            provision_station(clean_db, cp, site)
        yield conn


def ocpp_events() -> list[Envelope]:
    """N1: 1.6, two connectors (one per-phase only); N2: 2.0.1, EVSE 1 charging in kW
    with a kWh register; S1: 1.6 whose connector 1 also has a billing meter."""
    n2 = EvseStates()
    return [
        status16("N1", 1, "Available", T0),
        status16("N1", 2, "Available", T0),
        status201("N2", 1, "Available", T0, states=n2),
        status201("N2", 2, "Available", T0, states=n2),
        status16("S1", 1, "Available", T0),
        start16("N1", 1, 11, 10_000, T0 + 5 * S),
        status16("N1", 1, "Charging", T0 + 6 * S),
        tx201("N2", 1, "tx-n2", "Started", T0 + 7 * S, charging_state="Charging", states=n2),
        status201("N2", 1, "Occupied", T0 + 8 * S, states=n2),
        mv16("N1", 1, T0 + 10 * S, watts="7000", register_wh=10_000, tx=11),
        mv201("N2", 1, T0 + 15 * S, power=11.0, unit="kW", register_kwh=2.0),
        mv16("N1", 2, T0 + 20 * S, phases={"L1": "3600", "L2": "3600", "L3": "3600"}),
        status16("N1", 2, "Charging", T0 + 21 * S),
        mv16("N1", 1, T0 + 40 * S, watts="7400", register_wh=10_060, tx=11),
        mv201("N2", 1, T0 + 45 * S, power=11.0, unit="kW", register_kwh=2.1),
        mv16("S1", 1, T0 + 50 * S, watts="9000", register_wh=500),  # billing meter wins
        mv16("N1", 1, T0 + M + 10 * S, watts="7200", register_wh=10_120, tx=11),
        mv16("N1", 1, T0 + M + 10 * S, watts="7200", register_wh=10_120, tx=11),  # resent
        mv201("N2", 1, T0 + M + 15 * S, power=110, multiplier=2, register_kwh=2.25),
        connection("N2", "offline", T0 + 2 * M),
        connection("N2", "online", T0 + 3 * M),
        status201("N2", 1, "Occupied", T0 + 3 * M + S, states=n2),
        connection("N1", "offline", T0 + 4 * M),
    ]


def meter_events() -> list[Envelope]:
    return [
        meter_reading("S1", 1, T0 + 30 * S, 12_000.0, 88_000, billing=True),
        meter_reading("S1", 1, T0 + M + 30 * S, 12_500.0, 88_200, billing=True),
    ]


def publish(bootstrap: str, topic: str, envelopes: list[Envelope]) -> None:
    producer = Producer(producer_config(bootstrap))
    try:
        for e in envelopes:
            producer.publish_sync(topic, e.charge_point_id.encode(), encode_envelope(e))
    finally:
        producer.close()


def minutes(db: psycopg.Connection[Any]) -> dict[tuple[str, int, Any], tuple[Any, ...]]:
    rows = db.execute(
        "SELECT charge_point_id, connector_id, bucket, sample_count, avg_power_w, max_power_w,"
        " energy_wh, register_wh, source FROM load_connector_1m"
    ).fetchall()
    return {(r[0], r[1], r[2]): r[3:] for r in rows}


def snapshot(db: psycopg.Connection[Any]) -> list[list[tuple[Any, ...]]]:
    return [
        db.execute("SELECT * FROM load_connector_1m ORDER BY 1, 2, 3").fetchall(),
        db.execute("SELECT * FROM connector_status_history ORDER BY 1, 2, 3, 4").fetchall(),
        db.execute("SELECT * FROM connector_availability ORDER BY 1, 2").fetchall(),
        db.execute(
            "SELECT site_id, as_of, total_w, capacity_w, utilisation_pct,"
            " over_capacity, station_count, offline_stations, stations"
            " FROM site_load_live ORDER BY 1"
        ).fetchall(),
    ]


def last_per_site(bootstrap: str, topics: Topics) -> dict[str, SiteLoad]:
    latest: dict[str, SiteLoad] = {}
    for m in read_topic(bootstrap, topics.load_sites):
        value = m.value()
        assert value is not None
        msg = decode_site_load(value)
        assert m.key() == msg.site_id.encode()
        latest[msg.site_id] = msg  # one partition per key: the last read is the newest
    return latest


def site_message_count(bootstrap: str, topics: Topics, site_id: str) -> int:
    return sum(1 for m in read_topic(bootstrap, topics.load_sites) if m.key() == site_id.encode())


def run_flows(config: FlowConfig) -> None:
    run_main(build_load_flow(config))
    run_main(build_status_flow(config))


def _assert_expected_minutes(db: psycopg.Connection[Any]) -> None:
    got = minutes(db)
    assert got[("N1", 1, T0)] == (2, 7200.0, 7400.0, Decimal(60), Decimal(10_060), "ocpp")
    assert got[("N1", 1, T0 + M)] == (1, 7200.0, 7200.0, Decimal(60), Decimal(10_120), "ocpp")
    assert got[("N1", 2, T0)] == (1, 10800.0, 10800.0, None, None, "ocpp")
    assert got[("N2", 1, T0)] == (2, 11000.0, 11000.0, Decimal("100.0"), Decimal("2100.0"), "ocpp")
    assert got[("N2", 1, T0 + M)] == (
        1,
        11000.0,
        11000.0,
        Decimal("150.00"),
        Decimal("2250.00"),
        "ocpp",
    )
    assert got[("S1", 1, T0)] == (1, 12000.0, 12000.0, Decimal(0), Decimal(88_000), "meter:billing")
    assert got[("S1", 1, T0 + M)][3:] == (Decimal(200), Decimal(88_200), "meter:billing")
    assert len(got) == 7


def _assert_expected_sites(db: psycopg.Connection[Any], bootstrap: str, topics: Topics) -> None:
    sites = last_per_site(bootstrap, topics)
    north, south = sites["S-NORTH"], sites["S-SOUTH"]
    assert (north.total_w, north.capacity_w, north.utilisation_pct, north.over_capacity) == (
        7200.0 + 10800.0 + 11000.0,
        30000,
        96.7,
        False,
    )
    assert (north.station_count, north.offline_stations, north.as_of) == (2, 1, T0 + 4 * M)
    assert {s.charge_point_id: s.offline for s in north.stations} == {"N1": True, "N2": False}
    assert (south.total_w, south.utilisation_pct, south.over_capacity) == (12500.0, 113.6, True)
    live = db.execute(
        "SELECT site_id, total_w, over_capacity FROM site_load_live ORDER BY 1"
    ).fetchall()
    assert live == [("S-NORTH", 29000.0, False), ("S-SOUTH", 12500.0, True)]


def _assert_expected_status(db: psycopg.Connection[Any]) -> None:
    history = db.execute(
        "SELECT charge_point_id, connector_id, status, ocpp_status, reason FROM"
        " connector_status_history ORDER BY charge_point_id, at, connector_id"
    ).fetchall()
    assert history == [
        ("N1", 1, "Available", "Available", None),
        ("N1", 2, "Available", "Available", None),
        ("N1", 1, "Charging", "Charging", None),
        ("N1", 2, "Charging", "Charging", None),
        ("N1", 1, "Offline", "Offline", "test"),
        ("N1", 2, "Offline", "Offline", "test"),
        ("N2", 1, "Available", "Available", None),
        ("N2", 2, "Available", "Available", None),
        ("N2", 1, "Charging", "Occupied", None),
        # offline at +2 min, back at +3 min: the status of each EVSE then, then the
        # status the station reports on the new connection
        ("N2", 1, "Offline", "Offline", "test"),
        ("N2", 2, "Offline", "Offline", "test"),
        ("N2", 1, "Charging", "Occupied", "test"),
        ("N2", 2, "Available", "Available", "test"),
        ("N2", 1, "Charging", "Occupied", None),
        ("S1", 1, "Available", "Available", None),
    ]
    availability = db.execute(
        "SELECT charge_point_id, connector_id, status, connector_status, online"
        " FROM connector_availability ORDER BY 1, 2"
    ).fetchall()
    assert availability == [
        ("N1", 1, "Offline", "Charging", False),
        ("N1", 2, "Offline", "Charging", False),
        ("N2", 1, "Charging", "Charging", True),
        ("N2", 2, "Available", "Available", True),
        ("S1", 1, "Available", "Available", True),
    ]


def assert_expected(db: psycopg.Connection[Any], bootstrap: str, topics: Topics) -> None:
    _assert_expected_minutes(db)
    _assert_expected_sites(db, bootstrap, topics)
    _assert_expected_status(db)


def test_flows_aggregate_load_publish_sites_track_status_and_replay_identically(
    broker: EmbeddedBroker, topics: Topics, load_db: psycopg.Connection[Any], clean_db: str
) -> None:
    publish(broker.bootstrap, topics.ocpp_events, ocpp_events())
    publish(broker.bootstrap, topics.meter_readings, meter_events())
    config = FlowConfig(
        brokers=[broker.bootstrap], database_url=clean_db, topics=topics, tail=False
    )

    run_flows(config)
    assert_expected(load_db, broker.bootstrap, topics)

    before = snapshot(load_db)
    run_flows(config)  # fresh state, both topics again: nothing changes
    assert snapshot(load_db) == before
    assert_expected(load_db, broker.bootstrap, topics)


def test_offline_then_online_in_the_status_flow_alone(
    broker: EmbeddedBroker, topics: Topics, load_db: psycopg.Connection[Any], clean_db: str
) -> None:
    config = FlowConfig(
        brokers=[broker.bootstrap], database_url=clean_db, topics=topics, tail=False
    )
    publish(
        broker.bootstrap,
        topics.ocpp_events,
        [status16("N1", 1, "Charging", T0), connection("N1", "offline", T0 + M)],
    )
    run_main(build_status_flow(config))
    row = load_db.execute(
        "SELECT status, connector_status, online FROM"
        " connector_availability WHERE charge_point_id = 'N1'"
    ).fetchone()
    assert row == ("Offline", "Charging", False)
    # Back online (and the status it reports on reconnect): a later run resumes from
    # scratch (no recovery here) and still ends in the right state.
    publish(
        broker.bootstrap,
        topics.ocpp_events,
        [connection("N1", "online", T0 + 2 * M), status16("N1", 1, "Finishing", T0 + 2 * M)],
    )
    run_main(build_status_flow(config))
    row = load_db.execute(
        "SELECT status, connector_status, online FROM"
        " connector_availability WHERE charge_point_id = 'N1'"
    ).fetchone()
    assert row == ("Finishing", "Finishing", True)


def _offline_period_events() -> list[Envelope]:
    return [
        status16("N1", 0, "Available", T0),
        status16("N1", 1, "Charging", T0 + S),
        status16("N1", 2, "Available", T0 + S),
        connection("N1", "offline", T0 + M, reason="closed by station"),
        connection("N1", "offline", T0 + M, reason="closed by station"),  # delivered twice
        status16("N1", 2, "Preparing", T0 + 2 * M),  # reported while offline
        connection("N1", "online", T0 + 3 * M, reason="connected"),
        status16("N1", 1, "Finishing", T0 + 3 * M),  # the same instant as the reconnection
    ]


def _changes(body: dict[str, Any]) -> list[tuple[int, datetime, str, str, str | None]]:
    return [
        (
            i["connector_id"],
            datetime.fromisoformat(i["at"]),
            i["status"],
            i["ocpp_status"],
            i["reason"],
        )
        for i in body["items"]
    ]


async def _check_the_status_history_api(clean_db: str, key: str) -> None:
    url = "/v1/stations/N1/status-history"
    async with api_client(clean_db) as client:
        r = await client.get(url, headers=auth(key))
        assert r.status_code == 200, r.text
        assert _changes(r.json()) == [  # newest first
            (0, T0 + 3 * M, "Available", "Available", "connected"),
            (1, T0 + 3 * M, "Finishing", "Finishing", None),  # newer than the restored one
            (1, T0 + 3 * M, "Charging", "Charging", "connected"),
            (2, T0 + 3 * M, "Preparing", "Preparing", "connected"),
            (2, T0 + 2 * M, "Preparing", "Preparing", None),
            (0, T0 + M, "Offline", "Offline", "closed by station"),
            (1, T0 + M, "Offline", "Offline", "closed by station"),
            (2, T0 + M, "Offline", "Offline", "closed by station"),
            (1, T0 + S, "Charging", "Charging", None),
            (2, T0 + S, "Available", "Available", None),
            (0, T0, "Available", "Available", None),
        ]
        r = await client.get(
            url, params={"connector": 1, "from": (T0 + M).isoformat()}, headers=auth(key)
        )
        assert [(c[2], c[4]) for c in _changes(r.json())] == [
            ("Finishing", None),
            ("Charging", "connected"),
            ("Offline", "closed by station"),
        ]
        r = await client.get("/v1/availability", params={"station": "N1"}, headers=auth(key))
        assert [(i["connector_id"], i["status"], i["online"]) for i in r.json()["items"]] == [
            (1, "Finishing", True),
            (2, "Preparing", True),
        ]


async def test_status_history_api_shows_offline_periods_and_replays_identically(
    broker: EmbeddedBroker, topics: Topics, load_db: psycopg.Connection[Any], clean_db: str
) -> None:
    config = FlowConfig(
        brokers=[broker.bootstrap], database_url=clean_db, topics=topics, tail=False
    )
    publish(broker.bootstrap, topics.ocpp_events, _offline_period_events())
    run_main(build_status_flow(config))
    key = create_api_key(clean_db, "test-maintenance", "maintenance")
    await _check_the_status_history_api(clean_db, key)

    before = snapshot(load_db)
    run_main(build_status_flow(config))  # fresh state, the whole topic again
    assert snapshot(load_db) == before


ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
# Each continuous aggregate recomputed with date_bin over the raw minutes.
DATE_BIN_QUERIES = {
    "load_connector_1h": f"""
        SELECT charge_point_id, connector_id, date_bin('1 hour', bucket, {ORIGIN}) AS b,
               count(*), sum(sample_count), sum(power_sum_w) / sum(sample_count),
               max(max_power_w), sum(energy_wh)
        FROM load_connector_1m GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
    "energy_connector_1d": f"""
        SELECT charge_point_id, connector_id, date_bin('1 day', bucket, {ORIGIN}) AS b,
               count(*), sum(sample_count), sum(power_sum_w) / sum(sample_count),
               max(max_power_w), sum(energy_wh)
        FROM load_connector_1m GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
    "load_station_1m": f"""
        SELECT charge_point_id, date_bin('1 minute', bucket, {ORIGIN}) AS b,
               count(*), sum(sample_count), sum(avg_power_w), max(max_power_w),
               sum(energy_wh)
        FROM load_connector_1m GROUP BY 1, 2 ORDER BY 1, 2""",
}
VIEW_QUERIES = {
    "load_connector_1h": "SELECT charge_point_id, connector_id, bucket, minutes,"
    " sample_count, avg_power_w, max_power_w, energy_wh"
    " FROM load_connector_1h ORDER BY 1, 2, 3",
    "energy_connector_1d": "SELECT charge_point_id, connector_id, bucket, minutes,"
    " sample_count, avg_power_w, max_power_w, energy_wh"
    " FROM energy_connector_1d ORDER BY 1, 2, 3",
    "load_station_1m": "SELECT charge_point_id, bucket, connector_count, sample_count,"
    " avg_power_w, max_connector_power_w, energy_wh"
    " FROM load_station_1m ORDER BY 1, 2",
}


def _insert_26_hours_of_minutes(load_db: psycopg.Connection[Any]) -> None:
    rows = []
    for k in range(0, 26 * 60, 7):  # every 7 minutes over 26 hours, two connectors
        for cp, conn_id, watts in (("N1", 1, 7000.0 + k), ("N1", 2, 3000.0), ("N2", 1, 11.0)):
            rows.append(
                (
                    cp,
                    conn_id,
                    T0 + k * M,
                    3,
                    3 * watts,
                    watts,
                    watts + 5,
                    Decimal(k % 5),
                    Decimal(k),
                )
            )
    with load_db.cursor() as cur:
        cur.executemany(
            "INSERT INTO load_connector_1m (charge_point_id, connector_id, bucket, sample_count,"
            " power_sum_w, avg_power_w, max_power_w, energy_wh, register_wh, source)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'ocpp')",
            rows,
        )


def test_aggregates_match_date_bin_over_the_raw_table(load_db: psycopg.Connection[Any]) -> None:
    _insert_26_hours_of_minutes(load_db)
    # The rows bypassed the writer (nothing recorded what changed): refresh everything.
    assert refresh_aggregates(load_db, force=True) == list(AGGREGATE_VIEWS)

    expected, views = DATE_BIN_QUERIES, VIEW_QUERIES
    for name in AGGREGATE_VIEWS:
        from_view = load_db.execute(views[name]).fetchall()
        assert from_view == load_db.execute(expected[name]).fetchall(), name
        assert from_view
    days = load_db.execute("SELECT count(*) FROM energy_connector_1d").fetchone()
    assert days == (3 * 2,)  # 26 h from 10:00 spans two UTC days
    # Changed rows show up after the next refresh.
    load_db.execute("UPDATE load_connector_1m SET energy_wh = energy_wh + 1")
    refresh_aggregates(load_db, force=True)
    assert (
        load_db.execute(views["load_connector_1h"]).fetchall()
        == load_db.execute(expected["load_connector_1h"]).fetchall()
    )


FLOWS_FROM_ENV = {
    "load": "flows.load.dataflow:from_env()",
    "status": "flows.status.dataflow:from_env()",
}


def _run_the_flow_processes(env: dict[str, str], dirs: dict[str, Path]) -> None:
    for name, flow in FLOWS_FROM_ENV.items():
        argv = [
            sys.executable,
            "-m",
            "flows.run",
            flow,
            "-r",
            str(dirs[name]),
            "-s",
            "1",
            "-b",
            "0",
        ]
        proc = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, proc.stderr[-4000:]


def _check_n1_resumed(load_db: psycopg.Connection[Any], bootstrap: str, topics: Topics) -> None:
    assert minutes(load_db)[("N1", 1, T0 + 4 * M)] == (
        1,
        6000.0,
        6000.0,
        Decimal(80),
        Decimal(10_200),
        "ocpp",
    )
    availability = load_db.execute(
        "SELECT connector_id, status FROM connector_availability"
        " WHERE charge_point_id = 'N1' ORDER BY 1"
    ).fetchall()
    assert availability == [(1, "Charging"), (2, "Charging")]  # back online
    # The offline period (from the recovered state) ends in the history too.
    restored = load_db.execute(
        "SELECT connector_id, at, status, reason FROM connector_status_history"
        " WHERE charge_point_id = 'N1' AND at >= %s ORDER BY 1, 2",
        (T0 + 4 * M,),
    ).fetchall()
    assert restored == [
        (1, T0 + 4 * M, "Offline", "test"),
        (1, T0 + 5 * M, "Charging", "test"),
        (2, T0 + 4 * M, "Offline", "test"),
        (2, T0 + 5 * M, "Charging", "test"),
    ]
    north = last_per_site(bootstrap, topics)["S-NORTH"]
    assert (north.total_w, north.offline_stations) == (6000.0 + 10800.0 + 11000.0, 0)


def test_flows_run_from_env_with_recovery(
    broker: EmbeddedBroker,
    topics: Topics,
    load_db: psycopg.Connection[Any],
    clean_db: str,
    tmp_path: Path,
) -> None:
    publish(broker.bootstrap, topics.ocpp_events, ocpp_events())
    publish(broker.bootstrap, topics.meter_readings, meter_events())
    prefix = topics.ocpp_events[: -len(Topics().ocpp_events)]
    env = {
        **os.environ,
        "CHARGEFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
        "CHARGEFLOW_DATABASE_URL": clean_db,
        "CHARGEFLOW_TOPIC_PREFIX": prefix,
        "CHARGEFLOW_FLOW_TAIL": "false",
    }
    dirs = {name: ensure_recovery_dir(tmp_path / name, 1) for name in FLOWS_FROM_ENV}

    _run_the_flow_processes(env, dirs)
    assert_expected(load_db, broker.bootstrap, topics)
    # The restart resumes from the stored offsets and state: only the new events are
    # read, and the register chain continues from the minute before (10 120 Wh).
    publish(
        broker.bootstrap,
        topics.ocpp_events,
        [
            mv16("N1", 1, T0 + 4 * M + 10 * S, watts="6000", register_wh=10_200, tx=11),
            connection("N1", "online", T0 + 5 * M),
        ],
    )
    south_messages = site_message_count(broker.bootstrap, topics, "S-SOUTH")
    _run_the_flow_processes(env, dirs)
    # Resumed, not replayed: nothing new was read for the other site.
    assert site_message_count(broker.bootstrap, topics, "S-SOUTH") == south_messages
    _check_n1_resumed(load_db, broker.bootstrap, topics)


def test_refresh_command_once(load_db: psycopg.Connection[Any], clean_db: str) -> None:
    write_load_batch(
        load_db,
        [
            MinuteRow(
                charge_point_id="N1",
                connector_id=1,
                bucket=T0,
                sample_count=1,
                power_sum_w=500.0,
                avg_power_w=500.0,
                max_power_w=500.0,
                energy_wh=Decimal(8),
                register_wh=None,
                source="ocpp",
            )
        ],
        [],
    )
    env = {**os.environ, "CHARGEFLOW_DATABASE_URL": clean_db}
    proc = subprocess.run(
        [sys.executable, "-m", "store.aggregates", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "load_connector_1h" in proc.stdout
    assert load_db.execute("SELECT energy_wh FROM energy_connector_1d").fetchall() == [
        (Decimal(8),)
    ]
