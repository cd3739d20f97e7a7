"""Sites (table ``sites``): a group of stations behind one grid connection with a capacity
(W), in one IANA time zone (tariff restrictions are the site's local times)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import available_timezones

import psycopg
from psycopg import AsyncConnection, errors

from store.db import AsyncDb, execute
from store.registry import (
    DEFAULT_LIMIT,
    Conflict,
    NotFound,
    Page,
    RegistryError,
    fetch,
    integrity,
    page_of,
)


@cache
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_time_zone(name: str) -> str:
    """``name`` if it is an IANA time zone this system knows, else ValueError.

    >>> check_time_zone("Europe/Amsterdam")
    'Europe/Amsterdam'
    >>> check_time_zone("CET+1")
    Traceback (most recent call last):
    ...
    store.registry.RegistryError: unknown IANA time zone 'CET+1'
    """
    if name not in _iana_zones():
        raise RegistryError(f"unknown IANA time zone {name!r}")
    return name


def upsert_site(
    database_url: str,
    site_id: str,
    name: str,
    capacity_w: int | None,
    time_zone: str | None = None,
) -> None:
    """Create or update a site; ``capacity_w`` is the grid connection limit (None =
    unknown); ``time_zone`` (IANA) is kept as it is when None (a new site: UTC)."""
    if capacity_w is not None and capacity_w <= 0:
        raise ValueError(f"site capacity must be positive watts, got {capacity_w}")
    if time_zone is not None:
        check_time_zone(time_zone)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO sites (site_id, name, capacity_w, time_zone)
            VALUES (%s, %s, %s, COALESCE(%s, 'UTC'))
            ON CONFLICT (site_id) DO UPDATE
                SET name = EXCLUDED.name, capacity_w = EXCLUDED.capacity_w,
                    time_zone = COALESCE(%s, sites.time_zone)
            """,
            (site_id, name, capacity_w, time_zone, time_zone),
        )


async def site_time_zone(db: AsyncDb, site_id: str) -> str | None:
    """The site's IANA time zone; None if there is no such site."""
    rows = await execute(db, "SELECT time_zone FROM sites WHERE site_id = %s", (site_id,))
    return str(rows[0][0]) if rows else None


def station_sites(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, int | None]]:
    """charge point id -> (site_id, sites.capacity_w) for every station on a site."""
    rows = conn.execute(
        "SELECT st.charge_point_id, st.site_id, si.capacity_w FROM stations st"
        " JOIN sites si ON si.site_id = st.site_id"
    ).fetchall()
    return {cp: (site, None if cap is None else int(cap)) for cp, site, cap in rows}


async def station_location(db: AsyncDb, charge_point_id: str) -> tuple[str | None, str]:
    """The station's site and that site's time zone (UTC for a station on no site)."""
    rows = await execute(
        db,
        "SELECT st.site_id, si.time_zone FROM stations st"
        " LEFT JOIN sites si ON si.site_id = st.site_id WHERE st.charge_point_id = %s",
        (charge_point_id,),
    )
    if not rows:
        return None, "UTC"
    return rows[0][0], rows[0][1] or "UTC"


# --------------------------------------------------------------------------- the API's registry


@dataclass(frozen=True, slots=True)
class SiteRecord:
    site_id: str
    name: str
    time_zone: str
    capacity_w: int | None
    max_current_a: Decimal | None
    created_at: datetime


_SITE = "site_id, name, time_zone, capacity_w, max_current_a, created_at"
SITE_FIELDS = ("name", "time_zone", "capacity_w", "max_current_a")


async def create_site(
    conn: AsyncConnection[Any], site_id: str, fields: dict[str, Any]
) -> SiteRecord:
    """A new site (:class:`store.registry.Conflict` when the id exists)."""
    check_time_zone(fields["time_zone"])
    with integrity(f"site {site_id!r} exists already", "unknown reference"):
        rows = await fetch(
            conn,
            f"INSERT INTO sites (site_id, {', '.join(SITE_FIELDS)}) VALUES (%s, %s, %s, %s, %s)"
            f" RETURNING {_SITE}",
            (site_id, *(fields[name] for name in SITE_FIELDS)),
        )
    return SiteRecord(*rows[0])


async def get_site(conn: AsyncConnection[Any], site_id: str) -> SiteRecord | None:
    rows = await fetch(conn, f"SELECT {_SITE} FROM sites WHERE site_id = %s", (site_id,))
    return SiteRecord(*rows[0]) if rows else None


async def list_sites(
    conn: AsyncConnection[Any], *, after: str | None = None, limit: int = DEFAULT_LIMIT
) -> Page[SiteRecord]:
    rows = await fetch(
        conn,
        f"SELECT {_SITE} FROM sites WHERE %s::text IS NULL OR site_id > %s"
        " ORDER BY site_id LIMIT %s",
        (after, after, limit + 1),
    )
    return page_of([SiteRecord(*r) for r in rows], limit, lambda s: s.site_id)


async def update_site(
    conn: AsyncConnection[Any], site_id: str, changes: dict[str, Any]
) -> SiteRecord:
    """``changes``: any of :data:`SITE_FIELDS` (capacities may be set to None: unknown)."""
    if changes.get("time_zone") is not None:
        check_time_zone(changes["time_zone"])
    if not changes:
        found = await get_site(conn, site_id)
    else:
        sets = ", ".join(f"{name} = %s" for name in changes if name in SITE_FIELDS)
        rows = await fetch(
            conn,
            f"UPDATE sites SET {sets} WHERE site_id = %s RETURNING {_SITE}",
            (*changes.values(), site_id),
        )
        found = SiteRecord(*rows[0]) if rows else None
    if found is None:
        raise NotFound(f"site {site_id!r} not found")
    return found


async def delete_site(conn: AsyncConnection[Any], site_id: str) -> bool:
    """Remove a site no station names (:class:`store.registry.Conflict` otherwise, also
    when only decommissioned stations do: their history keeps the site). False: none."""
    try:
        rows = await fetch(
            conn, "DELETE FROM sites WHERE site_id = %s RETURNING site_id", (site_id,)
        )
    except errors.ForeignKeyViolation:
        raise Conflict(f"site {site_id!r} still has stations; move them first") from None
    return bool(rows)
