"""One closed session to its CDR or its review, on the database (the pure parts are
:mod:`billing.cdrs`, :mod:`billing.metered` and :mod:`billing.cost`).

1. :func:`billing.cdrs.review`: only an ``exact`` session with a stop is billed; the rest
   are held (``billing_reviews``) for a clerk to release, correct or write off. A
   session whose meter signed its start and end (Eichrecht) bills the signed span or is
   held too (:func:`invoicing.signed.checked_against_signed`).
2. The tariff: the one quoted to the driver if the session used a quote, else the one
   assigned to the connector, station, site or the driver's group at the session's
   start (``store.tariffs``). None applies: held, saying so. Time-based components on a
   station whose meter signs: the CDR's ``compliance_warnings`` say so
   (:func:`billing.eichrecht.compliance_warnings`).
3. The session's stored samples in the site's time zone (:mod:`billing.metered`),
   priced (:func:`billing.cost.price_session`), made a CDR and stored (its id comes from
   the session: a replay stores nothing new and returns the same CDR).
4. A session closed again later (a late stop after a timeout close) that bills
   differently: the CDR in force is cancelled by a credit CDR and the next revision
   issued; never an edit. A close no later than the CDR in force's is a replay.
5. The CDR's customer: the one the session's payment was made for, else its id tag's
   payment method's customer, else the id tag.

Steps 2-5 are :func:`bill_session`, also what a clerk's release or correction of a held
session is billed with (:mod:`invoicing.reviews`: no quality hold, the corrected energy
if any, the decision on the CDR).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from billing.cdrs import (
    CdrLocation,
    CdrParty,
    ClerkDecision,
    Review,
    build_cdr,
    cdr_revision,
    credit_cdr,
    review,
)
from billing.cost import price_session
from billing.eichrecht import compliance_warnings
from billing.preview import decode_json
from billing.session_usage import UsageError
from billing.signed_data import ocpi_signed_data
from bus.sessions import SessionClosed
from bus.times import parse_rfc3339
from invoicing.pricing import StoredSession, tariff_of, usage_of
from invoicing.signed import checked_against_signed, signed_values_of
from store import billing_reviews as review_store
from store import cdrs as cdr_store
from store import payment_methods as method_store
from store.db import AsyncDb

log = structlog.get_logger("chargeflow.billing")


@dataclass(frozen=True)
class Invoiced:
    """A session's outcome: its CDR (billed) or why it is held."""

    session: SessionClosed
    cdr: dict[str, Any] | None
    held: tuple[str, ...] = ()
    credit: dict[str, Any] | None = None  # the credit CDR an amendment issued first


async def _hold(db: AsyncDb, session: SessionClosed, reasons: tuple[str, ...]) -> Invoiced:
    await review_store.hold_session(db, session, list(reasons))
    log.info("session held for review", session_id=session.session_id, reasons=list(reasons))
    return Invoiced(session, None, reasons)


async def invoice_session(db: AsyncDb, session: SessionClosed, party: CdrParty) -> Invoiced:
    decision = review(session)
    reasons = decision.reasons
    if decision.decision is Review.BILL:
        billed, reasons = await checked_against_signed(db, session)
        if not reasons:
            outcome = await bill_session(db, billed, party)
            if outcome.cdr is not None:
                return outcome
            reasons = outcome.held
    return await _hold(db, session, reasons)  # as the flow closed it


def _stored(session: SessionClosed, energy_wh: int) -> StoredSession:
    assert session.stopped_at is not None
    return StoredSession(
        session_id=session.session_id,
        charge_point_id=session.charge_point_id,
        connector_id=session.connector_id,
        transaction_id=session.transaction_id,
        id_tag=session.id_tag,
        started_at=session.started_at,
        stopped_at=session.stopped_at,
        meter_start_wh=session.meter_start_wh,
        meter_stop_wh=session.meter_stop_wh,
        energy_wh=energy_wh,
    )


