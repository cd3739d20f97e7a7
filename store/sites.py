"""Sites (table ``sites``): a group of stations behind one grid connection with a capacity (W)."""

from __future__ import annotations

from typing import Any

import psycopg


def upsert_site(database_url: str, site_id: str, name: str, capacity_w: int | None) -> None:
    """Create or update a site; ``capacity_w`` is the grid connection limit (None = unknown)."""
    if capacity_w is not None and capacity_w <= 0:
        raise ValueError(f"site capacity must be positive watts, got {capacity_w}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO sites (site_id, name, capacity_w) VALUES (%s, %s, %s)
            ON CONFLICT (site_id) DO UPDATE
                SET name = EXCLUDED.name, capacity_w = EXCLUDED.capacity_w
            """,
            (site_id, name, capacity_w),
        )


def station_sites(conn: psycopg.Connection[Any]) -> dict[str, tuple[str, int | None]]:
    """charge point id -> (site_id, sites.capacity_w) for every station on a site."""
    rows = conn.execute(
        "SELECT st.charge_point_id, st.site_id, si.capacity_w FROM stations st"
        " JOIN sites si ON si.site_id = st.site_id"
    ).fetchall()
    return {cp: (site, None if cap is None else int(cap)) for cp, site, cap in rows}
