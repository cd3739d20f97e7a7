"""How an id tag's sessions are paid: ``PaymentMethodBase`` (the customer billed),
``PaymentMethodCreate`` (the body of PUT: a Stripe method with its ``pm_...`` id, or a
wallet / postpaid account without one; the JSON Schema says which, so a schema-valid
body is a valid one) and ``PaymentMethodPublic``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.params import ID_PATTERN

EXAMPLE_ID_TAG = "TAG-1"
# Stripe's payment method ids: "pm_" then letters, digits and underscores
# (pm_card_visa is one of Stripe's test methods).
STRIPE_METHOD_PATTERN = r"^pm_[A-Za-z0-9_]{1,200}$"

Customer = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=ID_PATTERN,
        description="Who is billed: the wallet or postpaid account holder, or the Stripe "
        "customer (cus_...); no control characters",
        examples=["ACME"],
    ),
]


class PaymentMethodBase(BaseModel):
    customer: Customer


class StripeMethodCreate(PaymentMethodBase):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"provider": "stripe", "customer": "cus_ACME", "payment_method": "pm_card_visa"}
            ]
        },
    )

    provider: Literal["stripe"]
    payment_method: Annotated[str, Field(pattern=STRIPE_METHOD_PATTERN)] = Field(
        description="The Stripe PaymentMethod the pre-authorisation is confirmed with"
    )


class AccountMethodCreate(PaymentMethodBase):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"provider": "wallet", "customer": "ACME"}]},
    )

    provider: Literal["wallet", "postpaid"] = Field(
        description="wallet: the customer's prepaid balance; postpaid: their monthly statement"
    )


PaymentMethodCreate = Annotated[
    StripeMethodCreate | AccountMethodCreate, Field(discriminator="provider")
]


class PaymentMethodPublic(PaymentMethodBase):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id_tag": EXAMPLE_ID_TAG,
                    "provider": "wallet",
                    "customer": "ACME",
                    "payment_method": None,
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                }
            ]
        }
    )

    id_tag: str
    provider: Literal["wallet", "postpaid", "stripe"]
    customer: str
    payment_method: str | None = Field(description="Stripe's pm_... id; null otherwise")
    created_at: datetime
    updated_at: datetime
