"""Issued CDRs, held sessions and statements: ``CdrBase`` (what a CDR says: where, who,
when, how much), ``CdrPublic`` (with its id and issue time), ``CdrsPage``;
``ReviewBase`` (the held session), ``ReviewPublic`` (with the decision), ``ReviewsPage``
and the bodies of the three decisions; ``StatementPublic`` (a customer's month).

Amounts and kWh are decimal strings written exactly (``"2.22"``, never a float)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.params import CDR_CURSOR_PATTERN, REVIEW_CURSOR_PATTERN
from api.schemas.alerts import MAX_NOTE_LENGTH, NOTE_PATTERN, encodable_text
from bus.sessions import Quality
from store.billing_reviews import ReviewStatus
from store.cdrs import CdrRecord, CdrStatement

DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
# A reason: text a person types with at least one character that is not white space.
REASON_PATTERN = (
    r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*"
    r"[^\s\u0000-\u001f\u007f-\u009f]"
    r"[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"
)
MAX_ENERGY_WH = 10_000_000_000  # 10 GWh: far above any session

Amount = Annotated[str, Field(pattern=DECIMAL_PATTERN, examples=["12.34"])]

EXAMPLE_CDR_ID = "0B9D6F3E5C1A4E8F9A2B7D4C3E2F1A0B"


class CdrBase(BaseModel):
    session_id: str
    revision: int = Field(description="1 for a session's first CDR, n for its n-th correction")
    credit: bool = Field(
        description="A credit CDR cancelling credit_reference_id (amounts negative)"
    )
    credit_reference_id: str | None
    charge_point_id: str
    connector_id: int
    site_id: str | None
    id_tag: str | None
    customer: str | None
    currency: str = Field(description="ISO 4217")
    total_excl_vat: Amount = Field(description="total_cost.excl_vat, exact")
    total_incl_vat: Amount = Field(description="total_cost.incl_vat, exact")
    energy_kwh: Amount = Field(description="total_energy (kWh), exact")
    start_date_time: datetime
    end_date_time: datetime


class CdrPublic(CdrBase):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cdr_id": EXAMPLE_CDR_ID,
                    "session_id": "0b9d6f3e-5c1a-4e8f-9a2b-7d4c3e2f1a0b",
                    "revision": 1,
                    "credit": False,
                    "credit_reference_id": None,
                    "charge_point_id": "CP-1",
                    "connector_id": 1,
                    "site_id": "DEPOT-1",
                    "id_tag": "TAG-1",
                    "customer": "ACME",
                    "currency": "EUR",
                    "total_excl_vat": "2.25",
                    "total_incl_vat": "2.72",
                    "energy_kwh": "7.500",
                    "start_date_time": "2025-06-01T08:00:00Z",
                    "end_date_time": "2025-06-01T08:30:00Z",
                    "issued_at": "2025-06-01T08:30:02Z",
                }
            ]
        }
    )

    cdr_id: str = Field(description="The OCPI CDR id")
    issued_at: datetime = Field(description="When it was stored (server clock)")

    @classmethod
    def of(cls, record: CdrRecord) -> CdrPublic:
        return cls(
            cdr_id=record.cdr_id,
            issued_at=record.issued_at,
            session_id=record.session_id,
            revision=record.revision,
            credit=record.credit,
            credit_reference_id=record.credit_reference_id,
            charge_point_id=record.charge_point_id,
            connector_id=record.connector_id,
            site_id=record.site_id,
            id_tag=record.id_tag,
            customer=record.customer,
            currency=record.currency,
            total_excl_vat=str(record.total_excl_vat),
            total_incl_vat=str(record.total_incl_vat),
            energy_kwh=str(record.energy_kwh),
            start_date_time=record.start_date_time,
            end_date_time=record.end_date_time,
        )


class CdrsPage(BaseModel):
    items: list[CdrPublic]
    next_cursor: str | None = Field(
        pattern=CDR_CURSOR_PATTERN,
        description="Pass as `cursor` to get the next page; null on the last page",
    )


class ReviewBase(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    charge_point_id: str
    connector_id: int
    id_tag: str | None
    started_at: datetime
    stopped_at: datetime | None
    energy_wh: int | None = Field(description="The session's figure (Wh); null when missing")
    quality: Quality
    reasons: list[str] = Field(description="Why it was held")


class ReviewPublic(ReviewBase):
    session_id: str
    status: ReviewStatus = Field(description="held -> released | corrected | written_off (final)")
    decided_by: str | None = Field(description="The API key name that decided it")
    decided_at: datetime | None
    note: str | None = Field(description="The reason given with the decision")
    corrected_energy_wh: int | None = Field(description="The energy to bill (corrected only)")
    created_at: datetime = Field(description="When it was held (server clock)")
    settled_at: datetime | None = Field(
        None,
        description="When billing carried the decision out (released, corrected: the CDR "
        "issued and its payment captured; written off: the payment hold released); null "
        "until then",
    )
    cdr_id: str | None = Field(
        None, description="The CDR the release or correction issued (GET /v1/cdrs/{cdr_id})"
    )


class ReviewsPage(BaseModel):
    items: list[ReviewPublic]
    next_cursor: str | None = Field(
        pattern=REVIEW_CURSOR_PATTERN,
        description="Pass as `cursor` to get the next page; null on the last page",
    )


Note = Annotated[
    str | None,
    Field(
        max_length=MAX_NOTE_LENGTH,
        pattern=NOTE_PATTERN,
        description=f"For the audit trail (at most {MAX_NOTE_LENGTH} characters; tabs and "
        "newlines allowed, other control characters not)",
    ),
    AfterValidator(encodable_text),
]
Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_NOTE_LENGTH,
        pattern=REASON_PATTERN,
        description=f"Why (required; at most {MAX_NOTE_LENGTH} characters, not only white "
        "space; tabs and newlines allowed, other control characters not)",
    ),
    AfterValidator(encodable_text),
]


class ReleaseCreate(BaseModel):
    """Bill the session as measured."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"note": "Registers checked on site"}]}
    )

    note: Note = None


