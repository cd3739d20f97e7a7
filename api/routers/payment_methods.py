"""How an id tag's sessions are paid (roles billing and admin): set, read and remove the
tag's payment method. The billing worker pre-authorises an active session whose id tag
has one (docs/payments.md) and bills its CDR to the method's customer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response, status

from api.deps import BillingDesk, DbConn
from api.params import MAX_ID_LENGTH, PATH_ID_PATTERN
from api.problems import AUTHENTICATED, NOT_FOUND, UNREADABLE_BODY, ProblemError
from api.schemas.payment_methods import EXAMPLE_ID_TAG, PaymentMethodCreate, PaymentMethodPublic
from store import payment_methods as method_store

router = APIRouter(tags=["payments"], responses=AUTHENTICATED)

METHOD = "/v1/id-tags/{id_tag}/payment-method"
IdTagPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=PATH_ID_PATTERN,
        description="The id tag (OCPP idTag / idToken; no control characters, no `/`)",
        examples=[EXAMPLE_ID_TAG],
    ),
]


def _public(method: method_store.PaymentMethod) -> PaymentMethodPublic:
    return PaymentMethodPublic.model_validate(
        {name: getattr(method, name) for name in PaymentMethodPublic.model_fields}
    )


@router.get(
    METHOD,
    response_model=PaymentMethodPublic,
    summary="The id tag's payment method",
    responses=NOT_FOUND,
)
async def get_payment_method(
    id_tag: IdTagPath, _principal: BillingDesk, conn: DbConn
) -> PaymentMethodPublic:
    method = await method_store.get_method(conn, id_tag)
    if method is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, f"id tag {id_tag!r} has no payment method")
    return _public(method)


@router.put(
    METHOD,
    response_model=PaymentMethodPublic,
    summary="Set (or replace) the id tag's payment method",
    description="Sessions started with the id tag from now on are pre-authorised with it "
    "and billed to its customer; a session pre-authorised before keeps its payment. "
    "`stripe` needs the Stripe PaymentMethod (`pm_...`); `wallet` and `postpaid` take none.",
    responses=UNREADABLE_BODY,
)
async def put_payment_method(
    id_tag: IdTagPath,
    body: Annotated[PaymentMethodCreate, Body()],
    _principal: BillingDesk,
    conn: DbConn,
) -> PaymentMethodPublic:
    payment_method = getattr(body, "payment_method", None)
    method, _created = await method_store.set_method(
        conn, id_tag, body.provider, body.customer, payment_method
    )
    return _public(method)


@router.delete(
    METHOD,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove the id tag's payment method (idempotent: 204 whether it had one or not)",
    description="Sessions started afterwards are not pre-authorised; payments already "
    "made are not touched.",
)
async def delete_payment_method(
    id_tag: IdTagPath, _principal: BillingDesk, conn: DbConn
) -> Response:
    await method_store.delete_method(conn, id_tag)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
