"""A closed session's signed meter values (Eichrecht): read from the store
(:mod:`store.signed_values`), they become its CDR's ``signed_data``
(:func:`billing.signed_data.ocpi_signed_data`, in :mod:`invoicing.invoice`) and decide
which energy the session bills (:func:`checked_against_signed`, on
:func:`billing.eichrecht.signed_energy_decision`). A session whose meter signed nothing
has none and is billed as the sessions flow measured it."""

from __future__ import annotations

import structlog
from msgspec.structs import replace

from billing.eichrecht import SignedEnergy, signed_energy_decision
from billing.signed_data import SignedValue
from bus.sessions import EnergySource, SessionClosed
from store.db import AsyncDb
from store.signed_values import session_signed_values

log = structlog.get_logger("chargeflow.billing")


async def signed_values_of(db: AsyncDb, session: SessionClosed) -> list[SignedValue]:
    """The session's stored signed values, oldest first (none: its meter signed nothing)."""
    return await session_signed_values(db, session.charge_point_id, session.transaction_id)


async def checked_against_signed(
    db: AsyncDb, session: SessionClosed
) -> tuple[SessionClosed, tuple[str, ...]]:
    """The session to bill and why it is held instead (empty: billed). The session is
    returned with its energy set to the signed span (the station register's figure)
    when a smart meter's figure was billed instead."""
    decision = signed_energy_decision(session, await signed_values_of(db, session))
    if decision.outcome is SignedEnergy.HOLD:
        assert decision.reason is not None
        return session, (decision.reason,)
    if decision.outcome is SignedEnergy.STATION_REGISTER:
        log.warning(
            "smart meter overridden for Eichrecht: the signed span is billed",
            session_id=session.session_id,
            signed_span_wh=decision.signed_span_wh,
            energy_wh=session.energy_wh,
            energy_source=session.energy_source,
            smart_meter_id=session.smart_meter_id,
        )
        return replace(
            session,
            energy_wh=decision.signed_span_wh,
            energy_source=EnergySource.STATION_REGISTER,
            smart_meter_id=None,  # the CDR's meter is the station's signing one
        ), ()
    return session, ()
