"""Smart charging's tables (migrations 0031, 0033): site limit windows, charging needs, the
flow's allocations and non-compliant stations, and the flow's reads of the registry
(:func:`load_site_rules`) and its commands outbox (:func:`publish_pending`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from bus.commands import Command, encode_command
from store.command_queue import command_of
from store.commands import _COLUMNS, _record, command_values
from store.registry import fetch

SMART_CHARGING = "smart-charging"  # requested_by of the flow's commands


# ------------------------------------------------------------------ the API's writes


@dataclass(frozen=True, slots=True)
class LimitWindowRecord:
    starts_at: datetime
    ends_at: datetime
    max_current_a: Decimal
    reason: str | None


async def replace_limit_windows(
    conn: AsyncConnection[Any],
    site_id: str,
    windows: Sequence[LimitWindowRecord],
    set_by: str | None,
) -> list[LimitWindowRecord]:
    """The site's windows become ``windows`` (one transaction)."""
    async with conn.transaction():
        await conn.execute("DELETE FROM site_limit_windows WHERE site_id = %s", (site_id,))
        for w in windows:
            await conn.execute(
                "INSERT INTO site_limit_windows (site_id, starts_at, ends_at, max_current_a,"
                " reason, set_by) VALUES (%s, %s, %s, %s, %s, %s)",
                (site_id, w.starts_at, w.ends_at, w.max_current_a, w.reason, set_by),
            )
    return await limit_windows(conn, site_id)


async def limit_windows(conn: AsyncConnection[Any], site_id: str) -> list[LimitWindowRecord]:
    rows = await fetch(
        conn,
        "SELECT starts_at, ends_at, max_current_a, reason FROM site_limit_windows"
        " WHERE site_id = %s ORDER BY starts_at, ends_at",
        (site_id,),
    )
    return [LimitWindowRecord(*r) for r in rows]


async def put_charging_needs(
    conn: AsyncConnection[Any],
    charge_point_id: str,
    transaction_id: str,
    departure_at: datetime | None,
    energy_wh: int | None,
    set_by: str | None,
) -> None:
    await conn.execute(
        """
        INSERT INTO session_charging_needs
            (charge_point_id, transaction_id, departure_at, energy_wh, set_by)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (charge_point_id, transaction_id) DO UPDATE
            SET departure_at = EXCLUDED.departure_at, energy_wh = EXCLUDED.energy_wh,
                set_by = EXCLUDED.set_by, set_at = now()
        """,
        (charge_point_id, transaction_id, departure_at, energy_wh, set_by),
    )


async def site_allocation(conn: AsyncConnection[Any], site_id: str) -> dict[str, Any] | None:
    rows = await fetch(
        conn, "SELECT body FROM smart_charging_allocations WHERE site_id = %s", (site_id,)
    )
    return dict(rows[0][0]) if rows else None


async def reset_station(
    conn: AsyncConnection[Any], charge_point_id: str, by: str
) -> tuple[int, datetime | None] | None:
    """Count up the station's smart-charging resets and clear its open non-compliance
    marking: (resets so far, since when it was non-compliant or None); None for a station
    that is not registered (or decommissioned)."""
    async with conn.transaction():
        counted = await fetch(
            conn,
            "UPDATE stations SET smart_charging_resets = smart_charging_resets + 1"
            " WHERE charge_point_id = %s AND decommissioned_at IS NULL"
            " RETURNING smart_charging_resets",
            (charge_point_id,),
        )
        if not counted:
            return None
        cleared = await fetch(
            conn,
            "UPDATE station_compliance SET cleared_at = now(), cleared_by = %s"
            " WHERE charge_point_id = %s AND cleared_at IS NULL RETURNING non_compliant_since",
            (by, charge_point_id),
        )
    return int(counted[0][0]), cleared[0][0] if cleared else None


# ------------------------------------------------------------------ the flow's reads


@dataclass(frozen=True, slots=True)
class SiteRows:
    """One site's registry rows, as the flow's directory reads them."""

    site_id: str
    capacity_w: int | None
    max_current_a: float | None
    stations: dict[str, str]  # station -> OCPP version (1.6 when never connected)
    connectors: dict[tuple[str, int], tuple[int | None, float | None, float | None, str | None]]
    windows: list[tuple[datetime, datetime, float]]
    load_meters: frozenset[str]
    resets: dict[str, int] = field(default_factory=dict)  # station -> resets so far


