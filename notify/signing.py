"""The ``Chargeflow-Signature`` header: HMAC-SHA256 over ``"<t>.<body>"``, like Stripe's.

``t`` is the Unix time of the attempt (seconds); ``v1`` the hex HMAC-SHA256 of the
timestamp, a dot and the exact request body, keyed with the endpoint's secret (its UTF-8
bytes). A receiver recomputes it over the raw body and rejects a request whose
timestamp is outside its tolerance (a replayed old request).

>>> header = sign("s3cret", b'{"alert_id":"a1"}', timestamp=1_800_000_000)
>>> header
't=1800000000,v1=8e4df5936e2e3c17a5458af98d9281a3c30a647fe6dafa1d68c5e67593f33996'
>>> verify_signature("s3cret", header, b'{"alert_id":"a1"}', tolerance=300, now=1_800_000_100)
>>> verify_signature("s3cret", header, b'{"alert_id":"a2"}', tolerance=300, now=1_800_000_100)
Traceback (most recent call last):
...
notify.signing.SignatureError: no v1 signature matches the body
>>> verify_signature("s3cret", header, b'{"alert_id":"a1"}', tolerance=300, now=1_800_000_400)
Traceback (most recent call last):
...
notify.signing.SignatureError: timestamp outside the tolerance (300 s)
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Chargeflow-Signature"
SCHEME = "v1"


class SignatureError(ValueError):
    """The signature header is missing, malformed, too old or does not match."""


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    """The value of the ``Chargeflow-Signature`` header for ``body`` at ``timestamp``."""
    return f"t={timestamp},{SCHEME}={signature(secret, body, timestamp)}"


def parse_header(header: str) -> tuple[int, list[str]]:
    """``(timestamp, [v1 signatures])`` of a header; unknown schemes are ignored.

    >>> parse_header("t=12,v1=ab,v0=zz,v1=cd")
    (12, ['ab', 'cd'])
    """
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("timestamp is not an integer") from None
        elif key == SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("no timestamp in the signature header")
    if not signatures:
        raise SignatureError(f"no {SCHEME} signature in the header")
    return timestamp, signatures


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    tolerance: float = 300,
    *,
    now: float | None = None,
) -> None:
    """Check a ``Chargeflow-Signature`` header against the raw request ``body``; raise
    :class:`SignatureError` if it is missing, malformed, older or newer than
    ``tolerance`` seconds (``now``: the receiver's clock, default ``time.time()``) or
    no ``v1`` signature matches (compared in constant time)."""
    if not header:
        raise SignatureError(f"no {HEADER} header")
    timestamp, candidates = parse_header(header)
    clock = time.time() if now is None else now
    if abs(clock - timestamp) > tolerance:
        raise SignatureError(f"timestamp outside the tolerance ({tolerance:g} s)")
    expected = signature(secret, body, timestamp)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError(f"no {SCHEME} signature matches the body")
