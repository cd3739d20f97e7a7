"""store.load.write_load_batch against the real database (minute rows by binary
COPY into staging + one upsert: last row per key wins, replays change nothing), the
overlapped sink the load flow writes through, and the flow's tables under different
batchings and write modes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from bytewax.testing import run_main

from bench.common import StreamSpec, messages, produce_all
from bench.flows import register_sites
from bus.topics import Topics
from chargeflow.stack import EmbeddedBroker
from flows.config import FlowConfig
from flows.load.dataflow import LoadRows, build_flow
from flows.load.logic import MinuteRow
from flows.sinks.database import PostgresSink
from store.load import write_load_batch
from tests.support.load_events import T0

pytestmark = pytest.mark.integration

M = timedelta(minutes=1)


def row(cp: str, minute: int, **changes: Any) -> MinuteRow:
    base = MinuteRow(
        charge_point_id=cp,
        connector_id=1,
        bucket=T0 + minute * M,
        sample_count=2,
        power_sum_w=14_400.0,
        avg_power_w=7_200.0,
        max_power_w=7_400.0,
        energy_wh=Decimal("120.50"),
        register_wh=Decimal("10120.50"),
        source="ocpp",
    )
    return replace(base, **changes)


def table(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute("SELECT * FROM load_connector_1m ORDER BY 1, 2, 3").fetchall()


def versions(db: psycopg.Connection[Any]) -> list[str]:
    return [
        r[0]
        for r in db.execute(
            "SELECT xmin::text FROM load_connector_1m ORDER BY charge_point_id, bucket"
        )
    ]


def test_copy_upsert_last_row_per_key_wins_and_replays_change_nothing(
    db: psycopg.Connection[Any],
) -> None:
    first = [
        row("A", 0),
        row("A", 1, sample_count=1),
        row("B", 0, connector_id=0),
        row("A", 1, sample_count=3, max_power_w=9_000.0),  # same key: the last wins
        row(
            "B",
            1,
            sample_count=0,
            power_sum_w=0,
            avg_power_w=None,
            max_power_w=None,
            energy_wh=None,
            register_wh=None,
            source="meter:billing",
        ),
    ]
    write_load_batch(db, first, [])
    got = table(db)
    assert len(got) == 4
    by_key = {(r[0], r[1], r[2]): r for r in got}
    assert by_key[("A", 1, T0 + M)][3:7] == (3, 14_400.0, 7_200.0, 9_000.0)
    assert by_key[("A", 1, T0)][7:] == (Decimal("120.50"), Decimal("10120.50"), "ocpp")
    assert by_key[("B", 1, T0 + M)][3:] == (0, 0.0, None, None, None, None, "meter:billing")

    # A replay (recovery, or the topic read again) leaves every row as it is: not even
    # rewritten with the same values.
    before, tuples = got, versions(db)
    write_load_batch(db, first, [])
    LoadRows().write(db, [*first])  # the flow's rows writer
    assert table(db) == before
    assert versions(db) == tuples

    # A changed figure is updated in place; the other rows stay untouched.
    write_load_batch(db, [row("A", 0, energy_wh=Decimal(200)), row("A", 0)], [])
    assert table(db) == before  # the last one per key (unchanged) won
    write_load_batch(db, [row("A", 0), row("A", 0, energy_wh=Decimal(200))], [])
    after = {(r[0], r[2]): r for r in table(db)}
    assert after[("A", T0)][7] == Decimal(200)
    assert versions(db)[1:] == tuples[1:]


def test_staging_survives_a_rolled_back_first_write(db: psycopg.Connection[Any]) -> None:
    with db.transaction():
        write_load_batch(db, [row("A", 0)], [])
        raise psycopg.Rollback  # the staging table created in here is gone again
    assert table(db) == []
    for minute in range(3):  # the next writes create it (again) and reuse it
        write_load_batch(db, [row("A", minute)], [])
    assert len(table(db)) == 3


def test_overlapped_sink_commits_before_the_snapshot_returns_and_surfaces_errors(
    db: psycopg.Connection[Any], clean_db: str
) -> None:
    sink = PostgresSink(LoadRows(), clean_db, name="test-load", max_pending=2)
    part = sink.build_part("postgres", "writer-0", None)
    try:
        for minute in range(0, 12, 3):  # more than max_pending: write_batch waits
            part.write_batch([[row("A", minute)], [row("A", minute + 1), row("A", minute + 2)]])
        part.snapshot()  # what Bytewax calls before it commits an epoch
        assert len(table(db)) == 12
    finally:
        part.close()

    class Broken:
        def write(self, conn: psycopg.Connection[Any], rows: list[Any]) -> None:
            raise ValueError("not an outage")

    failing = PostgresSink(Broken(), clean_db, name="test-load").build_part(
        "postgres", "writer-0", None
    )
    failing.write_batch([[row("B", 0)]])
    with pytest.raises(RuntimeError, match="could not write"):
        failing.snapshot()  # the epoch must not commit
    failing.close()  # Bytewax closes after the error: no second raise


def test_load_flow_tables_do_not_depend_on_batching_or_write_mode(
    broker: EmbeddedBroker, topics: Topics, db: psycopg.Connection[Any], clean_db: str
) -> None:
    spec = StreamSpec(
        stations=6, meter_events=400, meter_values_per_session=7, status_notifications=True
    )
    produce_all(broker.bootstrap, topics.ocpp_events, messages(spec))
    register_sites(clean_db, spec.stations, 2, 20_000)

    def run(batch_size: int, overlap: bool) -> list[list[tuple[Any, ...]]]:
        db.execute("TRUNCATE load_connector_1m, site_load_live")
        config = FlowConfig(
            brokers=[broker.bootstrap],
            database_url=clean_db,
            topics=topics,
            tail=False,
            batch_size=batch_size,
        )
        run_main(build_flow(config, overlap_writes=overlap))
        return [
            table(db),
            db.execute(
                "SELECT site_id, as_of, total_w, station_count, stations FROM site_load_live"
                " ORDER BY 1"
            ).fetchall(),
        ]

    expected = run(1000, True)
    assert len(expected[0]) == spec.meter_events  # every sample in a minute of its own
    assert len(expected[1]) == 2
    assert run(1, False) == expected
    assert run(7, True) == expected
