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

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple, cast

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


def _jsonb(data: Mapping[str, Any]) -> Jsonb:
    return Jsonb(data, dumps=lambda value: _ENCODER.encode(value).decode())


def _body(text: str) -> dict[str, Any]:
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
    return TariffRecord(tariff_id, version, currency, created_at, created_by, _body(body))


async def create_tariff(db: AsyncDb, body: object, *, created_by: str) -> TariffRecord:
    """Store ``body`` (decoded OCPI Tariff JSON) as the next version of its ``id``:
    :class:`billing.tariffs.TariffError` if it is no valid Tariff,
    :class:`UnstorableError` if PostgreSQL cannot hold it exactly."""
    tariff = parse_tariff(body)
    assert isinstance(body, dict)  # parse_tariff accepts only objects
    check_storable(body)
    params = {"id": tariff.id, "body": _jsonb(body), "currency": tariff.currency, "by": created_by}
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


# --------------------------------------------------------------------------- assignments


@dataclass(frozen=True, slots=True)
class AssignmentRecord:
    assignment_id: int
    tariff_id: str
    scope: Scope
    target: str | None
    customer_group: str | None
    valid_from: datetime
    valid_until: datetime | None
    created_by: str
    created_at: datetime
    ended_by: str | None
    ended_at: datetime | None

    def active_at(self, at: datetime) -> bool:
        """valid_from inclusive, valid_until exclusive."""
        return self.valid_from <= at and (self.valid_until is None or at < self.valid_until)


@dataclass(frozen=True, slots=True)
class AssignmentFilter:
    scope: Scope | None = None
    target: str | None = None
    tariff_id: str | None = None
    active_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AssignmentPage:
    items: list[AssignmentRecord] = field(default_factory=list)
    next_after: int | None = None  # the last assignment id of the page; None on the last


_ASSIGNMENT_COLUMNS = (
    "assignment_id, tariff_id, scope, target, customer_group, valid_from, valid_until,"
    " created_by, created_at, ended_by, ended_at"
)


def _assignment(row: tuple[Any, ...]) -> AssignmentRecord:
    record = AssignmentRecord(*row)
    return AssignmentRecord(**{**_fields(record), "scope": Scope(record.scope)})


def _fields(record: AssignmentRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in AssignmentRecord.__slots__}


def connector_target(charge_point_id: str, connector_id: int) -> str:
    """The target of a connector assignment.

    >>> connector_target("CP-1", 2)
    'CP-1:2'
    """
    return f"{charge_point_id}:{connector_id}"


def check_target(scope: Scope, target: str | None, customer_group: str | None) -> None:
    """:class:`TariffStoreError` unless the target and group fit the scope.

    >>> check_target(Scope.CONNECTOR, "CP:1:3", None)  # charge point ids may hold ':'
    >>> check_target(Scope.CONNECTOR, "CP-1", None)
    Traceback (most recent call last):
    ...
    store.tariffs.TariffStoreError: a connector target is "<charge_point_id>:<connector_id>"
    >>> check_target(Scope.DEFAULT, None, "fleet")
    Traceback (most recent call last):
    ...
    store.tariffs.TariffStoreError: customer_group narrows only site, station, connector scopes
    """
    if (scope is Scope.DEFAULT) != (target is None):
        raise TariffStoreError(
            "a default assignment has no target"
            if scope is Scope.DEFAULT
            else f"a {scope} assignment needs a target"
        )
    if scope is Scope.CONNECTOR:
        assert target is not None
        station, _, connector = target.rpartition(":")
        if not station or not connector.isdigit() or not connector.isascii():
            raise TariffStoreError('a connector target is "<charge_point_id>:<connector_id>"')
    if customer_group is not None and scope in (Scope.DEFAULT, Scope.CUSTOMER_GROUP):
        raise TariffStoreError("customer_group narrows only site, station, connector scopes")


async def assign(
    db: AsyncDb,
    *,
    tariff_id: str,
    scope: Scope,
    target: str | None,
    customer_group: str | None = None,
    valid_from: datetime,
    valid_until: datetime | None = None,
    created_by: str,
) -> AssignmentRecord:
    """A new assignment; :class:`UnknownTariffError` if the tariff has no version,
    :class:`OverlapError` if one with the same scope/target/group overlaps,
    :class:`TariffStoreError` for a target that does not fit the scope or an empty window."""
    check_target(scope, target, customer_group)
    if valid_until is not None and valid_until <= valid_from:
        raise TariffStoreError("valid_until must be after valid_from")
    try:
        rows = await execute(
            db,
            f"""
            INSERT INTO tariff_assignments (tariff_id, scope, target, customer_group,
                valid_from, valid_until, created_by)
            SELECT %s, %s, %s, %s, %s, %s, %s
            WHERE EXISTS (SELECT 1 FROM tariffs WHERE tariff_id = %s)
            RETURNING {_ASSIGNMENT_COLUMNS}
            """,
            (
                tariff_id,
                scope.value,
                target,
                customer_group,
                valid_from,
                valid_until,
                created_by,
                tariff_id,
            ),
        )
    except psycopg.errors.ExclusionViolation:
        raise OverlapError(
            f"an assignment for {_describe_slot(scope, target, customer_group)} already "
            "covers part of that time; end it first"
        ) from None
    if not rows:
        raise UnknownTariffError(f"tariff {tariff_id!r} does not exist")
    return _assignment(rows[0])


