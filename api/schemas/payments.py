"""Session payments: ``PaymentPublic`` (where a session's payment stands, with its log),
``PaymentAuthorizeCreate``, ``PaymentCaptureCreate``, ``PaymentRefundCreate``,
``PaymentCancelCreate`` (the bodies of the operations)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Minor = Annotated[int, Field(ge=0, le=10**10, description="integer minor units (cents)")]
# Text a person or a provider writes: no C0/C1 controls (NUL cannot be stored).
_TEXT = r"^[^\u0000-\u001f\u007f-\u009f]*$"
Reason = Annotated[str, Field(min_length=1, max_length=500, pattern=_TEXT)]
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=_TEXT)]


class PaymentEventPublic(BaseModel):
    at: datetime
    kind: str = Field(description="authorized, captured, capture_failed, refunded, ...")
    actor: str = Field(description="API key name, provider or system")
    amount_minor: int | None
    detail: str | None


class PaymentPublic(BaseModel):
    session_id: str
    provider: str
    customer: str
    currency: str
    reference: str | None = Field(description="The provider's payment id")
    status: str = Field(
        description="authorizing, authorized, requires_action, captured, canceled, failed"
    )
    authorized_minor: int
    captured_minor: int
    refunded_minor: int
    final_cost_minor: int | None
    shortfall_minor: int = Field(description="Final cost above the authorisation, not captured")
    attempts: int = Field(description="Failed capture tries")
    next_attempt_at: datetime | None
    last_error: str | None
    flagged: str | None = Field(description="Why billing must look at it (None: nothing)")
    events: list[PaymentEventPublic]


class PaymentAuthorizeCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "provider": "postpaid",
                    "customer": "example-customer",
                    "currency": "EUR",
                    "amount_minor": 5000,
                }
            ]
        }
    )

    provider: Literal["stripe", "wallet", "postpaid"]
    customer: Identifier
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    amount_minor: Annotated[int, Field(gt=0, le=10**10)]
    payment_method: Identifier | None = None


class PaymentCaptureCreate(BaseModel):
    amount_minor: Minor = Field(description="The session's final cost")


class PaymentRefundCreate(BaseModel):
    amount_minor: Annotated[int, Field(gt=0, le=10**10)]
    reason: Reason


class PaymentCancelCreate(BaseModel):
    reason: Reason
