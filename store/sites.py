"""Sites: a group of stations behind one grid connection with a capacity (W)."""

from __future__ import annotations

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
