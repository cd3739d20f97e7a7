"""Signed meter values (table ``signed_meter_values``, migration 0019): written with the
sessions of their batch, read per session by billing for the CDR's ``signed_data``.

A handful per session (start, end, maybe a few in between), so a plain ``executemany``
with ``ON CONFLICT DO NOTHING`` on the natural key: a replay stores nothing new. The rows
are duck-typed (:class:`SignedValue`) so this module does not depend on ``flows``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import psycopg

from billing.signed_data import SignedValue as BillingSignedValue
from store.db import AsyncDb, execute


class SignedValue(Protocol):
    @property
    def measured_at(self) -> datetime: ...
    @property
    def charge_point_id(self) -> str: ...
    @property
    def connector_id(self) -> int | None: ...
    @property
    def transaction_id(self) -> str: ...
    @property
    def measurand(self) -> str: ...
    @property
    def context(self) -> str: ...
    @property
    def signed_data(self) -> str: ...
    @property
    def encoding_method(self) -> str | None: ...
    @property
    def signing_method(self) -> str | None: ...
    @property
    def public_key(self) -> str | None: ...
    @property
    def value(self) -> Decimal | None: ...
    @property
    def unit(self) -> str: ...
    @property
    def unit_multiplier(self) -> int: ...


_INSERT = (
    "INSERT INTO signed_meter_values (charge_point_id, transaction_id, measured_at, context,"
    " measurand, connector_id, signed_data, encoding_method, signing_method, public_key,"
    " value, unit, unit_multiplier)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


def write_signed_values(cur: psycopg.Cursor[Any], rows: Sequence[SignedValue]) -> None:
    """Insert the signed values not stored yet, in the caller's transaction."""
    cur.executemany(
        _INSERT,
        [
            (
                r.charge_point_id,
                r.transaction_id,
                r.measured_at,
                r.context,
                r.measurand,
                r.connector_id,
                r.signed_data,
                r.encoding_method,
                r.signing_method,
                r.public_key,
                r.value,
                r.unit,
                r.unit_multiplier,
            )
            for r in rows
        ],
    )


async def session_signed_values(
    db: AsyncDb, charge_point_id: str, transaction_id: str
) -> list[BillingSignedValue]:
    """A transaction's stored signed values, oldest first."""
    rows = await execute(
        db,
        "SELECT measured_at, context, signed_data, encoding_method, public_key, value, unit,"
        " unit_multiplier, measurand FROM signed_meter_values"
        " WHERE charge_point_id = %s AND transaction_id = %s ORDER BY measured_at, context",
        (charge_point_id, transaction_id),
    )
    return [BillingSignedValue(*row) for row in rows]
