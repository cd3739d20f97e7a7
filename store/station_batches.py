"""Multi-row forms of the station writes a (re)connecting station causes, and the
per-process writers that batch them (``store.coalesce``).

A station coming back after a gateway restart costs four writes: the login's
bookkeeping (failures reset, known address, verified credential), its connection row,
its boot and its connector status. The login and connection rows have a single-row form
in ``store.stations`` too (used outside the login path); here the statements take many
rows in one round trip (``unnest`` of arrays, rows
in charge point id order so two batches lock rows in the same order, one row per key
per statement as ``ON CONFLICT`` requires). :class:`StationWrites` holds one writer per
kind; every ``write`` returns only after its batch committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial

from store.coalesce import CoalescingWriter
from store.db import AsyncDb, execute, last_per_key


@dataclass(frozen=True, slots=True)
class AuthSuccess:
    charge_point_id: str
    at: datetime
    source_ip: str | None
    credential_mac: bytes | None


@dataclass(frozen=True, slots=True)
class Connection:
    charge_point_id: str
    gateway_id: str
    connected_at: datetime
    ocpp_version: str | None = None  # the subprotocol the station speaks on this connection


@dataclass(frozen=True, slots=True)
class Boot:
    charge_point_id: str
    vendor: str
    model: str
    serial_number: str | None
    firmware_version: str | None
    ocpp_version: str
    booted_at: datetime


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    charge_point_id: str
    connector_id: int
    status: str
    error_code: str
    status_at: datetime


async def record_auth_successes(db: AsyncDb, rows: list[AuthSuccess]) -> None:
    """``stations.record_auth_success`` for many logins (the last one per station)."""
    rows = sorted(last_per_key(rows, lambda r: r.charge_point_id), key=lambda r: r.charge_point_id)
    await execute(
        db,
        """
        WITH v AS (
            SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::bytea[])
                AS u(charge_point_id, at, ip, mac)
        ), station AS (
            UPDATE stations s SET auth_failures = 0, last_auth_at = v.at,
                last_auth_ip = COALESCE(v.ip, s.last_auth_ip)
            FROM v WHERE s.charge_point_id = v.charge_point_id
            RETURNING s.charge_point_id
        )
        INSERT INTO station_verified_credentials (charge_point_id, credential_mac, verified_at)
        SELECT v.charge_point_id, v.mac, v.at FROM v JOIN station USING (charge_point_id)
        WHERE v.mac IS NOT NULL
        ORDER BY v.charge_point_id
        ON CONFLICT (charge_point_id) DO UPDATE
            SET credential_mac = EXCLUDED.credential_mac, verified_at = EXCLUDED.verified_at
        """,
        (
            [r.charge_point_id for r in rows],
            [r.at for r in rows],
            [r.source_ip for r in rows],
            [r.credential_mac for r in rows],
        ),
    )


async def record_connections(db: AsyncDb, rows: list[Connection]) -> None:
    """``stations.record_connection`` for many stations (the last one per station)."""
    rows = sorted(last_per_key(rows, lambda r: r.charge_point_id), key=lambda r: r.charge_point_id)
    await execute(
        db,
        """
        INSERT INTO station_connections (charge_point_id, gateway_id, connected_at)
        SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[])
        ON CONFLICT (charge_point_id) DO UPDATE
            SET gateway_id = EXCLUDED.gateway_id, connected_at = EXCLUDED.connected_at
        """,
        (
            [r.charge_point_id for r in rows],
            [r.gateway_id for r in rows],
            [r.connected_at for r in rows],
        ),
    )
    # The version it speaks now: what the API needs to build a command for it.
    await execute(
        db,
        """
        UPDATE stations s SET ocpp_version = v.version
        FROM unnest(%s::text[], %s::text[]) AS v(cp, version)
        WHERE s.charge_point_id = v.cp AND v.version IS NOT NULL
          AND s.ocpp_version IS DISTINCT FROM v.version
        """,
        ([r.charge_point_id for r in rows], [r.ocpp_version for r in rows]),
    )


async def upsert_station_boots(db: AsyncDb, rows: list[Boot]) -> None:
    """Vendor, model, serial, firmware, OCPP version and boot time of many stations
    (the last boot per station); unknown stations are added."""
    rows = sorted(last_per_key(rows, lambda r: r.charge_point_id), key=lambda r: r.charge_point_id)
    await execute(
        db,
        """
        INSERT INTO stations (charge_point_id, vendor, model, serial_number, firmware_version,
                              ocpp_version, last_boot_at, last_seen_at)
        SELECT cp, vendor, model, serial, firmware, version, at, at
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                    %s::timestamptz[]) AS u(cp, vendor, model, serial, firmware, version, at)
        ON CONFLICT (charge_point_id) DO UPDATE SET vendor = EXCLUDED.vendor,
            model = EXCLUDED.model, serial_number = EXCLUDED.serial_number,
            firmware_version = EXCLUDED.firmware_version, ocpp_version = EXCLUDED.ocpp_version,
            last_boot_at = EXCLUDED.last_boot_at, last_seen_at = EXCLUDED.last_seen_at
        """,
        (
            [r.charge_point_id for r in rows],
            [r.vendor for r in rows],
            [r.model for r in rows],
            [r.serial_number for r in rows],
            [r.firmware_version for r in rows],
            [r.ocpp_version for r in rows],
            [r.booted_at for r in rows],
        ),
    )


async def upsert_connector_statuses(db: AsyncDb, rows: list[ConnectorStatus]) -> None:
    """Latest status of many connectors: per connector the newest status of the batch,
    and an older one never overwrites a newer stored one (unknown stations are added)."""
    newest = last_per_key(
        sorted(rows, key=lambda r: r.status_at), lambda r: (r.charge_point_id, r.connector_id)
    )
    rows = sorted(newest, key=lambda r: (r.charge_point_id, r.connector_id))
    await execute(
        db,
        """
        WITH v AS (
            SELECT * FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[],
                                 %s::timestamptz[]) AS u(cp, connector, status, error, at)
        ), s AS (
            INSERT INTO stations (charge_point_id) SELECT DISTINCT cp FROM v
            ON CONFLICT DO NOTHING
        )
        INSERT INTO connectors (charge_point_id, connector_id, status, error_code, status_at)
        SELECT cp, connector, status, error, at FROM v
        ON CONFLICT (charge_point_id, connector_id) DO UPDATE SET status = EXCLUDED.status,
            error_code = EXCLUDED.error_code, status_at = EXCLUDED.status_at
        WHERE connectors.status_at IS NULL OR connectors.status_at <= EXCLUDED.status_at
        """,
        (
            [r.charge_point_id for r in rows],
            [r.connector_id for r in rows],
            [r.status for r in rows],
            [r.error_code for r in rows],
            [r.status_at for r in rows],
        ),
    )


class StationWrites:
    """One batching writer per kind of station write, on one pool."""

    def __init__(self, db: AsyncDb, *, max_rows: int = 1000) -> None:
        self.auth_success = CoalescingWriter[AuthSuccess](
            partial(record_auth_successes, db), name="auth-success", max_rows=max_rows
        )
        self.connection = CoalescingWriter[Connection](
            partial(record_connections, db), name="connection", max_rows=max_rows
        )
        self.boot = CoalescingWriter[Boot](
            partial(upsert_station_boots, db), name="boot", max_rows=max_rows
        )
        self.connector_status = CoalescingWriter[ConnectorStatus](
            partial(upsert_connector_statuses, db), name="connector-status", max_rows=max_rows
        )

    def start(self) -> None:
        for writer in (self.auth_success, self.connection, self.boot, self.connector_status):
            writer.start()

    async def close(self) -> None:
        for writer in (self.auth_success, self.connection, self.boot, self.connector_status):
            await writer.close()
