"""The operator registry's writes and reads (``/v1/stations``, their connectors; the
errors and pages shared with ``store.sites``, ``store.id_tokens`` and ``store.meters``).

A station is provisioned, changed, given a new password and decommissioned here; the
gateway reads what is written (``store.stations.get_station_credentials``) at each
login. A decommissioned station keeps its row (history names it) and can no longer
log in. See docs/registry.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

from psycopg import AsyncConnection, errors, sql

from store.stations import SECURITY_PROFILES

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class RegistryError(ValueError):
    """A registry write that cannot be done as asked; ``status`` says why (HTTP terms)."""

    status = 422


class NotFound(RegistryError):
    status = 404


class Conflict(RegistryError):
    status = 409


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T] = field(default_factory=list)
    next_after: str | None = None  # the last id of the page; None on the last page


@contextmanager
def integrity(duplicate: str, missing_reference: str) -> Iterator[None]:
    """A unique violation -> :class:`Conflict`, a foreign key one -> :class:`RegistryError`;
    a CHECK the body's schema could not state (a current that rounds to 0.0 A) too."""
    try:
        yield
    except errors.UniqueViolation:
        raise Conflict(duplicate) from None
    except errors.ForeignKeyViolation:
        raise RegistryError(missing_reference) from None
    except errors.CheckViolation as exc:
        constraint = exc.diag.constraint_name or "a check"
        raise RegistryError(f"a value is out of range ({constraint})") from None


def page_of(items: Sequence[T], limit: int, key: Any) -> Page[T]:
    """A page from ``limit + 1`` rows: the extra row only says there is a next page."""
    shown = list(items[:limit])
    return Page(shown, key(shown[-1]) if len(items) > limit and shown else None)


async def fetch(conn: AsyncConnection[Any], query: Any, params: Any = ()) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params)
    return list(await cur.fetchall()) if cur.description is not None else []


# --------------------------------------------------------------------------- stations


@dataclass(frozen=True, slots=True)
class StationRecord:
    charge_point_id: str
    site_id: str | None
    security_profile: int
    has_password: bool
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    ocpp_version: str | None
    created_at: datetime
    last_boot_at: datetime | None
    last_seen_at: datetime | None
    decommissioned_at: datetime | None


_STATION = (
    "charge_point_id, site_id, security_profile, password_hash IS NOT NULL, vendor, model,"
    " serial_number, firmware_version, ocpp_version, created_at, last_boot_at, last_seen_at,"
    " decommissioned_at"
)
StationStatus = Literal["active", "decommissioned"]


def check_profile(security_profile: int, has_password: bool) -> None:
    """Profiles this gateway enforces: 0 (none), 1 (Basic), 2 (Basic over TLS); 3 is
    TLS client certificates, which the gateway cannot check (docs/registry.md)."""
    if security_profile == 3:
        raise RegistryError(
            "security profile 3 (TLS client certificates) is not supported by the gateway: "
            "it authenticates stations with HTTP Basic (profiles 1 and 2) only"
        )
    if security_profile not in SECURITY_PROFILES:
        raise RegistryError(f"security_profile must be one of {SECURITY_PROFILES}")
    if security_profile in (1, 2) and not has_password:
        raise RegistryError(f"security profile {security_profile} needs a password")


async def create_station(
    conn: AsyncConnection[Any],
    charge_point_id: str,
    *,
    site_id: str | None,
    security_profile: int,
    password_hash: str | None,
    vendor: str | None = None,
    model: str | None = None,
) -> StationRecord:
    """A new station (:class:`Conflict` when the id exists, decommissioned or not)."""
    check_profile(security_profile, password_hash is not None)
    with integrity(f"station {charge_point_id!r} exists already", f"unknown site {site_id!r}"):
        rows = await fetch(
            conn,
            f"INSERT INTO stations (charge_point_id, site_id, security_profile, password_hash,"
            f" vendor, model) VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_STATION}",
            (charge_point_id, site_id, security_profile, password_hash, vendor, model),
        )
    return StationRecord(*rows[0])


async def get_station(conn: AsyncConnection[Any], charge_point_id: str) -> StationRecord | None:
    rows = await fetch(
        conn, f"SELECT {_STATION} FROM stations WHERE charge_point_id = %s", (charge_point_id,)
    )
    return StationRecord(*rows[0]) if rows else None


