"""Every panel's SQL, expanded as Grafana expands it (dashboards.macros), runs against
the database after an end-to-end run and returns rows of the expected shape.

The run: a simulated fleet (OCPP 1.6 and 2.0.1, injected faults: a failing controller,
a ground fault, a frozen register) through the real gateway, the sessions flow (a
process, tailing) and the billing worker (wallet payments: holds, captures; a session
with a register reset held for review), a firmware rollout through the API (its
UpdateFirmware commands answered by the stations); then the load, status and faults
flows over the whole topic and the aggregate refresher. Queries run with the
variables on All and on selections, in the plain-PostgreSQL flavour, and in the
TimescaleDB flavour (on a server without TimescaleDB, with its two functions defined in
SQL: ``TIMESCALE_SHIMS``), which must return the same rows."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main

from bus.envelope import encode_envelope
from bus.topics import Topics
from chargeflow.launcher import seed_demo_tariff
from chargeflow.stack import EmbeddedBroker
from dashboards.catalog import dashboards
from dashboards.common import Flavour
from dashboards.macros import ALL, TimeRange, Variable, expand
from flows.config import FlowConfig
from flows.faults.config import FaultsFlowConfig
from flows.faults.dataflow import build_flow as build_faults_flow
from flows.load.dataflow import build_flow as build_load_flow
from flows.status.dataflow import build_flow as build_status_flow
from ingest.gateway.server import Gateway
from ingest.simulator.behaviours.faults import plan_faults
from ingest.simulator.config import FleetConfig
from ingest.simulator.fleet import run_fleet
from ingest.simulator.station import SimulatedStation
from invoicing.config import InvoicingConfig
from invoicing.worker import InvoicingWorker
from store import ledger
from store import payment_methods as method_store
from store.aggregates import refresh_aggregates
from store.api_keys import create_api_key
from store.db import StorageMode, storage_mode
from store.id_tokens import add_id_tag
from store.sites import upsert_site
from store.stations import provision_station
from tests.support.api import api_client
from tests.support.billing_worker import running
from tests.support.firmware import FW, TICK_S, create_rollout, rollout_until, status_is
from tests.support.flows import FLOW_ARGV, flow_env, flow_process, publish
from tests.support.gateway import STATION_PASSWORD, gateway_config
from tests.support.polling import apoll, apoll_async
from tests.support.sessions import meter, register
from tests.support.sessions import start as ocpp_start
from tests.support.sessions import stop as ocpp_stop

pytestmark = pytest.mark.integration

PREFIX = "DSH-"
STATIONS = [f"{PREFIX}{n:04d}" for n in range(1, 6)]  # odd: OCPP 1.6, even: 2.0.1
SITES = {"DSH-NORTH": STATIONS[:3], "DSH-SOUTH": STATIONS[3:]}
HELD = f"{PREFIX}HELD"
WALLETS = {f"DSH-W-{n}": f"dsh-wallet-{n}" for n in range(3)}
SEED = 7
SPEC = "controller:DSH-0002@1m+6m,ground_fault:DSH-0003@3m,meter_frozen:DSH-0004@4m+3h"
WINDOW = timedelta(minutes=90)  # station time the fleet runs
ROLLOUT = ["DSH-0001", "DSH-0005"]


def _start() -> datetime:
    """Station time starts a minute from now: the demo tariff, created now, is older
    than every session (a session is priced under the version in force at its start)."""
    return (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)


def _fleet(gateway_url: str, start: datetime) -> FleetConfig:
    return FleetConfig(
        gateway_url=gateway_url,
        stations=len(STATIONS),
        station_id_prefix=PREFIX,
        sessions_per_station=None,
        id_tags=tuple(WALLETS),
        meter_interval_s=60,
        time_scale=120,
        mean_arrival_gap_s=300,
        mean_dwell_s=1500,
        seed=SEED,
        call_timeout_s=5,
        station_password=STATION_PASSWORD,
        ocpp_versions=("1.6", "2.0.1"),
        varied_use=True,
        idle_meter_interval_s=300,
        start=start,
        faults=tuple(plan_faults(SPEC, STATIONS, start, seed=SEED)),
    )


def _held_session(start: datetime) -> list[tuple[bytes, bytes]]:
    """A session whose register resets half-way: its energy is corrected, billing holds
    it for review."""
    minute = timedelta(minutes=1)
    events = [
        ocpp_start(HELD, 9001, 50_000, id_tag="DSH-W-0", at=start),
        meter(HELD, 9001, register(start + 5 * minute, 52_000)),
        meter(HELD, 9001, register(start + 10 * minute, 300)),
        ocpp_stop(HELD, 9001, 1_500, at=start + 15 * minute),
    ]
    return [(e.charge_point_id.encode(), encode_envelope(e)) for e in events]


async def _seed(url: str) -> None:
    for site, stations in SITES.items():
        upsert_site(url, site, site.title(), 30_000, time_zone="Europe/Amsterdam")
        for cp in stations:
            provision_station(url, cp, site, password=STATION_PASSWORD)
    provision_station(url, HELD, "DSH-NORTH", password=STATION_PASSWORD)
    for tag in WALLETS:
        add_id_tag(url, tag)
    await asyncio.to_thread(seed_demo_tariff, url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for tag, customer in WALLETS.items():
            await method_store.set_method(conn, tag, "wallet", customer, None)
    with psycopg.connect(url, autocommit=True) as db:
        for tag, customer in WALLETS.items():
            ledger.top_up(db, customer, 50_000, "EUR", reference=f"bank-{tag}", idempotency_key=tag)


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


async def _run_fleet(broker: EmbeddedBroker, url: str, topics: Topics, start: datetime) -> None:
    """The fleet for WINDOW of station time, a firmware rollout meanwhile; the gateway
    stops before the fleet (its stations' connections end)."""
    stations: list[SimulatedStation] = []
    key = create_api_key(url, "dsh-operator", "operator")
    async with (
        asyncio.TaskGroup() as tg,
        Gateway(gateway_config(broker, url, topics)) as gw,
        api_client(url, broker.bootstrap, topics=topics, firmware_rollout_tick_s=TICK_S) as api,
    ):
        fleet = tg.create_task(run_fleet(_fleet(gw.url, start), on_station=stations.append))
        await apoll(lambda: len(stations), lambda n: n == len(STATIONS), 30, "the fleet up")
        rollout = await create_rollout(
            api, key, name="dsh", stations=ROLLOUT, firmware={"location": FW}, wave_size=1
        )

        async def clocks() -> datetime:  # the station clocks read the event loop's time
            return min(s.now() for s in stations)

        await apoll_async(clocks, lambda t: t >= start + WINDOW, 120, "the window over")
        await rollout_until(api, key, rollout["rollout_id"], status_is("completed"))
        fleet.cancel()


def _flows_over_the_topic(bootstrap: str, url: str, topics: Topics) -> None:
    config = FlowConfig(brokers=[bootstrap], database_url=url, topics=topics, tail=False)
    run_main(build_load_flow(config))
    run_main(build_status_flow(config))
    faults = FaultsFlowConfig(
        brokers=[bootstrap], database_url=url, topics=topics, tail=False, publish_alerts=False
    )
    run_main(build_faults_flow(faults))
    with psycopg.connect(url, autocommit=True) as conn:
        refresh_aggregates(conn, force=True)


@pytest.fixture
def sessions_flow(
    broker: EmbeddedBroker, clean_db: str, topics: Topics, tmp_path: Any
) -> Iterator[subprocess.Popen[bytes]]:
    with flow_process(
        FLOW_ARGV, flow_env(broker.bootstrap, clean_db, topics, tail=True), tmp_path / "flow.log"
    ) as process:
        yield process


async def _pipeline(broker: EmbeddedBroker, url: str, topics: Topics) -> TimeRange:
    start = _start()
    await _seed(url)
    config = InvoicingConfig(
        kafka_bootstrap=broker.bootstrap, database_url=url, topics=topics, preauth_poll_s=0.1
    )
    worker = InvoicingWorker(config, poll_s=0.1)
    async with running(worker):
        await asyncio.to_thread(publish, broker.bootstrap, topics.ocpp_events, _held_session(start))
        await _run_fleet(broker, url, topics, start)
        closed = "SELECT count(*) FROM sessions WHERE status = 'closed'"
        await apoll(lambda: _count(url, closed), lambda n: n >= 3, 60, "sessions closed")
        closes = _count(url, closed)
        await apoll(lambda: worker.invoiced, lambda n: n >= closes, 60, "billed or held")
    await asyncio.to_thread(_flows_over_the_topic, broker.bootstrap, url, topics)
    return TimeRange(start - timedelta(hours=1), start + WINDOW + timedelta(hours=2))


def _variables(board: dict[str, Any]) -> dict[str, Variable]:
    return {
        v["name"]: Variable(v["name"], v["multi"], v["includeAll"], v.get("allValue"))
        for v in board["templating"]["list"]
    }


# Panels the run must fill (title -> refIds); the others may rightly be empty here
# (e.g. refunds: nobody refunded) but still run and keep their shape.
MUST_HAVE_ROWS = {
    "Site load against its limit": {"A", "B"},
    "Live site load": {"A"},
    "Power per station": {"A"},
    "Connectors by status": {"A"},
    "Offline stations": {"A"},
    "Offline stations: since when": {"A"},
    "Stations": {"A"},
    "Command outcomes": {"A"},
    "Commands by action": {"A"},
    "Sessions started and stopped": {"A"},
    "Uptime per port (NEVI, 23 CFR 680.116)": {"A"},
    "First-try charging success per station": {"A"},
    "Open alerts by severity": {"A"},
    "Open alerts by kind": {"A"},
    "Firmware versions": {"A"},
    "Open alerts": {"A"},
    "Risk per station over time": {"A"},
    "Stations ranked by risk": {"A"},
    "Error codes reported": {"A"},
    "Error-code rates per station": {"A"},
    "Firmware rollouts": {"A"},
    "Revenue, energy and average price": {"A"},
    "Energy billed per day and site": {"A"},
    "Revenue per day and site (EUR, incl. VAT)": {"A"},
    "Per tariff and site": {"A"},
    "Sessions held for review": {"A"},
    "Held sessions": {"A"},
    "Captures, refunds and failed captures": {"A"},
    "Payments of sessions in the range": {"A"},
    "Peak usage: energy by hour and weekday (site local time)": {"A"},
}
NUMERIC = ("int2", "int4", "int8", "numeric", "float4", "float8")


def _check_shape(title: str, fmt: str, names: list[str], types: list[str]) -> None:
    assert len(names) == len(set(names)), (title, names)
    if fmt == "time_series":
        assert names == ["time", "metric", "value"], (title, names)
        assert types[0] in ("timestamptz", *NUMERIC), (title, types)
        assert types[1] == "text", (title, types)
        assert types[2] in NUMERIC, (title, types)


# On plain PostgreSQL, the two TimescaleDB functions the TimescaleDB flavour calls, with
# TimescaleDB's documented meaning, in a schema of their own that only the connection
# running that flavour puts on its search path: time_bucket(width, t) (origin Monday
# 2000-01-03, TimescaleDB's default) and last(value, time) for the text values the
# dashboards take it of.
TIMESCALE_SHIMS = """
CREATE SCHEMA IF NOT EXISTS dashboards_timescale_shim;
CREATE OR REPLACE FUNCTION dashboards_timescale_shim.time_bucket(interval, timestamptz)
    RETURNS timestamptz LANGUAGE sql IMMUTABLE
    AS $$ SELECT date_bin($1, $2, TIMESTAMPTZ '2000-01-03 00:00:00+00') $$;
CREATE OR REPLACE FUNCTION dashboards_timescale_shim.last_step(text[], text, timestamptz)
    RETURNS text[] LANGUAGE sql IMMUTABLE
    AS $$ SELECT CASE WHEN $3 IS NULL THEN $1
        WHEN $1 IS NULL OR extract(epoch FROM $3) >= $1[2]::numeric
        THEN ARRAY[$2, extract(epoch FROM $3)::text] ELSE $1 END $$;
CREATE OR REPLACE FUNCTION dashboards_timescale_shim.last_final(text[])
    RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT $1[1] $$;
CREATE OR REPLACE AGGREGATE dashboards_timescale_shim.last(text, timestamptz) (
    SFUNC = dashboards_timescale_shim.last_step, STYPE = text[],
    FINALFUNC = dashboards_timescale_shim.last_final);
"""


def _connect(url: str, timescale: bool) -> psycopg.Connection[Any]:
    db = psycopg.connect(url, autocommit=True)
    if timescale and storage_mode(url) is not StorageMode.TIMESCALEDB:
        db.execute(TIMESCALE_SHIMS)
        db.execute("SET search_path = dashboards_timescale_shim, public")
    return db


def _run_all(
    url: str, time_range: TimeRange, selected: dict[str, Any], timescale: bool = False
) -> dict[str, int]:
    """Every target of every dashboard of a flavour, expanded (with the datasource's
    TimescaleDB option as the flavour has it) and run: rows per "title/refId"."""
    rows: dict[str, int] = {}
    with _connect(url, timescale) as db:
        types: dict[int, str] = dict(db.execute("SELECT oid, typname FROM pg_type").fetchall())
        for board in dashboards(Flavour(timescale=timescale)):
            variables = _variables(board)
            queries = [(t, p) for p in board["panels"] if p["type"] != "row" for t in p["targets"]]
            for target, panel in queries:
                sql = expand(
                    target["rawSql"],
                    time_range=time_range,
                    interval=timedelta(minutes=5),
                    variables=variables,
                    selected=selected,
                    timescaledb=timescale,
                )
                with db.cursor() as cur:
                    cur.execute(sql)
                    assert cur.description is not None
                    names = [c.name for c in cur.description]
                    typenames = [types[c.type_code] for c in cur.description]
                    found = cur.fetchall()
                _check_shape(panel["title"], target["format"], names, typenames)
                if target["format"] == "time_series" and typenames[0] in NUMERIC:
                    times = [r[0] for r in found]
                    assert times == sorted(times), panel["title"]  # Grafana needs time order
                rows[f"{panel['title']}/{target['refId']}"] = len(found)
            for variable in board["templating"]["list"]:
                sql = expand(
                    variable["query"],
                    time_range=time_range,
                    interval=timedelta(minutes=5),
                    variables=variables,
                    selected=selected,
                )
                rows[f"variable {variable['name']}"] = len(db.execute(sql).fetchall())
    return rows


async def test_every_panel_query_runs_on_the_pipelines_data_and_has_its_shape(
    broker: EmbeddedBroker,
    clean_db: str,
    topics: Topics,
    sessions_flow: subprocess.Popen[bytes],
) -> None:
    time_range = await _pipeline(broker, clean_db, topics)

    everything = _run_all(clean_db, time_range, {"site": ALL, "station": ALL})
    empty = sorted(
        f"{title}/{ref}"
        for title, refs in MUST_HAVE_ROWS.items()
        for ref in refs
        if everything.get(f"{title}/{ref}", 0) == 0
    )
    assert empty == [], (empty, everything)
    assert set(everything) >= {f"{t}/{r}" for t, refs in MUST_HAVE_ROWS.items() for r in refs}
    assert everything["variable site"] == len(SITES)
    assert everything["variable station"] == len(STATIONS) + 1

    # One site and one of its stations: fewer rows, never more, and none of the others.
    north = _run_all(clean_db, time_range, {"site": ["DSH-NORTH"], "station": ["DSH-0001"]})
    assert north["variable station"] == len(SITES["DSH-NORTH"]) + 1
    assert all(north[k] <= everything[k] for k in north)
    assert north["Power per station/A"] < everything["Power per station/A"]
    south_only = _run_all(clean_db, time_range, {"site": ["DSH-SOUTH"], "station": ALL})
    assert south_only["Stations/A"] == len(SITES["DSH-SOUTH"])
    nowhere = _run_all(clean_db, time_range, {"site": ["no such site"], "station": ALL})
    assert nowhere["Stations/A"] == 0
    assert nowhere["Power per station/A"] == 0

    # The TimescaleDB flavour (time_bucket, last; $__timeGroup as time_bucket) returns
    # the same rows, its time series' times as timestamps.
    timescale = _run_all(clean_db, time_range, {"site": ALL, "station": ALL}, timescale=True)
    assert timescale == everything


def test_every_panel_query_runs_on_an_empty_database(clean_db: str) -> None:
    """No site, no station: the variables have no options and All still expands to SQL
    that runs (the custom all value; Grafana's default All would give ``IN ()``)."""
    now = datetime.now(UTC)
    time_range = TimeRange(now - timedelta(days=1), now)
    for timescale in (False, True):
        rows = _run_all(clean_db, time_range, {"site": ALL, "station": ALL}, timescale)
        assert rows["variable site"] == 0
        assert rows["variable station"] == 0
        # aggregates without GROUP BY answer one row (of zeros or NULLs); nothing else
        assert {k for k, n in rows.items() if n} == {
            "Offline stations/A",
            "Sessions held for review/A",
            "Revenue, energy and average price/A",
            "Payments of sessions in the range/A",
        }
    # what the custom all value avoids: Grafana's default All over no options
    board = dashboards(Flavour(timescale=False))[0]
    defaults = {name: Variable(name, True, True, None) for name in ("site", "station")}
    sql = expand(
        board["panels"][1]["targets"][0]["rawSql"],
        time_range=time_range,
        interval=timedelta(minutes=5),
        variables=defaults,
        selected={"site": ALL, "station": ALL},
    )
    assert "IN ()" in sql
    with psycopg.connect(clean_db) as db, pytest.raises(psycopg.errors.SyntaxError):
        db.execute(sql)
