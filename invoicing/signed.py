"""A closed session's signed meter values (Eichrecht) as its CDR's ``signed_data``:
the stored values (:mod:`store.signed_values`) mapped by
:func:`billing.signed_data.ocpi_signed_data`. The CDR made in :mod:`invoicing.invoice`
carries it; a session whose meter signed nothing has none."""

from __future__ import annotations

from typing import Any

from billing.signed_data import ocpi_signed_data
from bus.sessions import SessionClosed
from store.db import AsyncDb
from store.signed_values import session_signed_values


async def signed_data_of(db: AsyncDb, session: SessionClosed) -> dict[str, Any] | None:
    """The OCPI ``signed_data`` of the session; None when its meter signed nothing."""
    values = await session_signed_values(db, session.charge_point_id, session.transaction_id)
    return ocpi_signed_data(values)
