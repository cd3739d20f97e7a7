"""Which tariff applies where and when (table ``tariff_assignments``; migration 0015):
assignments of a tariff to a connector, station, site, customer group or everywhere over
``[valid_from, valid_until)`` (two with the same scope, target and group never overlap:
an exclusion constraint, :class:`~store.tariffs.OverlapError`; ending one keeps its
history), and :func:`tariff_for`: the tariff a session starting at ``at`` is priced
under (order in :func:`precedence`). Async."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from billing.tariffs import parse_tariff
from store.db import AsyncDb, Where, execute
from store.tariffs import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    AppliedTariff,
    OverlapError,
    Scope,
    TariffStoreError,
    UnknownTariffError,
    decode_body,
)

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
        tariff = parse_tariff(decode_body(text))
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
