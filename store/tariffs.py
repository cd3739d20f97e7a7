"""Tariffs (tables ``tariffs``, ``tariff_assignments``, ``price_quotes``): the versions of
every OCPI Tariff, which one applies where and when, and the quotes drivers were shown.

* A tariff version is immutable (the table refuses UPDATE): storing a Tariff whose id
  exists adds version n + 1. Bodies are the OCPI JSON as given, numbers exact: written
  with Decimal as JSON numbers, read back with ``parse_float=Decimal``.
* An assignment says "tariff T applies to this connector / station / site / customer
  group / everywhere over [valid_from, valid_until)". Two assignments with the same
  scope, target and group never overlap (an exclusion constraint: :class:`OverlapError`).
  Ending one sets ``valid_until`` (history stays); ending one that has not begun yet
  sets ``valid_until = valid_from`` (an empty window: it never applied).
* :func:`tariff_for` says which tariff a session starting at ``at`` is priced under
  (order in :func:`precedence`).
* A quote freezes the Tariff version shown to a driver until ``valid_until``
  (exclusive); a session uses it at most once (:func:`attach_quote_to_session`).

Async (the API's request connection, or a pool), like :mod:`store.id_tokens`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

import msgspec
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from billing.preview import decode_json
from billing.tariffs import Tariff, parse_tariff
from store.db import AsyncDb, Where, execute

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
# Far beyond any real price or register; a larger exponent is no numeric jsonb can hold.
MAX_EXPONENT = 1000
MAX_DEPTH = 32

_ENCODER = msgspec.json.Encoder(decimal_format="number")


class Scope(StrEnum):
    CONNECTOR = "connector"  # target "<charge_point_id>:<connector_id>"
    STATION = "station"  # target: charge point id
    SITE = "site"  # target: site id
    CUSTOMER_GROUP = "customer_group"  # target: the group's name, on every station
    DEFAULT = "default"  # no target: everywhere


class TariffStoreError(ValueError):
    """A request the tariff store refuses; the message says why (no stored data in it)."""


class UnstorableError(TariffStoreError):
    """JSON PostgreSQL cannot store as given (NUL in text, a non-finite or absurd number)."""


class UnknownTariffError(TariffStoreError):
    """No version of that tariff exists."""


class OverlapError(TariffStoreError):
    """An assignment with the same scope, target and group overlaps the requested window."""


class QuoteError(TariffStoreError):
    """A quote cannot be used: unknown, expired or already used by a session."""


# --------------------------------------------------------------------------- bodies


def check_storable(data: Any, where: str = "tariff", depth: int = 0) -> None:
    """Raise :class:`UnstorableError` unless jsonb holds ``data`` exactly: no NUL or lone
    surrogate in any string or key, no float (decode with ``parse_float=Decimal``), no
    NaN/Infinity, no exponent beyond ±:data:`MAX_EXPONENT`, nesting at most
    :data:`MAX_DEPTH` deep (a Tariff is 5 deep; deeper JSON would only cost every later
    read of it a deep recursion).

    >>> check_storable({"price": Decimal("0.25"), "text": ["ok"]})
    >>> check_storable({"tariff_alt_text": [{"text": "a\\x00b"}]})
    Traceback (most recent call last):
    ...
    store.tariffs.UnstorableError: tariff.tariff_alt_text.0.text: NUL or lone surrogate
    """
    if depth > MAX_DEPTH:
        raise UnstorableError(f"{where}: nested deeper than {MAX_DEPTH}")
    if isinstance(data, str):
        if "\x00" in data or (not data.isascii() and not _encodable(data)):
            raise UnstorableError(f"{where}: NUL or lone surrogate")
    elif isinstance(data, dict):
        for key, value in data.items():
            check_storable(key, where, depth)
            check_storable(value, f"{where}.{key}", depth + 1)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            check_storable(value, f"{where}.{index}", depth + 1)
    elif isinstance(data, float):
        raise UnstorableError(f"{where}: not an exact number (NaN, Infinity or a float)")
    elif isinstance(data, Decimal):
        if not data.is_finite() or abs(data.adjusted()) > MAX_EXPONENT:
            raise UnstorableError(f"{where}: number out of range")
    elif not (data is None or isinstance(data, bool | int)):
        raise UnstorableError(f"{where}: not JSON ({type(data).__name__})")
    elif isinstance(data, int) and not isinstance(data, bool) and data.bit_length() > 3000:
        raise UnstorableError(f"{where}: number out of range")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def jsonb_of(data: Mapping[str, Any]) -> Jsonb:
    return Jsonb(data, dumps=lambda value: _ENCODER.encode(value).decode())


def decode_body(text: str) -> dict[str, Any]:
    body: dict[str, Any] = decode_json(text, "a stored tariff")
    return body


# --------------------------------------------------------------------------- tariffs


@dataclass(frozen=True, slots=True)
class TariffRecord:
    tariff_id: str
    version: int
    currency: str
    created_at: datetime
    created_by: str
    body: dict[str, Any]  # the OCPI Tariff JSON as stored, numbers as Decimal

    @property
    def tariff(self) -> Tariff:
        return parse_tariff(self.body)


@dataclass(frozen=True, slots=True)
class TariffPage:
    items: list[TariffRecord] = field(default_factory=list)
    next_after: str | None = None  # the last tariff id of the page; None on the last page


_TARIFF_COLUMNS = "tariff_id, version, currency, created_at, created_by, body::text"


def _tariff(row: tuple[Any, ...]) -> TariffRecord:
    tariff_id, version, currency, created_at, created_by, body = row
    return TariffRecord(tariff_id, version, currency, created_at, created_by, decode_body(body))


async def create_tariff(db: AsyncDb, body: object, *, created_by: str) -> TariffRecord:
    """Store ``body`` (decoded OCPI Tariff JSON) as the next version of its ``id``:
    :class:`billing.tariffs.TariffError` if it is no valid Tariff,
    :class:`UnstorableError` if PostgreSQL cannot hold it exactly."""
    tariff = parse_tariff(body)
    assert isinstance(body, dict)  # parse_tariff accepts only objects
    check_storable(body)
    params = {
        "id": tariff.id,
        "body": jsonb_of(body),
        "currency": tariff.currency,
        "by": created_by,
    }
    if isinstance(db, AsyncConnectionPool):
        async with db.connection() as conn:
            return await _insert_version(conn, params)
    return await _insert_version(db, params)


async def _insert_version(
    conn: psycopg.AsyncConnection[Any], params: dict[str, Any]
) -> TariffRecord:
    # The lock serialises the versions of one id (two writers would both pick n + 1); the
    # INSERT is a statement of its own so that its snapshot sees the previous writer's row.
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('tariff:' || %(id)s, 0))", params
        )
        cur = await conn.execute(
            f"""
            INSERT INTO tariffs (tariff_id, version, body, currency, created_by)
            SELECT %(id)s, COALESCE(MAX(version), 0) + 1, %(body)s, %(currency)s, %(by)s
            FROM tariffs WHERE tariff_id = %(id)s
            RETURNING {_TARIFF_COLUMNS}
            """,
            params,
        )
        row = await cur.fetchone()
    assert row is not None
    return _tariff(row)


async def get_tariff(
    db: AsyncDb, tariff_id: str, version: int | None = None
) -> TariffRecord | None:
    """One version of a tariff (None: the latest); None if there is no such version."""
    where = Where()
    where.add("tariff_id = %s", tariff_id)
    where.add_given("version = %s", version)
    rows = await execute(
        db,
        f"SELECT {_TARIFF_COLUMNS} FROM tariffs WHERE {where.sql} ORDER BY version DESC LIMIT 1",
        tuple(where.params),
    )
    return _tariff(rows[0]) if rows else None


async def tariff_versions(db: AsyncDb, tariff_id: str) -> list[TariffRecord]:
    """Every version of a tariff, oldest first ([] if unknown)."""
    rows = await execute(
        db,
        f"SELECT {_TARIFF_COLUMNS} FROM tariffs WHERE tariff_id = %s ORDER BY version",
        (tariff_id,),
    )
    return [_tariff(row) for row in rows]


async def list_tariffs(
    db: AsyncDb, *, after: str | None = None, limit: int = DEFAULT_LIMIT
) -> TariffPage:
    """The latest version of each tariff, by tariff id, after the id ``after``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    where = Where()
    where.add_given("tariff_id > %s", after)
    rows = await execute(
        db,
        f"SELECT DISTINCT ON (tariff_id) {_TARIFF_COLUMNS} FROM tariffs WHERE {where.sql}"
        " ORDER BY tariff_id, version DESC LIMIT %s",
        (*where.params, limit + 1),
    )
    items = [_tariff(row) for row in rows[:limit]]
    return TariffPage(items, items[-1].tariff_id if len(rows) > limit else None)


class AppliedTariff(NamedTuple):
    tariff: Tariff
    tariff_id: str
    version: int
