"""OCPI 2.2.1 CDRs from closed sessions: which sessions are billed and which are held for
review, the CDR of a priced session, and the credit CDR that corrects one.

A CDR is never changed once issued: a correction (a late stop, a clerk's correction, a
write-off) is a credit CDR that repeats the original with its totals negated
(``credit: true``, ``credit_reference_id``, id + ``-C``), followed by a new CDR with the
next revision's id.

>>> cdr_id("0d4f6a3e-5d7b-4b7e-9f0e-2a9c6c1b8e11")
'0D4F6A3E5D7B4B7E9F0E2A9C6C1B8E11'
>>> cdr_id("0d4f6a3e-5d7b-4b7e-9f0e-2a9c6c1b8e11", revision=2)
'0D4F6A3E5D7B4B7E9F0E2A9C6C1B8E11-2'
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from billing.priced import PricedSession, ocpi_datetime
from bus.sessions import Quality, SessionClosed

# OCPI CDR ids are CiString(39): 32 hex digits + "-999" (revision) + "-C" (credit) fit.
MAX_CDR_ID = 39
MAX_REVISION = 999
# Every id :func:`cdr_id` and :func:`credit_cdr` make, and only those.
CDR_ID_PATTERN = r"^[0-9A-F]{32}(-[1-9][0-9]{0,2})?(-C)?$"


class Review(StrEnum):
    BILL = "bill"
    HOLD = "hold"


@dataclass(frozen=True)
class ReviewDecision:
    decision: Review
    reasons: tuple[str, ...] = ()


def review(session: SessionClosed) -> ReviewDecision:
    """Bill a session only when its energy is ``exact`` and it has a stop; every other one
    is held for a billing clerk to release, correct or write off (never billed silently).

    >>> from datetime import UTC, datetime
    >>> from bus.sessions import EnergySource
    >>> t = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    >>> s = SessionClosed(message_id="m", session_id="s", charge_point_id="CP", connector_id=1,
    ...     transaction_id="1", started_at=t, stopped_at=t, closed_at=t, energy_wh=1000,
    ...     energy_source=EnergySource.STATION_REGISTER, quality=Quality.CORRECTED,
    ...     quality_reasons=["register_jump"])
    >>> review(s)
    ReviewDecision(decision=<Review.HOLD: 'hold'>, reasons=('quality corrected: register_jump',))
    """
    reasons: list[str] = []
    if session.quality is not Quality.EXACT:
        why = ", ".join(session.quality_reasons) or "no reason given"
        reasons.append(f"quality {session.quality.value}: {why}")
    if session.energy_wh is None:
        reasons.append("no energy figure")
    if session.stopped_at is None:
        reasons.append("no stop time")
    return ReviewDecision(Review.HOLD if reasons else Review.BILL, tuple(reasons))


def cdr_id(session_id: str, revision: int = 1) -> str:
    """The id of a session's CDR (revision 1) or of its correction (revision n > 1):
    stable, so a replayed ``sessions.closed`` produces the same id."""
    if not 1 <= revision <= MAX_REVISION:
        raise ValueError(f"CDR revisions run from 1 to {MAX_REVISION}")
    try:
        key = uuid.UUID(session_id).hex
    except ValueError:
        key = hashlib.sha256(session_id.encode()).hexdigest()[:32]
    base = key.upper()
    return base if revision == 1 else f"{base}-{revision}"


def cdr_revision(cdr_id_: str) -> tuple[int, bool]:
    """The revision of a CDR id and whether it is a credit's.

    >>> cdr_revision("0D4F6A3E5D7B4B7E9F0E2A9C6C1B8E11-2-C")
    (2, True)
    >>> cdr_revision("0D4F6A3E5D7B4B7E9F0E2A9C6C1B8E11")
    (1, False)
    """
    if re.fullmatch(CDR_ID_PATTERN, cdr_id_) is None:
        raise ValueError(f"not a chargeflow CDR id: {cdr_id_!r}")
    parts = cdr_id_.split("-")
    credit = parts[-1] == "C"
    revision = int(parts[1]) if len(parts) > 1 and parts[1] != "C" else 1
    return revision, credit


@dataclass(frozen=True)
class CdrParty:
    """The CPO issuing the CDR (OCPI country code and party id)."""

    country_code: str
    party_id: str


@dataclass(frozen=True)
class CdrLocation:
    """Where the session ran, as OCPI's CdrLocation (what the registry knows of it)."""

    id: str
    evse_uid: str
    evse_id: str
    connector_id: str
    name: str | None = None
    address: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None
    coordinates: dict[str, str] | None = None
    connector_standard: str | None = None
    connector_format: str | None = None
    connector_power_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra" and v is not None}
        return {**out, **self.extra}


# The CDR's energy_quality when a billing clerk set the energy (the flow's own word for
# its adjusted figures is "corrected" too; the CDR's ``review`` says who and why).
CORRECTED_BY_BILLING = "corrected"


