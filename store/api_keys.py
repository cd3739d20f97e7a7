"""API keys for callers of the HTTP API.

A key is shown to its owner once, as ``cf_<key_id>_<secret>``. Only the SHA-256
digest of the secret is stored: the secret is 256 bits from ``secrets`` (not a
password), so a fast hash is enough and a slow KDF would only cost latency on
every request. Lookups go by ``key_id`` and the digest is compared in constant
time. Secrets are never logged; ``key_id`` alone is safe to show.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg

log = logging.getLogger(__name__)

KEY_PREFIX = "cf_"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    MAINTENANCE = "maintenance"
    BILLING = "billing"
    PUBLIC = "public"


ROLES: frozenset[str] = frozenset(r.value for r in Role)


@dataclass(frozen=True, slots=True)
class ApiPrincipal:
    """The authenticated caller of one request."""

    key_id: str
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """A stored key without its secret (for listings)."""

    key_id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


# Compared against when the key id is unknown, so both paths do the same work.
_DUMMY_DIGEST = _digest(secrets.token_urlsafe(32))


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of: {', '.join(sorted(ROLES))}")
    return Role(role)


def parse_api_key(presented: str) -> tuple[str, str] | None:
    """Split ``cf_<key_id>_<secret>`` into (key_id, secret); None when malformed."""
    if not presented.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = presented[len(KEY_PREFIX) :].partition("_")
    if not sep or not key_id or not secret or len(key_id) > 64 or len(secret) > 256:
        return None
    return key_id, secret


def create_api_key(database_url: str, name: str, role: str) -> str:
    """Store a new key and return its plaintext (the only time it is available)."""
    checked = _check_role(role)
    if not name or not name.strip():
        raise ValueError("an API key needs a non-empty name")
    key_id = secrets.token_hex(8)  # hex: never contains the '_' separator
    secret = secrets.token_urlsafe(32)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO api_keys (key_id, name, role, key_hash) VALUES (%s, %s, %s, %s)",
            (key_id, name, checked.value, _digest(secret)),
        )
    log.info("created API key %s (%s, role %s)", key_id, name, checked.value)
    return f"{KEY_PREFIX}{key_id}_{secret}"


def revoke_api_key(database_url: str, key_id: str) -> bool:
    """Revoke a key by id (or by its full plaintext); True if an active key was revoked."""
    parsed = parse_api_key(key_id)
    if parsed is not None:
        key_id = parsed[0]
    with psycopg.connect(database_url) as conn:
        cur = conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
            (key_id,),
        )
        revoked = cur.rowcount == 1
    if revoked:
        log.info("revoked API key %s", key_id)
    return revoked


def list_api_keys(database_url: str, *, include_revoked: bool = True) -> list[ApiKeyInfo]:
    query = "SELECT key_id, name, role, created_at, revoked_at FROM api_keys"
    if not include_revoked:
        query += " WHERE revoked_at IS NULL"
    query += " ORDER BY created_at, key_id"
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(query).fetchall()
    return [ApiKeyInfo(r[0], r[1], Role(r[2]), r[3], r[4]) for r in rows]


async def verify_api_key(conn: psycopg.AsyncConnection[Any], presented: str) -> ApiPrincipal | None:
    """The principal for a presented key, or None if malformed, unknown or revoked."""
    parsed = parse_api_key(presented)
    if parsed is None:
        return None
    key_id, secret = parsed
    cur = await conn.execute(
        "SELECT name, role, key_hash FROM api_keys WHERE key_id = %s AND revoked_at IS NULL",
        (key_id,),
    )
    row = await cur.fetchone()
    stored = bytes(row[2]) if row is not None else _DUMMY_DIGEST
    matches = hmac.compare_digest(_digest(secret), stored)
    if row is None or not matches:
        return None
    return ApiPrincipal(key_id=key_id, name=row[0], role=Role(row[1]))
