"""What the webhooks worker decides without I/O: which endpoint wants which alert, what
one request is (body, headers, delivery id) and when a failed one is tried again.

>>> from datetime import UTC, datetime
>>> from bus.alerts import AlertStatus, Evidence, FaultAlert
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> alert = FaultAlert(alert_id="a1", station_id="CP1", connector_id=1,
...     alert_kind=AlertKind.GROUND_FAULT, severity=Severity.HIGH, status=AlertStatus.OPEN,
...     first_seen=t, last_seen=t, detector="rule:error_code",
...     evidence=Evidence(at=t, summary="GroundFailure"), recommended_action="Test the RCD.")
>>> ops = Endpoint(name="ops", url="https://ops.example/hook", secret="k" * 24)
>>> urgent = Endpoint(name="pager", url="https://pager.example/hook", secret="k" * 24,
...     min_severity=Severity.CRITICAL)
>>> [e.name for e in endpoints_for(alert, [ops, urgent])]
['ops']
>>> ops
Endpoint(name='ops', url='https://ops.example/hook', kinds=None, min_severity=None)
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from bus.alerts import KIND, SCHEMA_VERSION, AlertKind, FaultAlert, Severity
from bus.codec import decode_versioned
from notify.signing import HEADER, sign
from runtime.retry import Backoff

DELIVERY_HEADER = "Chargeflow-Delivery"
EVENT_HEADER = "Chargeflow-Event"
ATTEMPT_HEADER = "Chargeflow-Attempt"
USER_AGENT = "chargeflow-webhooks/1"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Endpoint:
    """One receiver: where, its signing secret (never in ``repr``) and what it wants:
    ``kinds`` (None = every kind) and ``min_severity`` (None = every severity)."""

    name: str
    url: str
    secret: str = field(repr=False)
    kinds: frozenset[AlertKind] | None = None
    min_severity: Severity | None = None

    def wants(self, alert: FaultAlert) -> bool:
        """Whether this alert version passes the endpoint's filters."""
        if self.kinds is not None and alert.alert_kind not in self.kinds:
            return False
        return self.min_severity is None or alert.severity.rank >= self.min_severity.rank


def endpoints_for(alert: FaultAlert, endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """The endpoints that get this alert version, in configuration order."""
    return [e for e in endpoints if e.wants(alert)]


def delivery_id(endpoint: str, alert_id: str, version_key: str) -> str:
    """The idempotency key of one (endpoint, alert version): the same on every retry and
    after any restart, so a receiver that keeps the ids it processed handles each once.

    >>> delivery_id("ops", "a1", "open|high|2026-07-01T12:00:00Z")
    'whd_adfb630e9fe183c67018c831aefc0e29'
    """
    text = f"{endpoint}\x1f{alert_id}\x1f{version_key}"
    return "whd_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def request_headers(
    endpoint: Endpoint, body: bytes, *, delivery: str, attempt: int, timestamp: int
) -> dict[str, str]:
    """The headers of one attempt (the signature covers this attempt's timestamp)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        HEADER: sign(endpoint.secret, body, timestamp=timestamp),
        DELIVERY_HEADER: delivery,
        EVENT_HEADER: KIND,
        ATTEMPT_HEADER: str(attempt),
    }


@dataclass(frozen=True)
class RetryPolicy:
    """``max_attempts`` tries in all; after try ``n`` fails the next waits
    ``backoff.delay(n)`` (exponential from ``base_s``, capped at ``max_s``, jittered to
    [0.5, 1] of it: :class:`runtime.retry.Backoff`).

    >>> policy = RetryPolicy(max_attempts=4, base_s=1.0, max_s=5.0)
    >>> [policy.backoff.base(n) for n in (1, 2, 3, 4)]
    [1.0, 2.0, 4.0, 5.0]
    >>> policy.next_delay(3, random.Random(1)) is not None, policy.next_delay(4)
    (True, None)
    """

    max_attempts: int = 8
    base_s: float = 10.0
    max_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    @property
    def backoff(self) -> Backoff:
        return Backoff(initial_s=min(self.base_s, self.max_s), max_s=self.max_s)

    def next_delay(self, attempts: int, rng: random.Random | None = None) -> float | None:
        """Seconds until the next try after ``attempts`` failed ones; None: give up."""
        if attempts >= self.max_attempts:
            return None
        return self.backoff.delay(attempts, rng)


def is_success(status_code: int) -> bool:
    return 200 <= status_code < 300


def status_error(status_code: int, reason: str) -> str:
    """What ``last_error`` says about a non-2xx answer (the body is not kept: it could
    echo anything).

    >>> status_error(503, "Service Unavailable")
    'HTTP 503 Service Unavailable'
    """
    return f"HTTP {status_code} {reason}".strip()[:MAX_ERROR_CHARS]


def exception_error(exc: BaseException, endpoint: Endpoint) -> str:
    """What ``last_error`` says about a failed request: the endpoint's secret and URL
    (which can carry a token, as some chat webhooks' do) masked should a library quote
    them.

    >>> e = Endpoint("ops", "https://h.example/hooks/T0K3N", "s3cret-s3cret-s3cret")
    >>> exception_error(TimeoutError(), e)
    'TimeoutError'
    >>> exception_error(OSError("bad s3cret-s3cret-s3cret for https://h.example/hooks/T0K3N"), e)
    'OSError: bad *** for <ops>'
    """
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = text.replace(endpoint.secret, "***").replace(endpoint.url, f"<{endpoint.name}>")
    return text[:MAX_ERROR_CHARS]


class AlertMessageError(ValueError):
    """A message on the alerts topic says it is a fault alert but cannot be read."""


class _Kind(msgspec.Struct, forbid_unknown_fields=False):
    kind: str | None = None


_kind_decoder = msgspec.json.Decoder(_Kind)
_alert_decoder = msgspec.json.Decoder(FaultAlert)


def read_alert_message(value: bytes | None) -> FaultAlert | None:
    """The fault alert in a message of the alerts topic; None for the other kinds on it
    (``security.alert`` envelopes); :class:`AlertMessageError` if it cannot be read.

    >>> read_alert_message(b'{"kind": "security.alert", "payload": {}}') is None
    True
    >>> read_alert_message(b'{"kind": "fault.alert"}')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    notify.policy.AlertMessageError: fault.alert does not match schema: Object missing ...
    >>> read_alert_message(b"nope")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    notify.policy.AlertMessageError: message is not valid JSON: JSON is malformed: ...
    """
    try:
        kind = _kind_decoder.decode(value or b"").kind
    except msgspec.DecodeError as exc:
        raise AlertMessageError(f"message is not valid JSON: {exc}") from None
    if kind != KIND:
        return None
    return decode_versioned(_alert_decoder, value or b"", KIND, AlertMessageError, SCHEMA_VERSION)
