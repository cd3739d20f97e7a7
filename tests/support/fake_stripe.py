"""A local server speaking the part of the Stripe API the Stripe provider calls (stdlib HTTP
server on 127.0.0.1:0, its own thread), so the official SDK is tested over real HTTP.

Endpoints: ``POST /v1/payment_intents`` (create and confirm, manual capture),
``GET /v1/payment_intents/{id}`` (``expand[]=latest_charge`` / ``latest_charge.refunds``),
``POST /v1/payment_intents/{id}/capture``, ``POST /v1/payment_intents/{id}/cancel``,
``POST /v1/refunds``. Like Stripe: form-encoded bodies (``metadata[k]=v``,
``expand[0]=...``), ``Authorization: Bearer <key>`` checked (401 otherwise), errors as
``{"error": {"type", "code", "message", ...}}`` with a ``Request-Id`` header, and
idempotency: a POST with a seen ``Idempotency-Key`` and the same path and parameters
gets the saved answer again (``Idempotent-Replayed: true``), with other parameters a 400
``idempotency_error``. Stripe's test payment methods decide the outcome:
``pm_card_visa`` (and any other) is authorised, ``pm_card_chargeDeclined`` declined
(402 ``card_declined``), ``pm_card_authenticationRequired`` needs 3-D Secure.

``fail_next(fault)`` scripts the next matching request: ``"500"`` / ``"429"`` answered
before anything runs (not saved, as Stripe does for requests that never started),
``"500_saved"`` an error the endpoint itself gave (saved and replayed under its key),
``"card_declined"``, ``"drop_before"`` (the connection closes before the request runs),
``"drop_after"`` (it runs and its answer is saved, then the connection closes unanswered).
``requests`` records every request: method, path, parameters, headers. ``events``
records the events Stripe would send the webhook for what happened (an authorisation:
``payment_intent.amount_capturable_updated`` and ``charge.succeeded``; a decline:
``payment_intent.payment_failed``; a capture: ``charge.captured`` and
``payment_intent.succeeded``; ``payment_intent.canceled``; ``charge.refunded``), each
with the object as it was then; :meth:`FakeStripe.signed` gives an event's body and
``Stripe-Signature`` header under a webhook secret, as Stripe signs a delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

FAULTS = ("500", "500_saved", "429", "card_declined", "drop_before", "drop_after")
DECLINED_METHODS = {"pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"}
ACTION_METHODS = {"pm_card_authenticationRequired", "pm_card_threeDSecure2Required"}


@dataclass(frozen=True)
class StripeRequest:
    method: str
    path: str
    params: dict[str, str]  # the form fields as sent (``metadata[session_id]``...)
    headers: dict[str, str]  # lower-cased names

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any]


class _Drop(Exception):
    """Close the connection without answering."""


@dataclass
class _Fault:
    kind: str
    method: str | None
    path_part: str | None


def stripe_error(status: int, type_: str, message: str, **extra: Any) -> _Answer:
    return _Answer(status, {"error": {"type": type_, "message": message, **extra}})


def nested(params: dict[str, str], name: str) -> dict[str, str]:
    """``name[key]=value`` fields as ``{key: value}`` (Stripe's form encoding of a map)."""
    prefix = f"{name}["
    return {k[len(prefix) : -1]: v for k, v in params.items() if k.startswith(prefix)}


@dataclass
class FakeStripe:
    """``api_base`` for the SDK; ``fail_next`` to script faults; ``requests`` what came."""

    api_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_hex(12))
    decline_message: str = "Your card was declined."
    requests: list[StripeRequest] = field(default_factory=list)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    _saved: dict[str, tuple[str, dict[str, str], _Answer]] = field(default_factory=dict)
    _faults: list[_Fault] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ control

    def start(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake._handle(self)

            def do_POST(self) -> None:
                fake._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll: stop() waits for the loop to notice.
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def api_base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, kind: str, *, method: str | None = None, path: str | None = None) -> None:
        """The next request (of ``method``, whose path contains ``path``) meets ``kind``."""
        assert kind in FAULTS, kind
        with self._lock:
            self._faults.append(_Fault(kind, method, path))

    def signed(
        self, event: dict[str, Any], secret: str, timestamp: int | None = None
    ) -> tuple[bytes, str]:
        """The event's body and its ``Stripe-Signature`` header (Stripe's v1 scheme: an
        HMAC-SHA256 of ``"{t}.{body}"`` with the endpoint's secret)."""
        body = json.dumps(event).encode()
        t = int(time.time()) if timestamp is None else timestamp
        mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256)
        return body, f"t={t},v1={mac.hexdigest()}"

    def _event(self, kind: str, data_object: dict[str, Any]) -> None:
        self.events.append(
            {
                "id": "evt_" + secrets.token_hex(8),
                "object": "event",
                "type": kind,
                "created": int(time.time()),
                "livemode": False,
                "data": {"object": json.loads(json.dumps(data_object))},  # as it was then
            }
        )

    def calls(self, method: str, path_part: str) -> list[StripeRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and path_part in r.path]

    # ----------------------------------------------------------------- handling

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else url.query
        request = StripeRequest(
            handler.command,
            url.path,
            dict(parse_qsl(body, keep_blank_values=True)),
            {k.lower(): v for k, v in handler.headers.items()},
        )
        with self._lock:
            self.requests.append(request)
        try:
            answer, replayed = self._answer(request)
        except _Drop:
            handler.close_connection = True
            handler.connection.shutdown(2)  # SHUT_RDWR: the client sees the connection drop
            return
        payload = json.dumps(answer.body).encode()
        handler.send_response(answer.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Request-Id", "req_" + secrets.token_hex(7))
        if replayed:
            handler.send_header("Idempotent-Replayed", "true")
        handler.end_headers()
        handler.wfile.write(payload)

    def _take_fault(self, request: StripeRequest) -> str | None:
        with self._lock:
            for fault in self._faults:
                if (fault.method in (None, request.method)) and (
                    fault.path_part is None or fault.path_part in request.path
                ):
                    self._faults.remove(fault)
                    return fault.kind
        return None

    def _answer(self, request: StripeRequest) -> tuple[_Answer, bool]:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            # Echoes the key in full (Stripe masks most of it): the provider must not repeat it.
            message = f"Invalid API Key provided: {given}"
            return stripe_error(401, "invalid_request_error", message), False
        fault = self._take_fault(request)
        if fault == "drop_before":
            raise _Drop
        if fault in ("500", "429"):  # never reached the endpoint: nothing saved
            status = int(fault)
            kind = "api_error" if status == 500 else "invalid_request_error"
            code = {"code": "rate_limit"} if status == 429 else {}
            return stripe_error(status, kind, f"injected {fault}", **code), False
        key = request.idempotency_key if request.method == "POST" else None
        with self._lock:
            if key is not None and key in self._saved:
                path, params, saved = self._saved[key]
                if (path, params) != (request.path, request.params):
                    return stripe_error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                    ), False
                if fault == "drop_after":
                    raise _Drop
                return saved, True
            if fault == "500_saved":
                answer = stripe_error(500, "api_error", "injected 500 (saved)")
            else:
                answer = self._route(request, declined=fault == "card_declined")
            if key is not None:
                self._saved[key] = (request.path, request.params, answer)
        if fault == "drop_after":
            raise _Drop
        return answer, False

    def _route(self, request: StripeRequest, *, declined: bool) -> _Answer:
        parts = request.path.strip("/").split("/")
        if request.method == "POST" and parts == ["v1", "payment_intents"]:
            return self._create(request.params, declined=declined)
        if request.method == "POST" and parts == ["v1", "refunds"]:
            return self._create_refund(request.params)
        if len(parts) >= 3 and parts[:2] == ["v1", "payment_intents"]:
            intent = self.intents.get(parts[2])
            if intent is None:
                return stripe_error(
                    404,
                    "invalid_request_error",
                    f"No such payment_intent: '{parts[2]}'",
                    code="resource_missing",
                )
            action = (request.method, parts[3] if len(parts) == 4 else None)
            if action == ("GET", None):
                return _Answer(200, self._view(intent, request.params))
            if action == ("POST", "capture"):
                return self._capture(intent, request.params)
            if action == ("POST", "cancel"):
                return self._cancel(intent, request.params)
        return stripe_error(404, "invalid_request_error", f"Unrecognized URL {request.path}")

    # ------------------------------------------------------------- the API

    def _create(self, params: dict[str, str], *, declined: bool) -> _Answer:
        amount = params.get("amount", "")
        if not amount.isdigit() or int(amount) < 1:
            return stripe_error(400, "invalid_request_error", "Invalid integer", param="amount")
        if params.get("capture_method") != "manual" or params.get("confirm") != "true":
            return stripe_error(400, "invalid_request_error", "fake: manual capture, confirm only")
        method = params.get("payment_method", "")
        intent_id = "pi_" + secrets.token_hex(8)
        charge_id = "ch_" + secrets.token_hex(8)
        status = "requires_capture"
        if declined or method in DECLINED_METHODS:
            status = "requires_payment_method"
        elif method in ACTION_METHODS:
            status = "requires_action"
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": int(amount),
            "amount_capturable": int(amount) if status == "requires_capture" else 0,
            "amount_received": 0,
            "capture_method": "manual",
            "currency": params.get("currency"),
            "customer": params.get("customer"),
            "metadata": nested(params, "metadata"),
            "payment_method": method,
            "status": status,
            "created": int(time.time()),
            "latest_charge": charge_id if status == "requires_capture" else None,
        }
        self.intents[intent_id] = intent
        if status == "requires_capture":
            self.charges[charge_id] = {
                "id": charge_id,
                "object": "charge",
                "amount": int(amount),
                "amount_captured": 0,
                "amount_refunded": 0,
                "captured": False,
                "payment_intent": intent_id,
                "refunds": [],
            }
        if status == "requires_payment_method":
            self._event("payment_intent.payment_failed", self._view(intent, {}))
            return stripe_error(
                402,
                "card_error",
                self.decline_message,
                code="card_declined",
                decline_code="generic_decline",
                payment_intent=self._view(intent, {}),
            )
        if status == "requires_capture":
            self._event("payment_intent.amount_capturable_updated", self._view(intent, {}))
            self._event("charge.succeeded", self._charge_view(charge_id))
        return _Answer(200, self._view(intent, params))

    def _charge_view(self, charge_id: str) -> dict[str, Any]:
        charge = dict(self.charges[charge_id])
        charge["refunds"] = {"object": "list", "data": charge["refunds"][:10], "has_more": False}
        return charge

    def _view(self, intent: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        expand = {v for k, v in params.items() if k.startswith("expand[")}
        view = dict(intent)
        charge = self.charges.get(intent["latest_charge"] or "")
        if charge is not None and expand & {"latest_charge", "latest_charge.refunds"}:
            shown = dict(charge)
            refunds = charge["refunds"]
            if "latest_charge.refunds" in expand:
                shown["refunds"] = {"object": "list", "data": refunds[:10], "has_more": False}
            else:
                del shown["refunds"]
            view["latest_charge"] = shown
        return view

    def _capture(self, intent: dict[str, Any], params: dict[str, str]) -> _Answer:
        if intent["status"] != "requires_capture":
            return stripe_error(
                400,
                "invalid_request_error",
                f"This PaymentIntent could not be captured because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        amount = int(params.get("amount_to_capture", intent["amount_capturable"]))
        if amount > intent["amount_capturable"]:
            return stripe_error(
                400, "invalid_request_error", "amount_to_capture too large", code="amount_too_large"
            )
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        self.charges[intent["latest_charge"]].update(amount_captured=amount, captured=True)
        self._event("charge.captured", self._charge_view(intent["latest_charge"]))
        self._event("payment_intent.succeeded", self._view(intent, {}))
        return _Answer(200, self._view(intent, params))

    def _cancel(self, intent: dict[str, Any], params: dict[str, str]) -> _Answer:
        if intent["status"] in ("succeeded", "canceled"):
            return stripe_error(
                400,
                "invalid_request_error",
                f"You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        intent.update(status="canceled", amount_capturable=0)
        self._event("payment_intent.canceled", self._view(intent, {}))
        return _Answer(200, self._view(intent, params))

    def _create_refund(self, params: dict[str, str]) -> _Answer:
        intent = self.intents.get(params.get("payment_intent", ""))
        if intent is None or intent["status"] != "succeeded":
            return stripe_error(
                400, "invalid_request_error", "This PaymentIntent has no captured charge."
            )
        charge = self.charges[intent["latest_charge"]]
        remaining = charge["amount_captured"] - charge["amount_refunded"]
        amount = int(params.get("amount", remaining))
        if amount < 1 or amount > remaining:
            return stripe_error(
                400,
                "invalid_request_error",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining})",
                param="amount",
            )
        refund = {
            "id": "re_" + secrets.token_hex(8),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "payment_intent": intent["id"],
            "currency": intent["currency"],
            "metadata": nested(params, "metadata"),
            "reason": params.get("reason"),
            "status": "succeeded",
        }
        charge["amount_refunded"] += amount
        charge["refunds"].insert(0, refund)  # newest first, like Stripe's lists
        self._event("charge.refunded", self._charge_view(charge["id"]))
        return _Answer(200, refund)


def fake_stripe() -> Iterator[FakeStripe]:
    """A started fake, stopped afterwards (for a fixture)."""
    server = FakeStripe().start()
    try:
        yield server
    finally:
        server.stop()
