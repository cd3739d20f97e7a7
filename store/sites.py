"""Sites (table ``sites``): a group of stations behind one grid connection with a capacity
(W), in one IANA time zone (tariff restrictions are the site's local times)."""

from __future__ import annotations

from functools import cache
from typing import Any
from zoneinfo import available_timezones

import psycopg

from store.db import AsyncDb, execute


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
    ValueError: unknown IANA time zone 'CET+1'
    """
    if name not in _iana_zones():
        raise ValueError(f"unknown IANA time zone {name!r}")
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
