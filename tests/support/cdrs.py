"""CDRs as billing issues them (priced under a tariff by the real code), for the CDR
store, API and bench."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from billing.cdrs import CdrLocation, CdrParty, build_cdr, credit_cdr
from billing.cost import price_session
from billing.metered import usage_from_samples
from bus.sessions import EnergySource, Quality, SessionClosed
from tests.support.billing import component, element, tariff

PARTY = CdrParty("NL", "CFL")
# 0.3333 EUR/kWh + 21 % VAT: totals that are not round, a start fee of 0.35.
TARIFF = tariff(element(component("ENERGY", "0.3333"), component("FLAT", "0.35")))


def closed_session(
    started_at: datetime,
    *,
    energy_wh: int = 7_500,
    minutes: int = 30,
    charge_point_id: str = "CP-1",
    connector_id: int = 1,
    id_tag: str | None = "TAG-1",
    quality: Quality = Quality.EXACT,
    session_id: str | None = None,
    transaction_id: str = "1",
    meter_start_wh: int = 1_000,
) -> SessionClosed:
    """A closed session as the sessions flow publishes it: ``energy_wh`` over
    ``minutes`` from ``started_at``, the register from ``meter_start_wh``."""
    stopped = started_at + timedelta(minutes=minutes)
    return SessionClosed(
        message_id="m",
        session_id=session_id or str(uuid.uuid4()),
        charge_point_id=charge_point_id,
        connector_id=connector_id,
        transaction_id=transaction_id,
        started_at=started_at,
        stopped_at=stopped,
        closed_at=stopped + timedelta(seconds=1),
        energy_wh=energy_wh,
        energy_source=EnergySource.STATION_REGISTER,
        quality=quality,
        quality_reasons=[] if quality is Quality.EXACT else ["register_jump"],
        id_tag=id_tag,
        meter_start_wh=meter_start_wh,
        meter_stop_wh=meter_start_wh + energy_wh,
    )


def issued_cdr(session: SessionClosed, *, revision: int = 1) -> dict[str, Any]:
    """The CDR billing issues for an exact, stopped session."""
    assert session.stopped_at is not None
    assert session.energy_wh is not None
    usage = usage_from_samples(
        started_at=session.started_at,
        stopped_at=session.stopped_at,
        meter_start_wh=session.meter_start_wh,
        meter_stop_wh=session.meter_stop_wh,
        energy_wh=session.energy_wh,
        samples=[],
        time_zone="Europe/Amsterdam",
    )
    location = CdrLocation(
        id="SITE-1",
        evse_uid=f"{session.charge_point_id}*{session.connector_id}",
        evse_id=f"NL*CFL*E{session.connector_id}",
        connector_id=str(session.connector_id),
    )
    return build_cdr(
        session,
        price_session(TARIFF, usage),
        party=PARTY,
        location=location,
        last_updated=session.closed_at,
        revision=revision,
    )


def credit_of(cdr: dict[str, Any]) -> dict[str, Any]:
    return credit_cdr(cdr, last_updated=datetime.fromisoformat(cdr["end_date_time"]))