def _describe_slot(scope: Scope, target: str | None, customer_group: str | None) -> str:
    where = "everywhere" if target is None else f"{scope} {target}"
    return where + (f" (group {customer_group})" if customer_group is not None else "")


async def get_assignment(db: AsyncDb, assignment_id: int) -> AssignmentRecord | None:
    rows = await execute(
        db,
        f"SELECT {_ASSIGNMENT_COLUMNS} FROM tariff_assignments WHERE assignment_id = %s",
        (assignment_id,),
    )
    return _assignment(rows[0]) if rows else None


async def end_assignment(
    db: AsyncDb, assignment_id: int, *, ended_by: str, at: datetime | None = None
) -> AssignmentRecord | None:
    """End an assignment at ``at`` (default now): ``valid_until = at``, or
    ``valid_from`` if it has not begun (it never applied). One that was ended already,
    or whose valid_until has passed, is returned as it is; None if there is no such
    assignment."""
    at = at or datetime.now(UTC)
    rows = await execute(
        db,
        f"""
        UPDATE tariff_assignments
        SET valid_until = GREATEST(valid_from, %(at)s), ended_by = %(by)s, ended_at = %(at)s
        WHERE assignment_id = %(id)s AND ended_at IS NULL
          AND (valid_until IS NULL OR valid_until > %(at)s)
        RETURNING {_ASSIGNMENT_COLUMNS}
        """,
        {"at": at, "by": ended_by, "id": assignment_id},
    )
    if rows:
        return _assignment(rows[0])
    return await get_assignment(db, assignment_id)