def load_site_rules(
    conn: psycopg.Connection[Any], since: datetime
) -> tuple[dict[str, SiteRows], dict[str, str], dict[str, dict[str, tuple[Any, Any]]]]:
    """Every site's rows; the id tags' membership tiers (tag -> tier name, only those
    above standard); each station's charging needs (station -> transaction ->
    (departure, energy Wh)) set since ``since``."""
    sites = _sites(conn)
    _add_stations_and_connectors(conn, sites)
    for site_id, start, end, amps in conn.execute(
        "SELECT site_id, starts_at, ends_at, max_current_a FROM site_limit_windows"
        " WHERE ends_at > %s ORDER BY starts_at",
        (since,),
    ).fetchall():
        sites[site_id].windows.append((start, end, float(amps)))
    meters: dict[str, set[str]] = {}
    for meter_id, site_id in conn.execute(
        "SELECT m.meter_id, s.site_id FROM meters m"
        " JOIN stations s ON s.charge_point_id = m.charge_point_id"
        " WHERE m.role = 'non_controllable_load' AND s.site_id IS NOT NULL"
    ).fetchall():
        meters.setdefault(site_id, set()).add(meter_id)
    for site_id, found in meters.items():
        sites[site_id] = dataclasses.replace(sites[site_id], load_meters=frozenset(found))
    tiers = dict(
        conn.execute(
            "SELECT id_tag, membership_tier FROM id_tags WHERE membership_tier <> 'standard'"
        ).fetchall()
    )
    needs: dict[str, dict[str, tuple[Any, Any]]] = {}
    for cp, tx, departure, energy in conn.execute(
        "SELECT charge_point_id, transaction_id, departure_at, energy_wh"
        " FROM session_charging_needs WHERE set_at > %s",
        (since,),
    ).fetchall():
        needs.setdefault(cp, {})[tx] = (departure, None if energy is None else float(energy))
    return sites, tiers, needs


def _sites(conn: psycopg.Connection[Any]) -> dict[str, SiteRows]:
    return {
        site_id: SiteRows(
            site_id,
            None if capacity is None else int(capacity),
            None if max_a is None else float(max_a),
            {},
            {},
            [],
            frozenset(),
        )
        for site_id, capacity, max_a in conn.execute(
            "SELECT site_id, capacity_w, max_current_a FROM sites"
        ).fetchall()
    }


def _add_stations_and_connectors(conn: psycopg.Connection[Any], sites: dict[str, SiteRows]) -> None:
    for cp, site_id, version, resets in conn.execute(
        "SELECT charge_point_id, site_id, ocpp_version, smart_charging_resets FROM stations"
        " WHERE site_id IS NOT NULL AND decommissioned_at IS NULL"
    ).fetchall():
        sites[site_id].stations[cp] = version or "1.6"
        if resets:
            sites[site_id].resets[cp] = int(resets)
    for cp, cid, phases, low, high, rotation, site_id in conn.execute(
        "SELECT c.charge_point_id, c.connector_id, c.phases, c.min_current_a, c.max_current_a,"
        " c.phase_rotation, s.site_id FROM connectors c"
        " JOIN stations s ON s.charge_point_id = c.charge_point_id"
        " WHERE s.site_id IS NOT NULL AND c.connector_id > 0"
    ).fetchall():
        sites[site_id].connectors[(cp, int(cid))] = (
            None if phases is None else int(phases),
            None if low is None else float(low),
            None if high is None else float(high),
            rotation,
        )


# ------------------------------------------------------------------ the flow's writes


def insert_commands(conn: psycopg.Connection[Any], commands: Sequence[Command]) -> None:
    """The flow's commands, pending and not yet published (the outbox: the sink's
    after-commit hook publishes them); a command id seen before is skipped (replays)."""
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO commands (command_id, charge_point_id, action, payload, ocpp_version,
                                  requested_by, requested_at, expires_at, timeout_s)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (command_id) DO NOTHING
            """,
            [command_values(c) for c in commands],
        )


def write_allocations(
    conn: psycopg.Connection[Any], rows: Sequence[tuple[str, datetime, Any]]
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO smart_charging_allocations (site_id, at, body) VALUES (%s, %s, %s)
            ON CONFLICT (site_id) DO UPDATE SET at = EXCLUDED.at, body = EXCLUDED.body,
                updated_at = now()
            WHERE smart_charging_allocations.at <= EXCLUDED.at
            """,
            [(site, at, Jsonb(body)) for site, at, body in rows],
        )


def mark_non_compliant(
    conn: psycopg.Connection[Any], rows: Sequence[tuple[str, int, datetime, float, float]]
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO station_compliance
                (charge_point_id, connector_id, non_compliant_since, limit_a, measured_a)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (charge_point_id) WHERE cleared_at IS NULL DO NOTHING
            """,
            [
                (cp, cid, at, round(limit, 1), round(measured, 1))
                for cp, cid, at, limit, measured in rows
            ],
        )


def publish_pending(
    conn: psycopg.Connection[Any], send: Callable[[list[Command]], None], limit: int
) -> int:
    """Publish the flow's commands still waiting (oldest first) and mark them; rows are
    locked meanwhile (``SKIP LOCKED``). ``send`` raises when the broker does not confirm:
    the rows stay waiting. Returns how many were published."""
    with conn.transaction():
        rows = conn.execute(
            f"""
            SELECT {_COLUMNS} FROM commands
            WHERE published_at IS NULL AND status = 'pending' AND requested_by = %s
              AND expires_at > now()
            ORDER BY requested_at, command_id LIMIT %s FOR UPDATE SKIP LOCKED
            """,
            (SMART_CHARGING, limit),
        ).fetchall()
        if not rows:
            return 0
        commands = [command_of(_record(r)) for r in rows]
        send(commands)
        conn.execute(
            "UPDATE commands SET published_at = now() WHERE command_id = ANY(%s)",
            ([c.command_id for c in commands],),
        )
    return len(commands)


def command_record(command: Command) -> tuple[bytes, bytes, Sequence[tuple[str, bytes]]]:
    """The Kafka message of a command (key: its station)."""
    return command.charge_point_id.encode(), encode_command(command), ()
