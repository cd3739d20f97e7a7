"""A session's payment: where it stands, authorise, capture, refund, cancel (roles
billing and admin; reading also operator), and Stripe's webhook. Every operation is
idempotent per session (``billing.payments.service``); a refund needs an
``Idempotency-Key`` header so that a retried request refunds once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Path, Request, status

from api.deps import BillingDesk, SessionReader
from api.params import EXAMPLE_SESSION_ID
from api.problems import AUTHENTICATED, CONFLICT, NOT_FOUND, UNREADABLE_BODY, ProblemError
from api.schemas.payments import (
    PaymentAuthorizeCreate,
    PaymentCancelCreate,
    PaymentCaptureCreate,
    PaymentEventPublic,
    PaymentPublic,
    PaymentRefundCreate,
)
from billing.payments.provider import (
    InvalidPaymentRequest,
    PaymentDeclined,
    PaymentError,
    PaymentUnavailable,
)
from billing.payments.service import PaymentService, PaymentStateError
from billing.payments.stripe import WebhookSignatureError

router = APIRouter(tags=["payments"])
T = TypeVar("T")

SessionId = Annotated[
    uuid.UUID,
    Path(description="The session's id (a UUID)", examples=[str(EXAMPLE_SESSION_ID)]),
]
PAYMENT = "/v1/sessions/{session_id}/payment"
PAYMENT_ERRORS = {
    **AUTHENTICATED,
    **NOT_FOUND,
    **CONFLICT,
    **UNREADABLE_BODY,
    402: {"description": "Declined by the card issuer or the wallet"},
    502: {"description": "The payment provider failed"},
}


def _service(request: Request) -> PaymentService:
    service: PaymentService | None = request.app.state.payments
    if service is None:
        raise ProblemError(status.HTTP_503_SERVICE_UNAVAILABLE, "payments are not set up")
    return service


async def _run(call: Callable[[], T]) -> T:
    """A payment operation (synchronous: providers and ledger) off the event loop, its
    errors as problem details."""
    try:
        return await asyncio.to_thread(call)
    except PaymentStateError as exc:
        raise ProblemError(status.HTTP_409_CONFLICT, str(exc)) from None
    except PaymentDeclined as exc:
        raise ProblemError(status.HTTP_402_PAYMENT_REQUIRED, str(exc)) from None
    except PaymentUnavailable as exc:
        raise ProblemError(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers={"Retry-After": "30"}
        ) from None
    except InvalidPaymentRequest as exc:
        raise ProblemError(status.HTTP_409_CONFLICT, str(exc)) from None
    except PaymentError as exc:
        raise ProblemError(status.HTTP_502_BAD_GATEWAY, str(exc)) from None


def _public(service: PaymentService, session_id: str) -> PaymentPublic:
    found = service.history(session_id)
    if found is None:
        raise PaymentStateError(f"session {session_id} has no payment")
    row, events = found
    return PaymentPublic(
        **{k: v for k, v in row.__dict__.items() if k not in ("created_at", "updated_at")},
        events=[
            PaymentEventPublic(
                at=e.at, kind=e.kind, actor=e.actor, amount_minor=e.amount_minor, detail=e.detail
            )
            for e in events
        ],
    )


async def _answer(service: PaymentService, session_id: str) -> PaymentPublic:
    try:
        return await asyncio.to_thread(_public, service, session_id)
    except PaymentStateError as exc:
        raise ProblemError(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.get(
    PAYMENT, response_model=PaymentPublic, summary="A session's payment", responses=PAYMENT_ERRORS
)
async def get_payment(
    session_id: SessionId, _principal: SessionReader, request: Request
) -> PaymentPublic:
    return await _answer(_service(request), str(session_id))


@router.post(
    f"{PAYMENT}/authorize",
    response_model=PaymentPublic,
    summary="Pre-authorise the session's estimate (idempotent per session; a decline "
    "answers status failed with the reason in last_error)",
    responses=PAYMENT_ERRORS,
)
async def authorize_payment(
    session_id: SessionId, body: PaymentAuthorizeCreate, _principal: BillingDesk, request: Request
) -> PaymentPublic:
    service = _service(request)
    await _run(
        lambda: service.preauthorize(
            session_id=str(session_id),
            provider=body.provider,
            customer=body.customer,
            currency=body.currency,
            amount_minor=body.amount_minor,
            payment_method=body.payment_method,
        )
    )
    # A decline is an outcome, not an error of the request: status "failed" with the
    # reason in last_error.
    return await _answer(service, str(session_id))


@router.post(
    f"{PAYMENT}/capture",
    response_model=PaymentPublic,
    summary="Capture the final cost (at most once; above the authorisation: flagged)",
    responses=PAYMENT_ERRORS,
)
async def capture_payment(
    session_id: SessionId, body: PaymentCaptureCreate, _principal: BillingDesk, request: Request
) -> PaymentPublic:
    service = _service(request)
    await _run(lambda: service.capture(str(session_id), body.amount_minor))
    return await _answer(service, str(session_id))


@router.post(
    f"{PAYMENT}/refund",
    response_model=PaymentPublic,
    summary="Refund part or all of the capture (never above it)",
    responses=PAYMENT_ERRORS,
)
async def refund_payment(
    session_id: SessionId,
    body: PaymentRefundCreate,
    principal: BillingDesk,
    request: Request,
    idempotency_key: Annotated[
        str,
        Header(
            min_length=1,
            max_length=200,
            pattern=r"^[A-Za-z0-9._:-]+$",
            description="Identifies this refund: a retried request with the same key refunds once",
        ),
    ],
) -> PaymentPublic:
    service = _service(request)
    await _run(
        lambda: service.refund(
            str(session_id),
            body.amount_minor,
            actor=principal.name,
            reason=body.reason,
            key=idempotency_key,
        )
    )
    return await _answer(service, str(session_id))


@router.post(
    f"{PAYMENT}/cancel",
    response_model=PaymentPublic,
    summary="Release an uncaptured hold",
    responses=PAYMENT_ERRORS,
)
async def cancel_payment(
    session_id: SessionId, body: PaymentCancelCreate, principal: BillingDesk, request: Request
) -> PaymentPublic:
    service = _service(request)
    await _run(lambda: service.cancel(str(session_id), actor=principal.name, reason=body.reason))
    return await _answer(service, str(session_id))


_PAYMENT_INTENT_EVENTS = ("payment_intent.", "charge.")


@router.post(
    "/webhooks/stripe",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Stripe's webhook (authenticated by its Stripe-Signature, not an API key)",
    responses={
        400: {"description": "Bad or missing signature, or not a Stripe event"},
        404: {"description": "Stripe is not configured"},
    },
)
async def stripe_webhook(
    request: Request,
    stripe_signature: Annotated[str | None, Header(max_length=2000)] = None,
) -> None:
    verify = request.app.state.stripe_webhook
    if verify is None:
        raise ProblemError(status.HTTP_404_NOT_FOUND, "Stripe is not configured")
    payload = await request.body()
    try:
        event = verify(payload, stripe_signature)
    except (WebhookSignatureError, InvalidPaymentRequest) as exc:
        raise ProblemError(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    if not event.type.startswith(_PAYMENT_INTENT_EVENTS):
        return None
    obj: dict[str, Any] = dict(event.object)
    reference = (
        obj.get("id") if obj.get("object") == "payment_intent" else obj.get("payment_intent")
    )
    if isinstance(reference, str):
        service = _service(request)
        await _run(lambda: service.apply_webhook("stripe", event.id, event.type, reference))
    return None