async def list_assignments(
    db: AsyncDb,
    filters: AssignmentFilter | None = None,
    *,
    after: int | None = None,
    limit: int = DEFAULT_LIMIT,
) -> AssignmentPage:
    """One page of assignments, oldest first (by id), after the id ``after``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    filters = filters or AssignmentFilter()
    where = Where()
    where.add_given("scope = %s", filters.scope.value if filters.scope else None)
    where.add_given("target = %s", filters.target)
    where.add_given("tariff_id = %s", filters.tariff_id)
    if filters.active_at is not None:
        where.add(
            "valid_from <= %s AND (valid_until IS NULL OR %s < valid_until)",
            filters.active_at,
            filters.active_at,
        )
    where.add_given("assignment_id > %s", after)
    rows = await execute(
        db,
        f"SELECT {_ASSIGNMENT_COLUMNS} FROM tariff_assignments WHERE {where.sql}"
        " ORDER BY assignment_id LIMIT %s",
        (*where.params, limit + 1),
    )
    items = [_assignment(row) for row in rows[:limit]]
    return AssignmentPage(items, items[-1].assignment_id if len(rows) > limit else None)


# --------------------------------------------------------------------------- resolution

_LEVEL = {
    Scope.CONNECTOR: 3,
    Scope.STATION: 2,
    Scope.SITE: 1,
    Scope.CUSTOMER_GROUP: 0,
    Scope.DEFAULT: 0,
}


def precedence(scope: Scope, for_group: bool) -> int:
    """Which assignment wins when several are valid at once: the higher number. The
    most specific level wins (connector > station > site > everywhere); at one level an
    assignment for the driver's customer group beats the one without a group. A
    ``customer_group`` assignment is the group's tariff everywhere: it beats only the
    default.

    >>> order = [(Scope.CONNECTOR, True), (Scope.CONNECTOR, False), (Scope.STATION, True),
    ...          (Scope.STATION, False), (Scope.SITE, True), (Scope.SITE, False),
    ...          (Scope.CUSTOMER_GROUP, True), (Scope.DEFAULT, False)]
    >>> for scope, group in order:
    ...     print(f"{precedence(scope, group)}  {scope:<14} {'group' if group else '-'}")
    7  connector      group
    6  connector      -
    5  station        group
    4  station        -
    3  site           group
    2  site           -
    1  customer_group group
    0  default        -
    """
    return 2 * _LEVEL[scope] + (1 if for_group or scope is Scope.CUSTOMER_GROUP else 0)


class AppliedTariff(NamedTuple):
    tariff: Tariff
    tariff_id: str
    version: int


@dataclass(frozen=True, slots=True)
class Resolution:
    """The tariff that applies, the assignment that made it apply, and why."""

    applied: AppliedTariff
    assignment: AssignmentRecord
    site_id: str | None  # the station's site (None: unknown station or no site)
    passed_over: list[AssignmentRecord]  # more specific assignments with no version valid


async def resolve_tariff(
    db: AsyncDb,
    charge_point_id: str,
    connector_id: int | None,
    customer_group: str | None,
    at: datetime,
) -> Resolution | None:
    """:func:`tariff_for` with the assignment that decided it (None: no tariff applies)."""
    site = await execute(
        db, "SELECT site_id FROM stations WHERE charge_point_id = %s", (charge_point_id,)
    )
    site_id: str | None = site[0][0] if site else None
    rows = await execute(
        db,
        f"""
        SELECT {_ASSIGNMENT_COLUMNS} FROM tariff_assignments
        WHERE valid_from <= %(at)s AND (valid_until IS NULL OR %(at)s < valid_until)
          AND (customer_group IS NULL OR customer_group = %(group)s)
          AND ((scope = 'connector' AND target = %(connector)s)
            OR (scope = 'station' AND target = %(station)s)
            OR (scope = 'site' AND target = %(site)s)
            OR (scope = 'customer_group' AND target = %(group)s)
            OR scope = 'default')
        """,
        {
            "at": at,
            "group": customer_group,
            "connector": (
                None if connector_id is None else connector_target(charge_point_id, connector_id)
            ),
            "station": charge_point_id,
            "site": site_id,
        },
    )
    candidates = sorted(
        (_assignment(row) for row in rows),
        key=lambda a: precedence(a.scope, a.customer_group is not None),
        reverse=True,
    )
    passed_over: list[AssignmentRecord] = []
    for assignment in candidates:
        applied = await _version_at(db, assignment.tariff_id, at)
        if applied is not None:
            return Resolution(applied, assignment, site_id, passed_over)
        passed_over.append(assignment)
    return None


async def _version_at(db: AsyncDb, tariff_id: str, at: datetime) -> AppliedTariff | None:
    """The latest version created at or before ``at`` among those in force at ``at``
    (their start_date_time/end_date_time)."""
    rows = await execute(
        db,
        "SELECT version, body::text FROM tariffs WHERE tariff_id = %s AND created_at <= %s"
        " ORDER BY version DESC",
        (tariff_id, at),
    )
    for version, text in rows:
        tariff = parse_tariff(_body(text))
        if tariff.valid_at(at):
            return AppliedTariff(tariff, tariff_id, int(version))
    return None


async def tariff_for(
    db: AsyncDb,
    charge_point_id: str,
    connector_id: int | None,
    customer_group: str | None,
    at: datetime,
) -> AppliedTariff | None:
    """The tariff (and its id and version) a session starting at ``at`` on the connector
    is priced under, for a driver in ``customer_group`` (None: in none):

    1. the assignments valid at ``at`` (valid_from <= at < valid_until) for this
       connector, its station, the station's site, the driver's group and the default,
       a grouped one only for the driver's group;
    2. ordered by :func:`precedence` (connector > station > site > everywhere; the
       driver's group first at each level);
    3. the first whose tariff has a version created at or before ``at`` and in force at
       ``at`` (``Tariff.valid_at``) wins, with the latest such version; an assignment
       whose tariff has none is passed over.
    """
    resolution = await resolve_tariff(db, charge_point_id, connector_id, customer_group, at)
    return None if resolution is None else resolution.applied


# --------------------------------------------------------------------------- customer groups


async def customer_group_of(db: AsyncDb, id_tag: str) -> str | None:
    """The customer group of a token (None: unknown token or in no group)."""
    rows = await execute(db, "SELECT customer_group FROM id_tags WHERE id_tag = %s", (id_tag,))
    return rows[0][0] if rows else None


async def set_customer_group(db: AsyncDb, id_tag: str, customer_group: str | None) -> bool:
    """Put a token in a group (None: in none); False if there is no such token."""
    rows = await execute(
        db,
        "UPDATE id_tags SET customer_group = %s WHERE id_tag = %s RETURNING id_tag",
        (customer_group, id_tag),
    )
    return bool(rows)


# --------------------------------------------------------------------------- quotes


@dataclass(frozen=True, slots=True)
class QuoteRecord:
    quote_id: uuid.UUID
    charge_point_id: str
    connector_id: int
    id_tag: str | None
    tariff_id: str
    tariff_version: int
    created_at: datetime
    valid_until: datetime
    session_id: uuid.UUID | None
    attached_at: datetime | None
    body: dict[str, Any]  # the frozen Tariff the driver was shown

    @property
    def tariff(self) -> Tariff:
        return parse_tariff(self.body)

    def usable_at(self, at: datetime) -> bool:
        """Not used by a session yet and ``at`` before ``valid_until`` (exclusive)."""
        return self.session_id is None and at < self.valid_until


_QUOTE_COLUMNS = (
    "quote_id, charge_point_id, connector_id, id_tag, tariff_id, tariff_version, created_at,"
    " valid_until, session_id, attached_at, body::text"
)


def _quote(row: tuple[Any, ...]) -> QuoteRecord:
    raw = QuoteRecord(*row)  # body still the jsonb's text
    return replace(raw, body=_body(cast(str, raw.body)))


async def create_quote(
    db: AsyncDb,
    *,
    charge_point_id: str,
    connector_id: int,
    id_tag: str | None,
    valid_for: timedelta,
    at: datetime | None = None,
    applied: AppliedTariff | None = None,
    quoted: Mapping[str, Any] | None = None,
) -> QuoteRecord | None:
    """Freeze the tariff that applies now (``at``) on the connector for the token's
    customer group, valid for ``valid_for``; None if no tariff applies. ``applied``: the
    tariff already resolved; ``quoted``: the Tariff JSON the driver is shown when it is
    not the stored version's own (a demand-adjusted price), kept as the quote's body."""
    if valid_for <= timedelta(0):
        raise ValueError("a quote must be valid for a positive time")
    at = at or datetime.now(UTC)
    if applied is None:
        group = None if id_tag is None else await customer_group_of(db, id_tag)
        applied = await tariff_for(db, charge_point_id, connector_id, group, at)
    if applied is None:
        return None
    rows = await execute(
        db,
        f"""
        INSERT INTO price_quotes (quote_id, charge_point_id, connector_id, id_tag, tariff_id,
            tariff_version, body, created_at, valid_until)
        SELECT %s, %s, %s, %s, t.tariff_id, t.version, COALESCE(%s::jsonb, t.body), %s, %s
        FROM tariffs t WHERE t.tariff_id = %s AND t.version = %s
        RETURNING {_QUOTE_COLUMNS}
        """,
        (
            uuid.uuid4(),
            charge_point_id,
            connector_id,
            id_tag,
            None if quoted is None else _jsonb(quoted),
            at,
            at + valid_for,
            applied.tariff_id,
            applied.version,
        ),
    )
    return _quote(rows[0])


async def get_quote(db: AsyncDb, quote_id: uuid.UUID) -> QuoteRecord | None:
    rows = await execute(
        db, f"SELECT {_QUOTE_COLUMNS} FROM price_quotes WHERE quote_id = %s", (quote_id,)
    )
    return _quote(rows[0]) if rows else None


async def attach_quote_to_session(
    db: AsyncDb, quote_id: uuid.UUID, session_id: uuid.UUID, at: datetime | None = None
) -> QuoteRecord:
    """The session (starting at ``at``, default now) is priced as quoted. At most once:
    :class:`QuoteError` if the quote is unknown, expired (``at`` >= valid_until), used
    already, or the session has a quote already."""
    at = at or datetime.now(UTC)
    try:
        rows = await execute(
            db,
            f"""
            UPDATE price_quotes SET session_id = %s, attached_at = %s
            WHERE quote_id = %s AND session_id IS NULL AND %s < valid_until
            RETURNING {_QUOTE_COLUMNS}
            """,
            (session_id, at, quote_id, at),
        )
    except psycopg.errors.UniqueViolation:
        raise QuoteError(f"session {session_id} uses another quote already") from None
    if rows:
        return _quote(rows[0])
    quote = await get_quote(db, quote_id)
    if quote is None:
        raise QuoteError(f"quote {quote_id} does not exist")
    if quote.session_id is not None:
        raise QuoteError(f"quote {quote_id} is used by session {quote.session_id} already")
    raise QuoteError(f"quote {quote_id} expired at {quote.valid_until.isoformat()}")


async def quoted_tariff(db: AsyncDb, session_id: uuid.UUID) -> AppliedTariff | None:
    """The tariff a session was quoted (and is priced with), if it used a quote."""
    rows = await execute(
        db,
        "SELECT tariff_id, tariff_version, body::text FROM price_quotes WHERE session_id = %s",
        (session_id,),
    )
    if not rows:
        return None
    tariff_id, version, text = rows[0]
    return AppliedTariff(parse_tariff(_body(text)), tariff_id, int(version))