class CorrectionCreate(BaseModel):
    """Bill the session with the energy the clerk established."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"corrected_energy_wh": 7400, "note": "Meter photo from the driver"}]
        },
    )

    corrected_energy_wh: int = Field(ge=0, le=MAX_ENERGY_WH, description="The energy to bill (Wh)")
    note: Reason


class WriteOffCreate(BaseModel):
    """Never bill the session."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"note": "No reliable figure; goodwill"}]},
    )

    note: Reason


class StatementLinePublic(BaseModel):
    cdr_id: str
    credit: bool
    start_date_time: datetime
    charge_point_id: str
    connector_id: int
    energy_kwh: Amount
    currency: str
    total_excl_vat: Amount
    total_incl_vat: Amount


class StatementTotalPublic(BaseModel):
    currency: str
    total_excl_vat: Amount
    total_incl_vat: Amount


class StatementPublic(BaseModel):
    customer: str
    month: str = Field(description="YYYY-MM, local to time_zone")
    time_zone: str
    lines: list[StatementLinePublic] = Field(
        description="Every CDR that started in the month, credits included, oldest first"
    )
    totals: list[StatementTotalPublic] = Field(
        description="Per currency, credits subtracted; empty without CDRs"
    )

    @classmethod
    def of(cls, statement: CdrStatement) -> StatementPublic:
        return cls(
            customer=statement.customer,
            month=statement.month,
            time_zone=statement.time_zone,
            lines=[
                StatementLinePublic(
                    cdr_id=line.cdr_id,
                    credit=line.credit,
                    start_date_time=line.start_date_time,
                    charge_point_id=line.charge_point_id,
                    connector_id=line.connector_id,
                    energy_kwh=str(line.energy_kwh),
                    currency=line.currency,
                    total_excl_vat=str(line.total_excl_vat),
                    total_incl_vat=str(line.total_incl_vat),
                )
                for line in statement.lines
            ],
            totals=[
                StatementTotalPublic(
                    currency=total.currency,
                    total_excl_vat=str(total.total_excl_vat),
                    total_incl_vat=str(total.total_incl_vat),
                )
                for total in statement.totals
            ],
        )
