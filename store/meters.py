"""The smart meter registry: which meter measures which station connector (table ``meters``).

Sync helpers are for the CLI, the launcher and tests; :func:`get_meter` is what
the MQTT bridge (``ingest.meters``) runs, through its cache, per reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, errors
from psycopg_pool import AsyncConnectionPool

from store.db import AsyncDb
from store.registry import (
    DEFAULT_LIMIT,
    NotFound,
    Page,
    RegistryError,
    fetch,
    integrity,
    page_of,
)

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
    # connector | station (connector 0: the station as a whole) | non_controllable_load
    role: str = "connector"


_COLUMNS = "meter_id, charge_point_id, connector_id, is_billing_meter, created_at, role"


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


# --------------------------------------------------------------------------- the API's registry

METER_ROLES = ("connector", "station", "non_controllable_load")
METER_FIELDS = ("charge_point_id", "connector_id", "is_billing_meter", "role")


def check_placement(role: str, connector_id: int, is_billing_meter: bool) -> None:
    """A connector meter measures connector >= 1; a station meter or another load behind
    the station's supply is on connector 0, and only a connector's meter bills."""
    if role == "connector" and connector_id < 1:
        raise RegistryError("a connector meter needs connector_id >= 1")
    if role != "connector" and connector_id != 0:
        raise RegistryError(f"a {role} meter is on connector_id 0 (the station as a whole)")
    if is_billing_meter and role == "non_controllable_load":
        raise RegistryError("a non-controllable load meter cannot be a billing meter")


def _integrity(meter_id: str, fields: dict[str, Any]) -> Any:
    return integrity(
        f"meter {meter_id!r} exists already, or {fields['charge_point_id']} connector "
        f"{fields['connector_id']} already has a billing meter",
        f"unknown station {fields['charge_point_id']!r}",
    )


async def create_meter(
    conn: AsyncConnection[Any], meter_id: str, fields: dict[str, Any]
) -> MeterRecord:
    """A new meter; the bridge learns it at its next look-up of the id (its cache holds
    an unknown id ``unknown_ttl_s``)."""
    check_placement(fields["role"], fields["connector_id"], fields["is_billing_meter"])
    with _integrity(meter_id, fields):
        rows = await fetch(
            conn,
            f"INSERT INTO meters (meter_id, {', '.join(METER_FIELDS)})"
            f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (meter_id, *(fields[name] for name in METER_FIELDS)),
        )
    return MeterRecord(*rows[0])


async def list_meter_page(
    conn: AsyncConnection[Any],
    *,
    charge_point_id: str | None = None,
    site_id: str | None = None,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[MeterRecord]:
    columns = ", ".join(f"m.{c.strip()}" for c in _COLUMNS.split(","))
    rows = await fetch(
        conn,
        f"SELECT {columns} FROM meters m JOIN stations s USING (charge_point_id)"
        " WHERE (%(cp)s::text IS NULL OR m.charge_point_id = %(cp)s)"
        " AND (%(site)s::text IS NULL OR s.site_id = %(site)s)"
        " AND (%(after)s::text IS NULL OR m.meter_id > %(after)s)"
        " ORDER BY m.meter_id LIMIT %(n)s",
        {"cp": charge_point_id, "site": site_id, "after": after, "n": limit + 1},
    )
    return page_of([MeterRecord(*r) for r in rows], limit, lambda m: m.meter_id)


async def update_meter(
    conn: AsyncConnection[Any], meter_id: str, changes: dict[str, Any]
) -> MeterRecord:
    """``changes``: any of :data:`METER_FIELDS`; the result must still be a valid placement."""
    async with conn.transaction():
        current = await get_meter(conn, meter_id)
        if current is None:
            raise NotFound(f"meter {meter_id!r} not found")
        merged = {name: changes.get(name, getattr(current, name)) for name in METER_FIELDS}
        check_placement(merged["role"], merged["connector_id"], merged["is_billing_meter"])
        with _integrity(meter_id, merged):
            rows = await fetch(
                conn,
                f"UPDATE meters SET {', '.join(f'{n} = %s' for n in METER_FIELDS)}"
                f" WHERE meter_id = %s RETURNING {_COLUMNS}",
                (*merged.values(), meter_id),
            )
    return MeterRecord(*rows[0])


async def delete_meter(conn: AsyncConnection[Any], meter_id: str) -> bool:
    rows = await fetch(
        conn, "DELETE FROM meters WHERE meter_id = %s RETURNING meter_id", (meter_id,)
    )
    return bool(rows)
