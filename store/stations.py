"""Stations (tables ``stations``, ``connectors``, ``station_verified_credentials``,
``station_connections``; owned by the gateway): provisioning, boot and liveness facts,
credentials and which gateway replica holds each station's socket.

Sync helpers are for the launcher, the CLI and tests; the async queries are what the
gateway runs per CALL and per connection. SQL lives here and stays thin.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg
from argon2 import PasswordHasher

from store.db import AsyncDb, execute


@dataclass(frozen=True, slots=True)
class StationCredentials:
    charge_point_id: str
    password_hash: str | None
    security_profile: int
    # Source address of the last successful login (the station's known address).
    last_auth_ip: str | None = None
    last_seen_at: datetime | None = None
    # HMAC of the last argon2-verified password (station_verified_credentials).
    credential_mac: bytes | None = None
    verified_at: datetime | None = None


# OCPP 2.0.1 BasicAuthPassword is 16-40 characters (1.6 security whitepaper: an
# AuthorizationKey of 16-20 bytes, usually written as 32-40 hex characters).
PASSWORD_MIN_LEN = 16
PASSWORD_MAX_LEN = 40
SECURITY_PROFILES = (0, 1, 2)

# argon2id parameters for station (machine) credentials: OWASP's minimum
# recommendation for argon2id, m=19 MiB, t=2, p=1 (Password Storage Cheat Sheet).
# argon2-cffi's default (m=64 MiB, t=3, p=4, RFC 9106 "low memory") cost ~0.16 s CPU
# and 64 MiB per login here, which made a reconnect storm of a few hundred stations
# time out; these cost roughly a fifth of that. Station passwords are 16-40
# characters and normally generated (``chargeflow station add --generate-password``),
# so the hash guards against leaked hashes of long random secrets, not against
# dictionary passwords, and the OWASP floor is enough. Changing these parameters is
# safe: the gateway re-hashes a station's password with them at its next successful
# login (``PASSWORD_HASHER.check_needs_rehash``).
ARGON2_TIME_COST = 2
ARGON2_MEMORY_COST_KIB = 19 * 1024
ARGON2_PARALLELISM = 1
PASSWORD_HASHER = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_COST_KIB, parallelism=ARGON2_PARALLELISM
)


def generate_password() -> str:
    """A new station password: 24 URL-safe characters (144 random bits), shown once."""
    return secrets.token_urlsafe(18)


def hash_password(password: str) -> str:
    """The argon2id hash stored in ``stations.password_hash`` (never the password)."""
    if not PASSWORD_MIN_LEN <= len(password) <= PASSWORD_MAX_LEN:
        raise ValueError(
            f"a station password must be {PASSWORD_MIN_LEN}-{PASSWORD_MAX_LEN} characters"
        )
    if not password.isprintable() or not password.isascii():
        raise ValueError("a station password must be printable ASCII")
    return PASSWORD_HASHER.hash(password)


def provision_station(
    database_url: str,
    charge_point_id: str,
    site_id: str | None = None,
    password: str | None = None,
    security_profile: int | None = None,
) -> None:
    """Register a station (idempotent) so it may connect; creates the site row if
    ``site_id`` is new. ``password`` (Basic auth, security profile 1/2) is stored as an
    argon2 hash and replaces an earlier one; None keeps the stored one.
    ``security_profile``: 1 (default for new stations) = Basic auth, 2 = Basic auth and
    TLS only, 0 = no authentication at all (explicit opt-in for legacy stations)."""
    if security_profile is not None and security_profile not in SECURITY_PROFILES:
        raise ValueError(f"security_profile must be one of {SECURITY_PROFILES}")
    password_hash = None if password is None else hash_password(password)
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
        if site_id is not None:
            conn.execute(
                "INSERT INTO sites (site_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (site_id, site_id),
            )
        conn.execute(
            """
            INSERT INTO stations (charge_point_id, site_id, password_hash, security_profile)
            VALUES (%s, %s, %s, COALESCE(%s, 1))
            ON CONFLICT (charge_point_id) DO UPDATE
                SET site_id = COALESCE(EXCLUDED.site_id, stations.site_id),
                    password_hash = COALESCE(%s, stations.password_hash),
                    security_profile = COALESCE(%s, stations.security_profile)
            """,
            (
                charge_point_id,
                site_id,
                password_hash,
                security_profile,
                password_hash,
                security_profile,
            ),
        )


async def station_exists(db: AsyncDb, charge_point_id: str) -> bool:
    rows = await execute(
        db, "SELECT 1 FROM stations WHERE charge_point_id = %s", (charge_point_id,)
    )
    return bool(rows)


async def touch_last_seen(db: AsyncDb, charge_point_id: str, seen_at: datetime) -> None:
    await execute(
        db,
        """
        INSERT INTO stations (charge_point_id, last_seen_at) VALUES (%s, %s)
        ON CONFLICT (charge_point_id) DO UPDATE SET last_seen_at =
            GREATEST(stations.last_seen_at, EXCLUDED.last_seen_at)
        """,
        (charge_point_id, seen_at),
    )


async def touch_last_seen_many(db: AsyncDb, seen: dict[str, datetime]) -> None:
    """``last_seen_at`` of many stations in one statement (never moved backwards;
    unknown ids are skipped). Rows are fed in id order; replicas rarely write the same
    stations, and a statement that loses a deadlock is simply retried by the caller."""
    ids = sorted(seen)
    await execute(
        db,
        """
        UPDATE stations s SET last_seen_at = GREATEST(s.last_seen_at, v.seen_at)
        FROM (SELECT * FROM unnest(%s::text[], %s::timestamptz[]) AS u(charge_point_id, seen_at)
              ORDER BY charge_point_id) v
        WHERE s.charge_point_id = v.charge_point_id
        """,
        (ids, [seen[i] for i in ids]),
    )


# --------------------------------------------------------------------------- security


async def get_station_credentials(db: AsyncDb, charge_point_id: str) -> StationCredentials | None:
    rows = await execute(
        db,
        """
        SELECT s.charge_point_id, s.password_hash, s.security_profile, s.last_auth_ip,
               s.last_seen_at, v.credential_mac, v.verified_at
        FROM stations s
        LEFT JOIN station_verified_credentials v USING (charge_point_id)
        WHERE s.charge_point_id = %s AND s.decommissioned_at IS NULL
        """,
        (charge_point_id,),
    )
    if not rows:
        return None  # unknown or decommissioned: the gateway answers 404
    row = rows[0]
    mac = None if row[5] is None else bytes(row[5])
    return StationCredentials(row[0], row[1], row[2], row[3], row[4], mac, row[6])


async def record_auth_failure(
    db: AsyncDb, charge_point_id: str, source_ip: str | None, at: datetime
) -> None:
    await execute(
        db,
        """
        UPDATE stations SET auth_failures = auth_failures + 1, last_auth_failure_at = %s,
            last_auth_failure_ip = %s
        WHERE charge_point_id = %s
        """,
        (at, source_ip, charge_point_id),
    )


async def replace_password_hash(
    db: AsyncDb, charge_point_id: str, old_hash: str, new_hash: str
) -> bool:
    """Swap in a re-computed hash of the same password, unless the stored hash changed
    meanwhile (a new password set by an operator wins). True when replaced."""
    rows = await execute(
        db,
        "UPDATE stations SET password_hash = %s WHERE charge_point_id = %s "
        "AND password_hash = %s RETURNING 1",
        (new_hash, charge_point_id, old_hash),
    )
    return bool(rows)


async def record_auth_success(
    db: AsyncDb,
    charge_point_id: str,
    at: datetime,
    source_ip: str | None = None,
    credential_mac: bytes | None = None,
) -> None:
    """A good login: failures reset, the address remembered as the station's known
    one, and (``credential_mac``) the verified credential remembered, in one round trip."""
    await execute(
        db,
        """
        WITH station AS (
            UPDATE stations SET auth_failures = 0, last_auth_at = %(at)s,
                last_auth_ip = COALESCE(%(ip)s, last_auth_ip)
            WHERE charge_point_id = %(cp)s
            RETURNING charge_point_id
        )
        INSERT INTO station_verified_credentials (charge_point_id, credential_mac, verified_at)
        SELECT charge_point_id, %(mac)s::bytea, %(at)s FROM station
        WHERE %(mac)s::bytea IS NOT NULL
        ON CONFLICT (charge_point_id) DO UPDATE
            SET credential_mac = EXCLUDED.credential_mac, verified_at = EXCLUDED.verified_at
        """,
        {"at": at, "ip": source_ip, "cp": charge_point_id, "mac": credential_mac},
    )


# --------------------------------------------------------------------------- connections


async def record_connection(
    db: AsyncDb, charge_point_id: str, gateway_id: str, connected_at: datetime
) -> None:
    """This replica holds the station's socket now (replaces any other replica's row)."""
    await execute(
        db,
        """
        INSERT INTO station_connections (charge_point_id, gateway_id, connected_at)
        VALUES (%s, %s, %s)
        ON CONFLICT (charge_point_id) DO UPDATE
            SET gateway_id = EXCLUDED.gateway_id, connected_at = EXCLUDED.connected_at
        """,
        (charge_point_id, gateway_id, connected_at),
    )


async def remove_connection(db: AsyncDb, charge_point_id: str, gateway_id: str) -> None:
    """Forget this replica's row (the station may be connected elsewhere already)."""
    await execute(
        db,
        "DELETE FROM station_connections WHERE charge_point_id = %s AND gateway_id = %s",
        (charge_point_id, gateway_id),
    )


