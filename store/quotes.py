"""Price quotes (table ``price_quotes``; migration 0015): the Tariff a driver was shown
for a connector, frozen until ``valid_until`` (exclusive); a session uses it at most
once (:func:`attach_quote_to_session`) and is then priced with it (:func:`quoted_tariff`).
Async."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import psycopg

from billing.tariffs import Tariff, parse_tariff
from store.db import AsyncDb, execute
from store.id_tokens import customer_group_of
from store.tariff_assignments import tariff_for
from store.tariffs import (
    AppliedTariff,
    QuoteError,
    decode_body,
    jsonb_of,
)

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
    return replace(raw, body=decode_body(cast(str, raw.body)))


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
            None if quoted is None else jsonb_of(quoted),
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
    return AppliedTariff(parse_tariff(decode_body(text)), tariff_id, int(version))