@dataclass(frozen=True)
class ClerkDecision:
    """A billing clerk's release or correction of a held session: the CDR carries it
    (chargeflow's own ``review`` field) so the bill explains itself."""

    action: str  # "release" | "correct"
    by: str
    at: datetime
    note: str | None = None
    corrected_energy_wh: int | None = None  # a correction: the energy to bill
    measured_energy_wh: int | None = None  # a correction: the figure it replaced

    def __post_init__(self) -> None:
        if self.action not in ("release", "correct"):
            raise ValueError(f"a CDR follows a release or a correction, not {self.action!r}")
        if (self.action == "correct") != (self.corrected_energy_wh is not None):
            raise ValueError("a correction, and only a correction, has corrected_energy_wh")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "by": self.by, "at": ocpi_datetime(self.at)}
        if self.note is not None:
            out["note"] = self.note
        if self.action == "correct":
            out["corrected_energy_wh"] = self.corrected_energy_wh
            out["measured_energy_wh"] = self.measured_energy_wh
        return out


def build_cdr(
    session: SessionClosed,
    priced: PricedSession,
    *,
    party: CdrParty,
    location: CdrLocation,
    last_updated: datetime,
    revision: int = 1,
    meter_id: str | None = None,
    signed_data: dict[str, Any] | None = None,
    auth_method: str = "AUTH_REQUEST",
    token_type: str = "RFID",
    decision: ClerkDecision | None = None,
    compliance_warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """The OCPI 2.2.1 CDR of a priced session (numbers as Decimal; encode with
    :func:`billing.preview.encode_cdr`). ``signed_data`` (OCMF etc.) is kept exactly as
    the station sent it; ``last_updated`` is the telemetry time the CDR was made from;
    ``decision``: the clerk's release or correction a held session is billed under;
    ``compliance_warnings`` (:mod:`billing.eichrecht`): chargeflow's own field, if any."""
    fields = priced.to_cdr()
    cdr: dict[str, Any] = {
        "country_code": party.country_code,
        "party_id": party.party_id,
        "id": cdr_id(session.session_id, revision),
        "start_date_time": fields["start_date_time"],
        "end_date_time": fields["end_date_time"],
        "session_id": session.session_id,
        "cdr_token": _cdr_token(session, party, token_type),
        "auth_method": auth_method,
        "cdr_location": location.to_json(),
        "currency": fields["currency"],
        "tariffs": fields["tariffs"],
        "charging_periods": fields["charging_periods"],
        "total_cost": fields["total_cost"],
        "total_fixed_cost": fields["total_fixed_cost"],
        "total_energy": fields["total_energy"],
        "total_energy_cost": fields["total_energy_cost"],
        "total_time": fields["total_time"],
        "total_time_cost": fields["total_time_cost"],
        "total_parking_time": fields["total_parking_time"],
        "total_parking_cost": fields["total_parking_cost"],
        "credit": False,
        "last_updated": ocpi_datetime(last_updated),
        # chargeflow's own: the lines the totals are made of, and the session's quality.
        "cost_breakdown": fields["cost_breakdown"],
        "energy_quality": session.quality.value,
    }
    if decision is not None:
        cdr["review"] = decision.to_json()
        if decision.action == "correct":
            cdr["energy_quality"] = CORRECTED_BY_BILLING
    if "price_limit_adjustment" in fields:
        cdr["price_limit_adjustment"] = fields["price_limit_adjustment"]
    if meter_id is not None:
        cdr["meter_id"] = meter_id
    if signed_data is not None:
        cdr["signed_data"] = signed_data
    if compliance_warnings:
        cdr["compliance_warnings"] = list(compliance_warnings)
    return cdr


def _cdr_token(session: SessionClosed, party: CdrParty, token_type: str) -> dict[str, str]:
    return {
        "country_code": party.country_code,
        "party_id": party.party_id,
        "uid": session.id_tag or "UNKNOWN",
        "type": token_type if session.id_tag else "OTHER",
        "contract_id": session.id_tag or "UNKNOWN",
    }


_MONEY_FIELDS = (
    "total_cost",
    "total_fixed_cost",
    "total_energy_cost",
    "total_time_cost",
    "total_parking_cost",
    "price_limit_adjustment",
)


def _negated(value: Any) -> Decimal:
    return Decimal(0) - Decimal(value)  # 0.00 stays 0.00, not -0.00


def credit_cdr(original: dict[str, Any], *, last_updated: datetime) -> dict[str, Any]:
    """The credit CDR that cancels ``original``: the same data, every amount negated,
    ``credit: true`` and ``credit_reference_id`` = the original's id, id + ``-C``."""
    if original.get("credit"):
        raise ValueError("a credit CDR is not credited again; issue a new CDR instead")
    credit = dict(original)
    credit["id"] = f"{original['id']}-C"
    if len(credit["id"]) > MAX_CDR_ID:
        raise ValueError(f"credit CDR id longer than {MAX_CDR_ID} characters")
    credit["credit"] = True
    credit["credit_reference_id"] = original["id"]
    credit["last_updated"] = ocpi_datetime(last_updated)
    for name in _MONEY_FIELDS:
        if name in credit and credit[name] is not None:
            credit[name] = {k: _negated(v) for k, v in credit[name].items()}
    credit["cost_breakdown"] = [
        {**line, "cost": {k: _negated(v) for k, v in line["cost"].items()}}
        for line in original.get("cost_breakdown", [])
    ]
    return credit
