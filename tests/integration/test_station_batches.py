"""The batching station writers (``store.station_batches`` over ``store.coalesce``) on
the real PostgreSQL: concurrent writes are coalesced into few statements, every write
returns only after its row is committed, the last row per key wins (an older connector
status never overwrites a newer one), a failing batch fails exactly its own writers and
the writer keeps serving, and ``close`` writes what is still queued."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from store.coalesce import CoalescingWriter
from store.station_batches import AuthSuccess, Boot, Connection, ConnectorStatus, StationWrites

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def provision(db: psycopg.Connection[Any], ids: list[str]) -> None:
    db.execute(
        "INSERT INTO stations (charge_point_id, password_hash, security_profile, auth_failures) "
        "SELECT unnest(%s::text[]), 'x', 1, 3",
        (ids,),
    )


async def test_concurrent_writes_are_coalesced_and_committed_before_they_return(
    clean_db: str, db: psycopg.Connection[Any]
) -> None:
    ids = [f"CB-{i:03d}" for i in range(300)]
    provision(db, ids)
    async with AsyncConnectionPool(clean_db, min_size=1, max_size=4, open=False) as pool:
        writes = StationWrites(pool)
        writes.start()
        check = await psycopg.AsyncConnection.connect(clean_db, autocommit=True)

        async def station(i: int, cp: str) -> None:
            at = T0 + timedelta(seconds=i)
            await writes.auth_success.write(AuthSuccess(cp, at, "127.0.0.7", b"mac-" + cp.encode()))
            await writes.connection.write(Connection(cp, "gw-batch", at))
            await writes.boot.write(Boot(cp, "V", "M", None, "1.2", "1.6", at))
            await writes.connector_status.write(ConnectorStatus(cp, 1, "Available", "NoError", at))
            # committed before write returned: another connection sees every row
            cur = await check.execute(
                "SELECT s.auth_failures, s.last_auth_ip, s.vendor, v.credential_mac, "
                "c.gateway_id, k.status FROM stations s "
                "JOIN station_verified_credentials v USING (charge_point_id) "
                "JOIN station_connections c USING (charge_point_id) "
                "JOIN connectors k USING (charge_point_id) WHERE s.charge_point_id = %s",
                (cp,),
            )
            assert await cur.fetchall() == [
                (0, "127.0.0.7", "V", b"mac-" + cp.encode(), "gw-batch", "Available")
            ]

        await asyncio.gather(*(station(i, cp) for i, cp in enumerate(ids)))
        for writer in (writes.auth_success, writes.connection, writes.boot):
            assert writer.rows == len(ids)
            assert writer.batches < len(ids) / 5, (writer.name, writer.batches)
        await check.close()
        await writes.close()


async def test_last_row_per_key_wins_and_an_older_status_never_overwrites(
    clean_db: str, db: psycopg.Connection[Any]
) -> None:
    provision(db, ["CB-A"])
    async with AsyncConnectionPool(clean_db, min_size=1, max_size=2, open=False) as pool:
        writes = StationWrites(pool)
        writes.start()
        await writes.connector_status.write(
            ConnectorStatus("CB-A", 1, "Charging", "NoError", T0 + timedelta(minutes=5))
        )
        await asyncio.gather(
            writes.connection.write(Connection("CB-A", "gw-1", T0)),
            writes.connection.write(Connection("CB-A", "gw-2", T0 + timedelta(seconds=1))),
            writes.boot.write(Boot("CB-A", "V1", "M", None, None, "1.6", T0)),
            writes.boot.write(Boot("CB-A", "V2", "M", "S", "2.0", "2.0.1", T0)),
            # a newer and an older status in one batch; the stored one is newer than both
            writes.connector_status.write(
                ConnectorStatus("CB-A", 1, "Faulted", "OtherError", T0 + timedelta(minutes=1))
            ),
            writes.connector_status.write(
                ConnectorStatus("CB-A", 1, "Available", "NoError", T0 + timedelta(minutes=2))
            ),
            writes.connector_status.write(ConnectorStatus("CB-NEW", 2, "Available", "NoError", T0)),
        )
        await writes.close()
    assert db.execute("SELECT gateway_id FROM station_connections").fetchall() == [("gw-2",)]
    assert db.execute(
        "SELECT vendor, serial_number, firmware_version, ocpp_version FROM stations "
        "WHERE charge_point_id = 'CB-A'"
    ).fetchall() == [("V2", "S", "2.0", "2.0.1")]
    assert db.execute(
        "SELECT charge_point_id, connector_id, status FROM connectors ORDER BY 1"
    ).fetchall() == [("CB-A", 1, "Charging"), ("CB-NEW", 2, "Available")]


async def test_a_failing_batch_fails_its_writers_and_the_writer_keeps_serving(
    clean_db: str, db: psycopg.Connection[Any]
) -> None:
    provision(db, ["CB-OK"])
    async with AsyncConnectionPool(clean_db, min_size=1, max_size=2, open=False) as pool:
        writes = StationWrites(pool)
        writes.start()
        # no stations row for CB-MISSING: the connection row's foreign key fails the batch
        outcomes = await asyncio.gather(
            writes.connection.write(Connection("CB-MISSING", "gw", T0)),
            writes.connection.write(Connection("CB-OK", "gw", T0)),
            return_exceptions=True,
        )
        assert all(isinstance(o, psycopg.errors.ForeignKeyViolation) for o in outcomes)
        await writes.connection.write(Connection("CB-OK", "gw-later", T0))
        await writes.close()
    assert db.execute("SELECT charge_point_id, gateway_id FROM station_connections").fetchall() == [
        ("CB-OK", "gw-later")
    ]


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


async def test_close_writes_what_is_queued_then_refuses() -> None:
    taken: list[list[int]] = []
    release = asyncio.Event()

    async def write_many(rows: list[int]) -> None:
        taken.append(rows)
        await release.wait()

    writer = CoalescingWriter[int](write_many, name="test")
    writer.start()
    first = asyncio.ensure_future(writer.write(1))
    await until(lambda: taken == [[1]])  # the writer is busy with [1]
    queued = [asyncio.ensure_future(writer.write(i)) for i in (2, 3)]
    closing = asyncio.ensure_future(writer.close())
    release.set()
    await asyncio.gather(first, *queued, closing)
    assert taken == [[1], [2, 3]]
    with pytest.raises(RuntimeError, match="not running"):
        await writer.write(4)
