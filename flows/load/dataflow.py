"""The load dataflow: ``ocpp.events`` + ``meter.readings`` -> 1-minute connector load
(PostgreSQL), live site totals (``load.sites`` and ``site_load_live``).

Wiring only; decisions live in :mod:`flows.load.logic`::

    kafka input (both topics) --> decode envelope --> key by charge point
        |                              |                     |
        errs                        invalid        stateful_map(logic.apply)
        v                              v               /                \\
    dead letter  <-------------  dead letter     MinuteRow            StationLoad
                                                     |        route to site (stations.site_id)
                                                     |        key by site -> SiteLogic
                                                     v               /           \\
                                               PostgresSink <-- SiteLoad    load.sites (key site)

Run it with ``python -m flows.run "flows.load.dataflow:from_env()"`` (plus
``-r DB_DIR -s SECS -b SECS`` for recovery). Env: as :func:`flows.common.config_from_env`
plus CHARGEFLOW_LOAD_PUBLISH_INTERVAL_S (default 5) and
CHARGEFLOW_LOAD_HEARTBEAT_S (default 30).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import bytewax.operators as op
import psycopg
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.connectors.kafka.operators import KafkaOpOut
from bytewax.dataflow import Dataflow
from bytewax.outputs import Sink

from bus.load import SiteLoad, encode_site_load
from flows import common
from flows.common import DeadLetter, FlowConfig, RawMessage, RetryingPostgresSink
from flows.load import logic
from flows.load.logic import LoadEvent, MinuteRow, Output, StationState
from store.load_writers import station_sites, write_load_batch

log = logging.getLogger(__name__)

FLOW_ID = "chargeflow-load"
FlowInput = Callable[[Dataflow], KafkaOpOut[Any, Any]]
SiteLookup = Callable[[str], tuple[str, int | None] | None]
SiteMessage = KafkaSinkMessage[Any, Any]


def decode(msg: RawMessage) -> LoadEvent | DeadLetter | None:
    """Load facts, a dead letter (with reason), or None (nothing about load)."""
    return common.decode_or_dead_letter(msg, logic.parse_envelope, logic.InvalidEvent, log)


def step(state: StationState | None, event: LoadEvent) -> tuple[StationState, list[Output]]:
    """The stateful_map mapper (module-level so snapshots stay picklable)."""
    return logic.apply(state, event)


def site_message(site: SiteLoad) -> SiteMessage:
    return KafkaSinkMessage(key=site.site_id.encode(), value=encode_site_load(site))


def write_rows(conn: psycopg.Connection[Any], items: list[MinuteRow | SiteLoad]) -> None:
    minutes = [i for i in items if isinstance(i, MinuteRow)]
    sites = [i for i in items if isinstance(i, SiteLoad)]
    write_load_batch(conn, minutes, sites)


class SiteDirectory:
    """Which site a station belongs to (and the site's capacity), cached.

    The whole map is reloaded every ``refresh_s``, and at most every ``miss_refresh_s``
    when a station is not in it (newly provisioned). While the database is down the
    last map is used.
    """

    def __init__(self, database_url: str, refresh_s: float = 30.0,
                 miss_refresh_s: float = 5.0) -> None:
        self._url = database_url
        self._refresh_s = refresh_s
        self._miss_refresh_s = miss_refresh_s
        self._sites: dict[str, tuple[str, int | None]] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def _reload(self, now: float) -> None:
        self._loaded_at = now
        try:
            with psycopg.connect(self._url, autocommit=True, connect_timeout=5,
                                 application_name=FLOW_ID) as conn:
                self._sites = station_sites(conn)
        except psycopg.Error as exc:
            log.warning("could not load station sites (%s); using the last known map",
                        type(exc).__name__)

    def __call__(self, charge_point_id: str) -> tuple[str, int | None] | None:
        with self._lock:
            now = time.monotonic()
            loaded = self._loaded_at
            if loaded is None or now - loaded >= self._refresh_s or (
                    charge_point_id not in self._sites and now - loaded >= self._miss_refresh_s):
                self._reload(now)
            return self._sites.get(charge_point_id)


def build_flow_with(
    flow_input: FlowInput,
    rows_sink: Sink[MinuteRow | SiteLoad],
    sites_sink: Sink[SiteMessage],
    deadletter_sink: Sink[DeadLetter],
    site_lookup: SiteLookup,
    *,
    publish_interval: timedelta = timedelta(seconds=5),
    heartbeat: timedelta = timedelta(seconds=30),
    clock: Callable[[], datetime] = logic.utc_now,
    flow_id: str = FLOW_ID,
) -> Dataflow:
    """The whole flow with its edges swapped in (production and tests share this)."""
    flow = Dataflow(flow_id)
    raw = flow_input(flow)
    consumer_errors = op.map("consume_errors", raw.errs, common.consume_error_dead_letter)

    decoded = op.filter_map("decode", raw.oks, decode)
    split = op.branch("split_invalid", decoded, lambda x: isinstance(x, KafkaSinkMessage))
    invalid: Any = split.trues
    events: Any = split.falses
    op.output("deadletter", op.merge("dead_letters", consumer_errors, invalid), deadletter_sink)

    keyed = op.key_on("key_by_charge_point", events, lambda e: e.charge_point_id)
    outputs = op.stateful_map("stations", keyed, step)
    items = op.flat_map("outputs", outputs, lambda kv: kv[1])
    kinds = op.branch("split_minutes", items, lambda x: isinstance(x, MinuteRow))
    minutes: Any = kinds.trues
    loads: Any = kinds.falses

    routed = op.filter_map(
        "route_to_site", loads, lambda s: logic.site_input(s, site_lookup(s.charge_point_id)))
    by_site = op.key_on("key_by_site", routed, lambda s: s.site_id)
    totals = op.stateful(
        "sites", by_site, logic.site_logic_builder(publish_interval, heartbeat, clock))
    site_loads = op.map("site_loads", totals, lambda kv: kv[1])
    op.output("load_sites", op.map("site_messages", site_loads, site_message), sites_sink)
    op.output("postgres", op.merge("rows", minutes, site_loads), rows_sink)
    return flow


def kafka_input(config: FlowConfig) -> FlowInput:
    def build(flow: Dataflow) -> KafkaOpOut[Any, Any]:
        return kop.input(
            "kafka_in", flow, brokers=config.brokers,
            topics=[config.topics.ocpp_events, config.topics.meter_readings],
            tail=config.tail, starting_offset=config.starting_offset,
            add_config=config.kafka_config or None, batch_size=config.batch_size,
        )

    return build


def build_flow(config: FlowConfig, *, publish_interval: timedelta = timedelta(seconds=5),
               heartbeat: timedelta = timedelta(seconds=30)) -> Dataflow:
    """The production flow: Kafka in; PostgreSQL, ``load.sites`` and dead letters out."""
    producer_config = {"acks": "all", **config.kafka_config}
    return build_flow_with(
        kafka_input(config),
        RetryingPostgresSink(config.database_url, write_rows, name=FLOW_ID,
                             max_backoff_s=config.db_max_backoff_s),
        KafkaSink(config.brokers, config.topics.load_sites, producer_config),
        KafkaSink(config.brokers, config.topics.deadletter, producer_config),
        SiteDirectory(config.database_url),
        publish_interval=publish_interval, heartbeat=heartbeat,
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m flows.run "flows.load.dataflow:from_env()"``."""
    return build_flow(
        common.config_from_env(),
        publish_interval=timedelta(
            seconds=common.env_float("CHARGEFLOW_LOAD_PUBLISH_INTERVAL_S", 5.0)),
        heartbeat=timedelta(seconds=common.env_float("CHARGEFLOW_LOAD_HEARTBEAT_S", 30.0)),
    )
