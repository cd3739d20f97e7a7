"""What a stored session is priced under and what it used, shared by the billing worker
(a closed session's CDR) and the API (an active session's running cost):

- :func:`tariff_of`: the tariff the driver was quoted, if the session used a quote, else
  the one assigned (connector, station, site, the driver's group, everywhere) at the
  session's start;
- :func:`usage_of`: the session's stored samples in its site's time zone, up to its stop
  or, while it runs, up to its last register reading (telemetry time, never the clock);
  or a billing clerk's corrected energy, spread as the samples' register rose
  (:func:`billing.metered.corrected_span`; linearly without usable samples).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing.metered import Sample, corrected_span, usage_from_samples
from billing.session_usage import SessionUsage
from bus.measurands import ENERGY_REGISTER, to_wh
from store import id_tokens as token_store
from store import quotes as quote_store
from store import tariff_assignments as assignment_store
from store.db import AsyncDb
from store.samples import session_samples
from store.sites import station_location
from store.tariffs import AppliedTariff


@dataclass(frozen=True)
class StoredSession:
    """The facts of a session pricing needs (from ``sessions`` or ``sessions.closed``)."""

    session_id: str
    charge_point_id: str
    connector_id: int
    transaction_id: str
    id_tag: str | None
    started_at: datetime
    stopped_at: datetime | None  # None: still charging
    meter_start_wh: int | None
    meter_stop_wh: int | None
    energy_wh: int | None


async def tariff_of(db: AsyncDb, session: StoredSession) -> AppliedTariff | None:
    applied = await quote_store.quoted_tariff(db, uuid.UUID(session.session_id))
    if applied is not None:
        return applied
    group = (
        None if session.id_tag is None else await token_store.customer_group_of(db, session.id_tag)
    )
    return await assignment_store.tariff_for(
        db, session.charge_point_id, session.connector_id, group, session.started_at
    )


async def usage_of(
    db: AsyncDb, session: StoredSession, *, corrected_energy_wh: int | None = None
) -> tuple[SessionUsage, str | None]:
    """The priced usage and the station's site; :class:`billing.session_usage.UsageError`
    when the stored facts cannot be priced. ``corrected_energy_wh``: bill that instead
    of the session's figure (a stopped session)."""
    site_id, time_zone = await station_location(db, session.charge_point_id)
    rows = await session_samples(
        db, session.charge_point_id, session.connector_id, session.transaction_id
    )
    samples = [
        Sample(at, measurand, phase, unit, Decimal(value))
        for at, measurand, phase, unit, value in rows
    ]
    stopped_at, meter_stop, energy = session.stopped_at, session.meter_stop_wh, session.energy_wh
    meter_start = session.meter_start_wh
    if corrected_energy_wh is not None and stopped_at is not None:
        energy = corrected_energy_wh
        span = corrected_span(
            samples,
            started_at=session.started_at,
            stopped_at=stopped_at,
            meter_start_wh=meter_start,
            meter_stop_wh=meter_stop,
            energy_wh=energy,
        )
        if span is None:
            samples, meter_start, meter_stop = [], None, None  # linear
        else:
            meter_start, meter_stop = span
    elif stopped_at is None:  # running: up to the last register reading
        stopped_at, meter_stop = session.started_at, session.meter_start_wh
        for sample in samples:
            wh = (
                to_wh(sample.value, sample.unit or "Wh", 0)
                if sample.measurand == ENERGY_REGISTER and not sample.phase
                else None
            )
            if wh is not None and sample.measured_at > stopped_at:
                stopped_at, meter_stop = sample.measured_at, int(wh)
        start_wh = session.meter_start_wh or 0
        energy = max((meter_stop or start_wh) - start_wh, 0)
    usage = usage_from_samples(
        started_at=session.started_at,
        stopped_at=stopped_at,
        meter_start_wh=meter_start,
        meter_stop_wh=meter_stop,
        energy_wh=energy or 0,
        samples=samples,
        time_zone=time_zone,
    )
    return usage, site_id
