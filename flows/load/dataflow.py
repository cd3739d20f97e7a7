"""The load dataflow: ``ocpp.events`` + ``meter.readings`` -> 1-minute connector load
(PostgreSQL), live site totals (``load.sites`` and ``site_load_live``).

Wiring only; decisions live in :mod:`flows.load.logic`::

    kafka_events (flows.source: one decode per input batch) --dead letters--> dead letter
                         |  (charge point, [its events of the batch])
                         v
              stateful_batch(StationsLogic: logic.apply_batch)
                         |  (charge point, ([minute rows], [station loads]))
                /                          \\
       [MinuteRow]              route to site (stations.site_id): (site, [SiteInput])
            |                   stateful_batch(SiteBatchLogic: logic.SiteLogic per input)
            v                          /                 \\
  PostgresSink(LoadRows) <---- [SiteLoad]          load.sites (key site)
  (writer thread)

Run it with ``python -m flows.run "flows.load.dataflow:from_env()"`` (plus
``-r DB_DIR -s SECS -b SECS`` for recovery). Settings:
:class:`flows.settings.LoadFlowSettings` (docs/configuration.md).

Throughput: each station's share of a Kafka batch is folded at once
(:func:`logic.apply_batch`: a changed minute row goes out once per batch with its
latest figure, every change of the station's load still reaches its site in order),
the station state is snapshotted as pickled bytes, and the minute rows of a batch
are written by binary COPY and one set-based upsert (:mod:`store.load`) on
a writer thread while the flow computes on (:class:`flows.sinks.database.PostgresSink`:
Bytewax's epoch snapshot waits for the writes, so a committed epoch never has rows
missing from the database). CHARGEFLOW_FLOW_OVERLAP_WRITES=false writes in the step
instead; with several workers set CHARGEFLOW_FLOW_SINK_PARTITIONS to their number.
Recovery stores of versions before ADR 0007 do not carry over (the step ids changed;
start with a fresh recovery directory; the launcher does with its embedded broker).
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

import bytewax.operators as op
import psycopg
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import KeyedStream, StatefulBatchLogic
from bytewax.outputs import Sink

from bus.load import SiteLoad, encode_site_load
from bus.times import utc_now
from flows import metrics
from flows.config import FLOW_GC_YOUNG_THRESHOLD, FlowConfig
from flows.load import logic
from flows.load.logic import (
    LoadEvent,
    MinuteRow,
    SiteInput,
    SiteLogic,
    SiteState,
    StationLoad,
    StationState,
)
from flows.settings import LoadFlowSettings
from flows.sinks.database import PostgresSink, postgres_sink
from flows.sinks.kafka import dead_letter_sink, kafka_sink
from flows.sinks.output import rows_output
from flows.source import DeadLetter, kafka_events, kafka_source
from runtime.gc import tune_gc
from store.load import write_load_batch
from store.sites import station_sites

log = logging.getLogger(__name__)

FLOW_ID = "chargeflow-load"
SiteLookup = Callable[[str], tuple[str, int | None] | None]
SiteMessage = KafkaSinkMessage[Any, Any]
StationOutputs = tuple[list[MinuteRow], list[StationLoad]]
LoadRow = MinuteRow | SiteLoad


class StationsLogic(StatefulBatchLogic[list[LoadEvent], StationOutputs, bytes]):
    """The per-charge-point state of the ``stations`` step: ``on_batch`` folds the
    station's events of one Bytewax batch through :func:`logic.apply_batch` and emits
    its minute rows and loads as one item; ``snapshot`` pickles the state (an
    independent copy, several times cheaper than a deep copy)."""

    def __init__(self, resume: bytes | None) -> None:
        self.state: StationState | None = None if resume is None else pickle.loads(resume)

    def on_batch(self, values: list[list[LoadEvent]]) -> tuple[list[StationOutputs], bool]:
        events = values[0] if len(values) == 1 else [e for chunk in values for e in chunk]
        self.state, rows, loads = logic.apply_batch(self.state, events)
        return ([(rows, loads)] if rows or loads else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


class SiteBatchLogic(StatefulBatchLogic[list[SiteInput], SiteLoad, SiteState]):
    """The ``sites`` step: a :class:`logic.SiteLogic` fed the station loads of a batch
    one by one, in order (publication decisions as if they came one item each)."""

    def __init__(self, site: SiteLogic) -> None:
        self.site = site

    def on_batch(self, values: list[list[SiteInput]]) -> tuple[list[SiteLoad], bool]:
        out: list[SiteLoad] = []
        on_item = self.site.on_item
        for inputs in values:
            for item in inputs:
                published, _ = on_item(item)
                out.extend(published)
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[SiteLoad], bool]:
        published, _ = self.site.on_notify()
        return list(published), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[SiteLoad], bool]:
        published, _ = self.site.on_eof()
        return list(published), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return self.site.notify_at()

    def snapshot(self) -> SiteState:
        return self.site.snapshot()


def site_batch_logic(
    interval: timedelta,
    heartbeat: timedelta,
    clock: Callable[[], datetime],
    resume: SiteState | None,
) -> SiteBatchLogic:
    return SiteBatchLogic(SiteLogic(resume, interval=interval, heartbeat=heartbeat, clock=clock))


def site_message(site: SiteLoad) -> SiteMessage:
    return KafkaSinkMessage(key=site.site_id.encode(), value=encode_site_load(site))


class LoadRows:
    """Minute rows and live site totals of a batch, in one transaction."""

    def write(self, conn: psycopg.Connection[Any], rows: list[LoadRow]) -> None:
        minutes: list[MinuteRow] = []
        sites: list[SiteLoad] = []
        for row in rows:
            if type(row) is MinuteRow:
                minutes.append(row)
            else:
                sites.append(cast(SiteLoad, row))
        write_load_batch(conn, minutes, sites)


class SiteDirectory:
    """Which site a station belongs to (and the site's capacity), cached.

    The whole map is reloaded every ``refresh_s``, and at most every ``miss_refresh_s``
    when a station is not in it (newly provisioned). While the database is down the
    last map is used.
    """

    def __init__(
        self, database_url: str, refresh_s: float = 30.0, miss_refresh_s: float = 5.0
    ) -> None:
        self._url = database_url
        self._refresh_s = refresh_s
        self._miss_refresh_s = miss_refresh_s
        self._sites: dict[str, tuple[str, int | None]] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def _reload(self, now: float) -> None:
        self._loaded_at = now
        try:
            with psycopg.connect(
                self._url, autocommit=True, connect_timeout=5, application_name=FLOW_ID
            ) as conn:
                self._sites = station_sites(conn)
        except psycopg.Error as exc:
            log.warning(
                "could not load station sites (%s); using the last known map", type(exc).__name__
            )

    def __call__(self, charge_point_id: str) -> tuple[str, int | None] | None:
        with self._lock:
            now = time.monotonic()
            loaded = self._loaded_at
            if (
                loaded is None
                or now - loaded >= self._refresh_s
                or (charge_point_id not in self._sites and now - loaded >= self._miss_refresh_s)
            ):
                self._reload(now)
            return self._sites.get(charge_point_id)


class _SiteRouter:
    """A station's loads of one batch as its site's inputs (None: no site, no loads)."""

    def __init__(self, site_lookup: SiteLookup) -> None:
        self._lookup = site_lookup

    def __call__(self, item: tuple[str, StationOutputs]) -> tuple[str, list[SiteInput]] | None:
        cp, (_, loads) = item
        if not loads:
            return None
        site = self._lookup(cp)
        if site is None:
            return None
        inputs = [SiteInput(site_id=site[0], capacity_w=site[1], station=load) for load in loads]
        return site[0], inputs


def _minute_rows(item: tuple[str, StationOutputs]) -> tuple[str, list[LoadRow]] | None:
    rows = item[1][0]
    return (item[0], cast("list[LoadRow]", rows)) if rows else None


def _site_rows(item: tuple[str, SiteLoad]) -> tuple[str, list[LoadRow]]:
    return item[0], [item[1]]


def build_flow_with(
    source: Source[Any],
    rows_sink: Sink[Any],
    sites_sink: Sink[SiteMessage],
    deadletter_sink: Sink[DeadLetter],
    site_lookup: SiteLookup,
    *,
    publish_interval: timedelta = timedelta(seconds=5),
    heartbeat: timedelta = timedelta(seconds=30),
    clock: Callable[[], datetime] = utc_now,
    flow_id: str = FLOW_ID,
) -> Dataflow:
    """The whole flow with its edges swapped in (production and tests share this).

    ``source`` gives Kafka messages and consumer errors; ``rows_sink`` gets
    ``(key, [MinuteRow | SiteLoad])`` if it is a ``FixedPartitionedSink``
    (:class:`flows.sinks.database.PostgresSink`), else single rows."""
    flow = Dataflow(flow_id)
    events = kafka_events("input", flow, source, logic.decode_event, deadletter_sink)
    outputs = op.stateful_batch("stations", events, StationsLogic)
    minute_lists = op.filter_map("minute_rows", outputs, _minute_rows)

    by_site = cast(
        "KeyedStream[list[SiteInput]]",
        op.filter_map("route_to_site", outputs, _SiteRouter(site_lookup)),
    )
    totals = op.stateful_batch(
        "sites", by_site, partial(site_batch_logic, publish_interval, heartbeat, clock)
    )
    site_loads = op.map("site_loads", totals, lambda kv: kv[1])
    op.output("load_sites", op.map("site_messages", site_loads, site_message), sites_sink)
    site_rows = op.map("site_rows", totals, _site_rows)
    rows_output("postgres", op.merge("rows", minute_lists, site_rows), rows_sink)
    return flow


def rows_sink(config: FlowConfig) -> PostgresSink[LoadRow]:
    """The production rows sink: :class:`LoadRows` through the flows' database sink."""
    return postgres_sink(config, LoadRows(), FLOW_ID)


def build_flow(
    config: FlowConfig,
    *,
    publish_interval: timedelta = timedelta(seconds=5),
    heartbeat: timedelta = timedelta(seconds=30),
    overlap_writes: bool = True,
    sink_partitions: int = 1,
) -> Dataflow:
    """The production flow: Kafka in; PostgreSQL, ``load.sites`` and dead letters out."""
    sink_config = replace(config, overlap_writes=overlap_writes, sink_partitions=sink_partitions)
    return build_flow_with(
        kafka_source(config, FLOW_ID, [config.topics.ocpp_events, config.topics.meter_readings]),
        rows_sink(sink_config),
        kafka_sink(config, config.topics.load_sites),
        dead_letter_sink(config, FLOW_ID),
        SiteDirectory(config.database_url),
        publish_interval=publish_interval,
        heartbeat=heartbeat,
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m flows.run "flows.load.dataflow:from_env()"`` (also
    tunes the process's garbage collector: :func:`runtime.gc.tune_gc`)."""
    settings = LoadFlowSettings.load()
    config = settings.flow_config()
    flow = build_flow(
        config,
        publish_interval=timedelta(seconds=settings.load_publish_interval_s),
        heartbeat=timedelta(seconds=settings.load_heartbeat_s),
        overlap_writes=config.overlap_writes,
        sink_partitions=config.sink_partitions,
    )
    metrics.serve(FLOW_ID, config, [config.topics.ocpp_events, config.topics.meter_readings])
    tune_gc(FLOW_GC_YOUNG_THRESHOLD)
    return flow
