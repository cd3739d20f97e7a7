"""The smart meter registry: which meter measures which station connector (table ``meters``).

Sync helpers are for the CLI, the launcher and tests; :func:`get_meter` is what
the MQTT bridge (``ingest.meters``) runs, through its cache, per reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import errors
from psycopg_pool import AsyncConnectionPool

from store.db import AsyncDb

METER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


class MeterRegistryError(ValueError):
    """A meter that cannot be registered as asked (bad id, unknown station, ...)."""


@dataclass(frozen=True, slots=True)
class MeterRecord:
    meter_id: str
    charge_point_id: str
    connector_id: int
    is_billing_meter: bool
    created_at: datetime


_COLUMNS = "meter_id, charge_point_id, connector_id, is_billing_meter, created_at"


def add_meter(
    database_url: str,
    meter_id: str,
    charge_point_id: str,
    connector_id: int,
    *,
    is_billing_meter: bool = False,
) -> MeterRecord:
    """Register a meter or move it to another connector (idempotent upsert).

    Raises :class:`MeterRegistryError` for a malformed id, a negative connector,
    an unknown station, or a second billing meter on the same connector.
    """
    if not METER_ID_RE.match(meter_id):
        raise MeterRegistryError(
            f"bad meter id {meter_id!r}: 1-64 of A-Z a-z 0-9 . _ : - (starting alphanumeric)"
        )
    if connector_id < 0:
        raise MeterRegistryError("connector_id must be >= 0 (0 = the station as a whole)")
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                f"""
                INSERT INTO meters (meter_id, charge_point_id, connector_id, is_billing_meter)
                VALUES (%s, %s, %s, %s)
                ON CONFLICT (meter_id) DO UPDATE SET charge_point_id = EXCLUDED.charge_point_id,
                    connector_id = EXCLUDED.connector_id,
                    is_billing_meter = EXCLUDED.is_billing_meter
                RETURNING {_COLUMNS}
                """,
                (meter_id, charge_point_id, connector_id, is_billing_meter),
            ).fetchone()
    except errors.ForeignKeyViolation as exc:
        raise MeterRegistryError(f"unknown charge point {charge_point_id!r}") from exc
    except errors.UniqueViolation as exc:
        raise MeterRegistryError(
            f"{charge_point_id} connector {connector_id} already has a billing meter"
        ) from exc
    assert row is not None
    return MeterRecord(*row)


def remove_meter(database_url: str, meter_id: str) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute("DELETE FROM meters WHERE meter_id = %s", (meter_id,))
        return cur.rowcount == 1


def list_meters(database_url: str, charge_point_id: str | None = None) -> list[MeterRecord]:
    query = f"SELECT {_COLUMNS} FROM meters"
    params: tuple[str, ...] = ()
    if charge_point_id is not None:
        query += " WHERE charge_point_id = %s"
        params = (charge_point_id,)
    query += " ORDER BY charge_point_id, connector_id, meter_id"
    with psycopg.connect(database_url) as conn:
        return [MeterRecord(*row) for row in conn.execute(query, params).fetchall()]


async def get_meter(db: AsyncDb, meter_id: str) -> MeterRecord | None:
    query = f"SELECT {_COLUMNS} FROM meters WHERE meter_id = %s"
    if isinstance(db, AsyncConnectionPool):
        async with db.connection() as conn:
            row = await (await conn.execute(query, (meter_id,))).fetchone()
    else:
        row = await (await db.execute(query, (meter_id,))).fetchone()
    return None if row is None else MeterRecord(*row)