async def list_stations(
    conn: AsyncConnection[Any],
    *,
    site_id: str | None = None,
    status: StationStatus | None = None,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[StationRecord]:
    """Stations by id; ``status`` active or decommissioned (None: both)."""
    where = [sql.SQL("TRUE")]
    params: list[Any] = []
    if site_id is not None:
        where.append(sql.SQL("site_id = %s"))
        params.append(site_id)
    if status is not None:
        where.append(sql.SQL(f"decommissioned_at IS {'' if status == 'active' else 'NOT '}NULL"))
    if after is not None:
        where.append(sql.SQL("charge_point_id > %s"))
        params.append(after)
    query = sql.SQL(
        f"SELECT {_STATION} FROM stations WHERE {{}} ORDER BY charge_point_id LIMIT %s"
    ).format(sql.SQL(" AND ").join(where))
    rows = await fetch(conn, query, (*params, limit + 1))
    return page_of([StationRecord(*r) for r in rows], limit, lambda s: s.charge_point_id)


async def _active(conn: AsyncConnection[Any], charge_point_id: str) -> StationRecord:
    station = await get_station(conn, charge_point_id)
    if station is None:
        raise NotFound(f"station {charge_point_id!r} not found")
    if station.decommissioned_at is not None:
        raise Conflict(f"station {charge_point_id!r} is decommissioned")
    return station


async def update_station(
    conn: AsyncConnection[Any], charge_point_id: str, changes: dict[str, Any]
) -> StationRecord:
    """``changes``: any of site_id (None = on no site), security_profile, vendor, model."""
    async with conn.transaction():
        station = await _active(conn, charge_point_id)
        if "security_profile" in changes:
            check_profile(changes["security_profile"], station.has_password)
        if not changes:
            return station
        sets = sql.SQL(", ").join(
            sql.SQL("{} = %s").format(sql.Identifier(name)) for name in changes
        )
        with integrity("conflict", f"unknown site {changes.get('site_id')!r}"):
            rows = await fetch(
                conn,
                sql.SQL(
                    f"UPDATE stations SET {{}} WHERE charge_point_id = %s RETURNING {_STATION}"
                ).format(sets),
                (*changes.values(), charge_point_id),
            )
    return StationRecord(*rows[0])


async def set_password(
    conn: AsyncConnection[Any], charge_point_id: str, password_hash: str
) -> StationRecord:
    """A new password: the old one (and its verified-credential record) stops working."""
    async with conn.transaction():
        await _active(conn, charge_point_id)
        await conn.execute(
            "DELETE FROM station_verified_credentials WHERE charge_point_id = %s",
            (charge_point_id,),
        )
        rows = await fetch(
            conn,
            f"UPDATE stations SET password_hash = %s WHERE charge_point_id = %s"
            f" RETURNING {_STATION}",
            (password_hash, charge_point_id),
        )
    return StationRecord(*rows[0])


async def decommission_station(conn: AsyncConnection[Any], charge_point_id: str) -> StationRecord:
    """Soft: the row stays (history), logins are refused from now on. Idempotent."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM station_verified_credentials WHERE charge_point_id = %s",
            (charge_point_id,),
        )
        rows = await fetch(
            conn,
            f"UPDATE stations SET decommissioned_at = COALESCE(decommissioned_at, now())"
            f" WHERE charge_point_id = %s RETURNING {_STATION}",
            (charge_point_id,),
        )
    if not rows:
        raise NotFound(f"station {charge_point_id!r} not found")
    return StationRecord(*rows[0])


# --------------------------------------------------------------------------- connectors


@dataclass(frozen=True, slots=True)
class ConnectorRecord:
    charge_point_id: str
    connector_id: int
    connector_type: str | None
    phases: int | None
    min_current_a: Decimal | None
    max_current_a: Decimal | None
    max_power_w: int | None
    phase_rotation: str | None
    status: str | None
    status_at: datetime | None


CONNECTOR_FIELDS = (
    "connector_type",
    "phases",
    "min_current_a",
    "max_current_a",
    "max_power_w",
    "phase_rotation",
)
_RATINGS = ", ".join(CONNECTOR_FIELDS)
_CONNECTOR = f"charge_point_id, connector_id, {_RATINGS}, status, status_at"


async def get_connector(
    conn: AsyncConnection[Any], charge_point_id: str, connector_id: int
) -> ConnectorRecord | None:
    rows = await fetch(
        conn,
        f"SELECT {_CONNECTOR} FROM connectors WHERE charge_point_id = %s AND connector_id = %s",
        (charge_point_id, connector_id),
    )
    return ConnectorRecord(*rows[0]) if rows else None


async def put_connector(
    conn: AsyncConnection[Any], charge_point_id: str, connector_id: int, ratings: dict[str, Any]
) -> ConnectorRecord:
    """Set a connector's ratings (every field of :data:`CONNECTOR_FIELDS`; the status the
    gateway reports is kept)."""
    low, high = ratings.get("min_current_a"), ratings.get("max_current_a")
    if low is not None and high is not None and low > high:
        raise RegistryError("min_current_a must not exceed max_current_a")
    async with conn.transaction():
        await _active(conn, charge_point_id)
        values = [ratings.get(name) for name in CONNECTOR_FIELDS]
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in CONNECTOR_FIELDS)
        with integrity("conflict", "unknown station"):
            rows = await fetch(
                conn,
                f"INSERT INTO connectors (charge_point_id, connector_id, {_RATINGS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (charge_point_id, connector_id)"
                f" DO UPDATE SET {updates} RETURNING {_CONNECTOR}",
                (charge_point_id, connector_id, *values),
            )
    return ConnectorRecord(*rows[0])