async def get_connection(db: AsyncDb, charge_point_id: str) -> tuple[str, datetime] | None:
    """(gateway id, connected at) of the replica holding the station, if any."""
    rows = await execute(
        db,
        "SELECT gateway_id, connected_at FROM station_connections WHERE charge_point_id = %s",
        (charge_point_id,),
    )
    return (rows[0][0], rows[0][1]) if rows else None


async def connections_of(db: AsyncDb, gateway_id: str) -> list[str]:
    """The stations whose connection row names this replica."""
    rows = await execute(
        db, "SELECT charge_point_id FROM station_connections WHERE gateway_id = %s", (gateway_id,)
    )
    return [str(r[0]) for r in rows]


async def previous_life_connections(db: AsyncDb, gateway_id: str) -> list[tuple[str, datetime]]:
    """(station, last sign of life) of the rows naming ``gateway_id``, read when a replica
    of that id starts: an earlier process under the same id (a restarted container)
    left them, and no sweep takes them while this one heartbeats under the id."""
    rows = await execute(
        db,
        """
        SELECT sc.charge_point_id,
               GREATEST(sc.connected_at, COALESCE(g.last_heartbeat, sc.connected_at))
        FROM station_connections sc
        LEFT JOIN gateways g ON g.gateway_id = sc.gateway_id
        WHERE sc.gateway_id = %s
        ORDER BY sc.charge_point_id
        """,
        (gateway_id,),
    )
    return [(str(cp), at) for cp, at in rows]


async def orphaned_connections(db: AsyncDb, grace_s: float) -> list[tuple[str, str, datetime]]:
    """(station, gateway id, last sign of life) of connections held by replicas that
    died: no heartbeat within ``grace_s`` (or never one, for a connection older
    than that -- a replica heartbeats as soon as it starts)."""
    rows = await execute(
        db,
        """
        SELECT sc.charge_point_id, sc.gateway_id,
               GREATEST(sc.connected_at, COALESCE(g.last_heartbeat, sc.connected_at))
        FROM station_connections sc
        LEFT JOIN gateways g ON g.gateway_id = sc.gateway_id
        WHERE COALESCE(g.last_heartbeat, sc.connected_at)
              < now() - make_interval(secs => %s)
        ORDER BY sc.charge_point_id
        """,
        (grace_s,),
    )
    return [(str(cp), str(gw), at) for cp, gw, at in rows]
