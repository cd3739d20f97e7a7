"""The load dataflow: ``ocpp.events`` + ``meter.readings`` -> 1-minute connector load
(PostgreSQL), live site totals (``load.sites`` and ``site_load_live``).

Wiring only; decisions live in :mod:`flows.load.logic`::

    kafka source --> decode_batch (one call per input batch) --dead letters--> dead letter
                         |  (charge point, [its events of the batch])
                         v
              stateful_batch(StationsLogic: logic.apply_batch)
                         |  (charge point, ([minute rows], [station loads]))
                /                          \\
       [MinuteRow]              route to site (stations.site_id): (site, [SiteInput])
            |                   stateful_batch(SiteBatchLogic: logic.SiteLogic per input)
            v                          /                 \\
  OverlappedPostgresSink <-----  SiteLoad          load.sites (key site)
  (writer thread)

Run it with ``python -m flows.run "flows.load.dataflow:from_env()"`` (plus
``-r DB_DIR -s SECS -b SECS`` for recovery). Settings:
:class:`flows.settings.LoadFlowSettings` (docs/configuration.md).

Throughput: each station's share of a Kafka batch is folded at once
(:func:`logic.apply_batch`: a changed minute row goes out once per batch with its
latest figure, every change of the station's load still reaches its site in order),
the station state is snapshotted as pickled bytes, and the minute rows of a batch
are written by binary COPY and one set-based upsert (:mod:`store.load_writers`) on
a writer thread while the flow computes on (:class:`flows.common.OverlappedPostgresSink`:
Bytewax's epoch snapshot waits for the writes, so a committed epoch never has rows
missing from the database). CHARGEFLOW_FLOW_OVERLAP_WRITES=false writes in the step
instead; with several workers set CHARGEFLOW_FLOW_SINK_PARTITIONS to their number.
Upgrading: the steps moved from ``stateful_map``/``stateful`` to ``stateful_batch``,
so recovery stores of earlier versions do not carry over (start with a fresh recovery
directory; the launcher does with its embedded broker).
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

import bytewax.operators as op
import psycopg
from bytewax.connectors.kafka import (
    KafkaSink,
    KafkaSinkMessage,
)
from bytewax.connectors.kafka.operators import KafkaOpOut
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import KeyedStream, StatefulBatchLogic
from bytewax.outputs import FixedPartitionedSink, Sink

from bus.load import SiteLoad, encode_site_load
from flows import metrics
from flows.common import (
    DeadLetter,
    FlowConfig,
    OverlappedPostgresSink,
    RawMessage,
    RetryingPostgresSink,
    decode_and_group,
    event_or_dead_letter,
    is_dead_letter,
    kafka_events_input,
    tune_gc,
)
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
from runtime.logs import with_kafka_logger
from store.load_writers import station_sites, write_load_batch

log = logging.getLogger(__name__)

FLOW_ID = "chargeflow-load"
# The input: Kafka messages and consumer errors in one stream
# (KafkaSource(raise_on_errors=False)), or a KafkaOpOut (oks, errs) as kop.input gives.
FlowInput = Callable[[Dataflow], "Stream[Any] | KafkaOpOut[Any, Any]"]
SiteLookup = Callable[[str], tuple[str, int | None] | None]
SiteMessage = KafkaSinkMessage[Any, Any]
StationOutputs = tuple[list[MinuteRow], list[StationLoad]]
RowItem = list[MinuteRow] | SiteLoad  # what the overlapped rows sink gets (keyed)


def decode(msg: RawMessage) -> LoadEvent | DeadLetter | None:
    """Load facts, a dead letter (with reason), or None (nothing about load)."""
    return event_or_dead_letter(msg, logic.decode_event, logic.InvalidEvent, log)


def decode_batch(items: list[Any]) -> list[tuple[str, list[LoadEvent]] | DeadLetter]:
    """Dead letters, and per charge point its events of the input batch in order
    (:func:`flows.common.decode_and_group` with :func:`logic.decode_event`)."""
    return decode_and_group(items, logic.decode_event, logic.InvalidEvent, log)


def step(state: StationState | None, event: LoadEvent) -> tuple[StationState, list[logic.Output]]:
    """One event through :func:`logic.apply` (:class:`StationsLogic` folds batches)."""
    return logic.apply(state, event)


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


def write_rows(conn: psycopg.Connection[Any], items: list[Any]) -> None:
    """Write MinuteRow and SiteLoad items, and lists of MinuteRow (one transaction)."""
    minutes: list[MinuteRow] = []
    sites: list[SiteLoad] = []
    for item in items:
        if type(item) is list:
            minutes.extend(item)
        elif isinstance(item, MinuteRow):
            minutes.append(item)
        else:
            sites.append(item)
    write_load_batch(conn, minutes, sites)


def row_weight(item: RowItem) -> int:
    """How many rows an item of the rows sink holds (its backpressure weight)."""
    return len(item) if type(item) is list else 1


def rows_sink(config: FlowConfig, *, overlap: bool = True, partitions: int = 1) -> Sink[Any]:
    """The production rows sink: :func:`write_rows` on a writer thread per partition
    (items keyed, minute rows as lists: one item per station and batch), or in the
    step (``overlap=False``; MinuteRow and SiteLoad items)."""
    if overlap:
        return OverlappedPostgresSink(
            config.database_url,
            write_rows,
            name=FLOW_ID,
            partitions=partitions,
            weight=row_weight,
            max_backoff_s=config.db_max_backoff_s,
        )
    return RetryingPostgresSink(
        config.database_url, write_rows, name=FLOW_ID, max_backoff_s=config.db_max_backoff_s
    )


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


def _minute_rows(item: tuple[str, StationOutputs]) -> tuple[str, list[MinuteRow]] | None:
    rows = item[1][0]
    return (item[0], rows) if rows else None


def build_flow_with(
    flow_input: FlowInput,
    rows_sink: Sink[Any],
    sites_sink: Sink[SiteMessage],
    deadletter_sink: Sink[DeadLetter],
    site_lookup: SiteLookup,
    *,
    publish_interval: timedelta = timedelta(seconds=5),
    heartbeat: timedelta = timedelta(seconds=30),
    clock: Callable[[], datetime] = logic.utc_now,
    flow_id: str = FLOW_ID,
) -> Dataflow:
    """The whole flow with its edges swapped in (production and tests share this).

    ``rows_sink`` gets MinuteRow and SiteLoad items; a FixedPartitionedSink (see
    :func:`rows_sink`) gets ``(charge point, [MinuteRow])`` and ``(site, SiteLoad)``
    instead (one item per station and batch)."""
    flow = Dataflow(flow_id)
    raw = flow_input(flow)
    stream: Stream[Any] = (
        op.merge("kafka_items", raw.oks, raw.errs) if isinstance(raw, KafkaOpOut) else raw
    )
    # One Python call per input batch: decode, dead letters, group by charge point.
    decoded = op.flat_map_batch("decode", stream, decode_batch)
    split = op.branch("split_invalid", decoded, is_dead_letter)
    invalid: Any = split.trues
    op.output("deadletter", invalid, deadletter_sink)
    grouped = cast("KeyedStream[list[LoadEvent]]", split.falses)

    outputs = op.stateful_batch("stations", grouped, StationsLogic)
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
    if isinstance(rows_sink, FixedPartitionedSink):
        op.output("postgres", op.merge("rows", minute_lists, totals), rows_sink)
    else:
        minutes = op.flat_map("minute_row", minute_lists, lambda kv: kv[1])
        op.output("postgres", op.merge("rows", minutes, site_loads), rows_sink)
    return flow


def kafka_input(config: FlowConfig) -> FlowInput:
    """The production input (:func:`flows.common.kafka_events_input`)."""
    return kafka_events_input(config, FLOW_ID)


def build_flow(
    config: FlowConfig,
    *,
    publish_interval: timedelta = timedelta(seconds=5),
    heartbeat: timedelta = timedelta(seconds=30),
    overlap_writes: bool = True,
    sink_partitions: int = 1,
) -> Dataflow:
    """The production flow: Kafka in; PostgreSQL, ``load.sites`` and dead letters out."""
    producer_config = with_kafka_logger({"acks": "all", **config.kafka_config})
    return build_flow_with(
        kafka_input(config),
        rows_sink(config, overlap=overlap_writes, partitions=sink_partitions),
        KafkaSink(config.brokers, config.topics.load_sites, producer_config),
        metrics.CountingDeadLetterSink(
            KafkaSink(config.brokers, config.topics.deadletter, producer_config), FLOW_ID
        ),
        SiteDirectory(config.database_url),
        publish_interval=publish_interval,
        heartbeat=heartbeat,
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m flows.run "flows.load.dataflow:from_env()"`` (also
    tunes the process's garbage collector: :func:`flows.common.tune_gc`)."""
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
    tune_gc()
    return flow