async def bill_session(
    db: AsyncDb,
    session: SessionClosed,
    party: CdrParty,
    *,
    decision: ClerkDecision | None = None,
) -> Invoiced:
    """Price the session and store its CDR (or, amended, the credit and next revision),
    whatever its quality: the caller decided it is billed (``decision``: a clerk's
    release or correction, carried on the CDR). Not priceable: no CDR, ``held`` says
    why (nothing stored)."""
    corrected = decision.corrected_energy_wh if decision is not None else None
    energy = corrected if corrected is not None else session.energy_wh
    if session.stopped_at is None or energy is None:
        return Invoiced(session, None, ("no stop time or no energy figure",))
    stored = _stored(session, energy)
    applied = await tariff_of(db, stored)
    if applied is None:
        return Invoiced(session, None, ("no tariff applies to the session's connector",))
    try:
        usage, site_id = await usage_of(db, stored, corrected_energy_wh=corrected)
    except UsageError as exc:
        return Invoiced(session, None, (f"cannot be priced: {exc}",))
    priced = price_session(applied.tariff, usage)
    in_force = await cdr_store.session_cdr(db, session.session_id)
    revision, credit = 1, None
    if in_force is not None:
        current: dict[str, Any] = decode_json(in_force, "the CDR in force")
        if parse_rfc3339(current["last_updated"]) >= session.closed_at:
            return Invoiced(session, current)  # a replay, or older than the CDR in force
        revision = cdr_revision(current["id"])[0] + 1
        credit = credit_cdr(current, last_updated=session.closed_at)
    signed = await signed_values_of(db, session)
    warnings = compliance_warnings(applied.tariff, signed, energy)
    cdr = build_cdr(
        session,
        priced,
        party=party,
        location=_location(session, party, site_id),
        last_updated=session.closed_at,
        meter_id=session.smart_meter_id,
        revision=revision,
        signed_data=ocpi_signed_data(signed),
        decision=decision,
        compliance_warnings=warnings,
    )
    if credit is not None and _same_bill(credit, cdr):
        return Invoiced(session, decode_json(in_force or "{}", "the CDR in force"))
    if warnings:
        log.warning("CDR with compliance warnings", cdr_id=cdr["id"], warnings=warnings)
    await _store(db, session, site_id, credit, cdr)
    return Invoiced(session, cdr, credit=credit)


def _location(session: SessionClosed, party: CdrParty, site_id: str | None) -> CdrLocation:
    return CdrLocation(
        id=site_id or session.charge_point_id,
        evse_uid=f"{session.charge_point_id}*{session.connector_id}",
        evse_id=f"{party.country_code}*{party.party_id}*E{session.charge_point_id}*{session.connector_id}",
        connector_id=str(session.connector_id),
    )


async def _store(
    db: AsyncDb,
    session: SessionClosed,
    site_id: str | None,
    credit: dict[str, Any] | None,
    cdr: dict[str, Any],
) -> None:
    customer = await method_store.billed_customer(db, session.session_id, session.id_tag)

    async def store(issued: dict[str, Any]) -> None:
        await cdr_store.insert_cdr(
            db,
            issued,
            charge_point_id=session.charge_point_id,
            connector_id=session.connector_id,
            site_id=site_id,
            id_tag=session.id_tag,
            customer=customer,
        )

    if credit is not None:  # amended after its CDR: cancel it, then the new revision
        await store(credit)
        log.info("CDR credited for an amended session", cdr_id=credit["credit_reference_id"])
    await store(cdr)


def _same_bill(credit: dict[str, Any], cdr: dict[str, Any]) -> bool:
    """Whether the new revision bills what the credited one did (a later close that
    changed nothing billable: no credit, no new CDR)."""
    return (
        credit["end_date_time"] == cdr["end_date_time"]
        and credit["total_energy"] == cdr["total_energy"]
        and all(-credit["total_cost"][k] == cdr["total_cost"][k] for k in cdr["total_cost"])
    )
