"""Charge point authentication at the WebSocket upgrade, failure rate limits and the
per-connection message budget. Policy (also in docs/gateway-security.md):

- A station must be provisioned (``stations`` row). Unknown id -> HTTP 404, as
  OCPP-J asks for an unrecognised charge point identity; such attempts count against
  the source IP like a wrong password, so ids cannot be enumerated quickly.
- ``security_profile`` per station: 1 (default) = HTTP Basic, username = charge point
  id, password checked against the argon2 hash; 2 = the same, and only over TLS
  (plain ``ws://`` -> 403); 0 = no authentication, only when set explicitly for that
  station. A profile 1/2 station without a stored password cannot log in (401).
- Missing, malformed or wrong credentials -> 401 with ``WWW-Authenticate: Basic``.
- Failures are counted per station id and per source IP in a sliding window; when
  either reaches its limit the key is cooled down: further attempts get 429 with
  ``Retry-After`` without any password check (no argon2 work), except credentials
  that match a verification that succeeded moments ago (so an attacker who knows a
  station's id cannot lock the real station out with wrong passwords). Crossing a
  limit raises a security alert. A success clears both counters; the station's
  consecutive-failure counter in the database is for operators.
- argon2 runs in worker threads (bounded), never on the event loop; a successful
  verification is remembered for ``auth_cache_ttl_s`` as an HMAC of the presented
  password under a per-process random key (never the password), invalidated when the
  stored hash changes, so reconnect storms cost no argon2 time.
- Reconnect storms after a gateway restart (nothing cached): at most
  ``max_pending_verifications`` logins wait for an argon2 slot; more are refused at
  once with 503 and ``Retry-After`` (the estimated time to work off the queue, with
  jitter so the retries spread out) instead of waiting until the handshake times
  out. A 503 is not a failed login (no counters, no alert).
- Hashes use ``store.registry.PASSWORD_HASHER`` (argon2id, m=19 MiB, t=2, p=1); a
  stored hash made with other parameters is re-hashed with the current ones at the
  station's next successful login (only if the stored hash is still the one checked).
- Nothing here logs a password or an ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ctypes
import hashlib
import hmac
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import structlog
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ingest.gateway.services import GatewayMetrics, utc_now
from store import registry

log = structlog.get_logger("chargeflow.gateway.security")

REALM = 'Basic realm="chargeflow OCPP", charset="UTF-8"'

# glibc raises its mmap threshold up to 32 MiB after the first large free, so
# argon2's 19 MiB working memory would then come from per-thread heaps and stay
# resident (measured: +165 MiB RSS after 2,000 logins on 4 worker threads). A fixed
# threshold keeps every allocation above it mmapped and unmapped when freed.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def return_large_allocations_to_the_os(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Pin glibc's mmap threshold (no-op elsewhere); True when it was set."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` -> (user, password); None when absent/malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")  # RFC 7617 leaves the charset to the parties
    user, sep, password = text.partition(":")
    if not sep:
        return None
    return user, password


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. ``take`` reserves one
    token and returns how long to wait before using it (0 when one is there)."""

    def __init__(self, rate: float, burst: float, now: float | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class FailureLimiter:
    """Failures per key in a sliding window; ``limit`` failures within ``window_s``
    cool the key down for ``cooldown_s``. In memory, per replica, bounded in size."""

    def __init__(self, limit: int, window_s: float, cooldown_s: float,
                 max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def blocked_for(self, key: str, now: float) -> float:
        """Seconds left in the key's cool-down (0 = not blocked)."""
        until = self._blocked_until.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self._blocked_until[key]
            return 0.0
        return until - now

    def failure(self, key: str, now: float) -> int | None:
        """Count a failure; returns the failure count when this one starts a cool-down."""
        if not self.enabled:
            return None
        if len(self._failures) >= self.max_keys and key not in self._failures:
            self._prune(now)
        window = self._failures.setdefault(key, deque())
        window.append(now)
        while window and window[0] <= now - self.window_s:
            window.popleft()
        if len(window) >= self.limit:
            count = len(window)
            window.clear()
            self._blocked_until[key] = now + self.cooldown_s
            return count
        return None

    def success(self, key: str) -> None:
        self._failures.pop(key, None)

    def _prune(self, now: float) -> None:
        for key in [k for k, w in self._failures.items() if not w or w[-1] <= now - self.window_s]:
            del self._failures[key]
        for key in [k for k, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[key]
        while len(self._failures) >= self.max_keys:  # still full: forget the oldest
            del self._failures[next(iter(self._failures))]


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """None status = let the upgrade through."""

    status: HTTPStatus | None
    reason: str  # metrics label / log reason
    message: str = ""
    retry_after_s: int | None = None

    @property
    def accepted(self) -> bool:
        return self.status is None


# (charge point id or None, payload) -> publishes a security alert
AlertSink = Callable[[str, dict[str, Any]], Awaitable[None]]


class Authenticator:
    def __init__(
        self,
        *,
        pool: Any,
        gateway_id: str,
        tls: bool,
        station_limiter: FailureLimiter,
        ip_limiter: FailureLimiter,
        cache_ttl_s: float,
        max_concurrent_verifications: int,
        alert: AlertSink,
        max_pending_verifications: int = 64,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.gateway_id = gateway_id
        self.tls = tls
        self.station_limiter = station_limiter
        self.ip_limiter = ip_limiter
        self.cache_ttl_s = cache_ttl_s
        self._alert = alert
        self._hasher = registry.PASSWORD_HASHER
        return_large_allocations_to_the_os()
        self._cache_key = secrets.token_bytes(32)
        # charge point id -> (HMAC of the password, stored hash it matched, expires at)
        self._verified: dict[str, tuple[bytes, str, float]] = {}
        self._slots = max(1, max_concurrent_verifications)
        self._verify_slots = asyncio.Semaphore(self._slots)
        self.max_pending_verifications = max_pending_verifications
        self._in_verification = 0  # waiting for a slot or verifying
        self._verify_seconds = 0.05  # moving average of one verification (wall time)
        self.metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        self.argon2_verifications = 0  # for tests and metrics
        self.rehashed = 0

    def _digest(self, charge_point_id: str, password: str) -> bytes:
        return hmac.new(self._cache_key, f"{charge_point_id}\0{password}".encode(),
                        hashlib.sha256).digest()

    def _recently_verified(self, charge_point_id: str, password: str,
                           password_hash: str | None, now: float) -> bool:
        entry = self._verified.get(charge_point_id)
        if entry is None:
            return False
        digest, stored_hash, expires = entry
        if expires <= now:
            del self._verified[charge_point_id]
            return False
        if password_hash is not None and stored_hash != password_hash:
            return False
        return hmac.compare_digest(digest, self._digest(charge_point_id, password))

    def _busy(self) -> int | None:
        """Retry-After seconds when the verification queue is full, else None."""
        if self.max_pending_verifications <= 0:
            return None
        queued = self._in_verification - self._slots
        if queued < self.max_pending_verifications:
            return None
        drain_s = (queued + 1) * self._verify_seconds / self._slots
        return max(1, min(30, math.ceil(drain_s + random.uniform(0.0, 2.0))))

    def _verify_and_rehash(self, password_hash: str, password: str) -> tuple[bool, str | None]:
        """(worker thread) argon2 check; on success with outdated parameters also the
        new hash of the same password."""
        try:
            self._hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False, None
        except (VerificationError, InvalidHashError):
            log.error("stored password hash is not a valid argon2 hash")
            return False, None
        if self._hasher.check_needs_rehash(password_hash):
            return True, self._hasher.hash(password)
        return True, None

    async def _verify(self, password_hash: str, password: str) -> tuple[bool, str | None]:
        self._in_verification += 1
        try:
            async with self._verify_slots:
                self.argon2_verifications += 1
                started = time.monotonic()
                result = await asyncio.to_thread(self._verify_and_rehash, password_hash,
                                                 password)
                self._verify_seconds += 0.2 * (time.monotonic() - started
                                               - self._verify_seconds)
                return result
        finally:
            self._in_verification -= 1

    async def authenticate(self, charge_point_id: str, authorization: str | None,
                           source_ip: str | None) -> AuthOutcome:
        now = time.monotonic()
        ip_key = source_ip or "unknown"
        credentials = parse_basic_auth(authorization)
        blocked = max(self.station_limiter.blocked_for(charge_point_id, now),
                      self.ip_limiter.blocked_for(ip_key, now))
        if blocked > 0 and not (
            credentials is not None and credentials[0] == charge_point_id
            and self._recently_verified(charge_point_id, credentials[1], None, now)
        ):
            return AuthOutcome(HTTPStatus.TOO_MANY_REQUESTS, "rate_limited",
                               "Too many failed logins; try again later\n",
                               retry_after_s=max(1, int(blocked + 0.999)))

        station = await registry.get_station_credentials(self.pool, charge_point_id)
        if station is None:
            await self._failure(charge_point_id, ip_key, "unknown_station", known=False)
            return AuthOutcome(HTTPStatus.NOT_FOUND, "unknown_station",
                               "Unknown charge point identity\n")
        if station.security_profile == 0:
            return AuthOutcome(None, "profile_0")
        if station.security_profile >= 2 and not self.tls:
            return AuthOutcome(HTTPStatus.FORBIDDEN, "tls_required",
                               "This charge point must connect over TLS (wss://)\n")
        if credentials is None or credentials[0] != charge_point_id \
                or station.password_hash is None:
            why = ("no_credentials" if credentials is None
                   else "username_mismatch" if credentials[0] != charge_point_id
                   else "no_password_provisioned")
            await self._failure(charge_point_id, ip_key, why, known=True)
            return AuthOutcome(HTTPStatus.UNAUTHORIZED, "unauthorized",
                               "HTTP Basic authentication required: "
                               "username = charge point id\n")
        password = credentials[1]
        if self._recently_verified(charge_point_id, password, station.password_hash, now):
            ok = True
        else:
            retry_after = self._busy()
            if retry_after is not None:
                if self.metrics is not None:
                    self.metrics.busy_handshakes.inc()
                return AuthOutcome(HTTPStatus.SERVICE_UNAVAILABLE, "busy",
                                   "Too many logins in progress; retry later\n",
                                   retry_after_s=retry_after)
            ok, new_hash = await self._verify(station.password_hash, password)
            if ok:
                stored = station.password_hash
                if new_hash is not None and await self._store_rehash(
                        charge_point_id, stored, new_hash):
                    stored = new_hash
                self._verified[charge_point_id] = (
                    self._digest(charge_point_id, password), stored,
                    time.monotonic() + self.cache_ttl_s)
        if not ok:
            await self._failure(charge_point_id, ip_key, "wrong_password", known=True)
            return AuthOutcome(HTTPStatus.UNAUTHORIZED, "unauthorized",
                               "Invalid credentials\n")
        self.station_limiter.success(charge_point_id)
        self.ip_limiter.success(ip_key)
        try:
            await registry.record_auth_success(self.pool, charge_point_id, utc_now())
        except Exception:  # bookkeeping only
            log.exception("could not record the login", charge_point_id=charge_point_id)
        return AuthOutcome(None, "authenticated")

    async def _store_rehash(self, charge_point_id: str, old_hash: str, new_hash: str
                            ) -> bool:
        try:
            replaced = await registry.replace_password_hash(self.pool, charge_point_id,
                                                            old_hash, new_hash)
        except Exception:  # the old hash still works; next login tries again
            log.exception("could not store the re-hashed password",
                          charge_point_id=charge_point_id)
            return False
        if replaced:
            self.rehashed += 1
            if self.metrics is not None:
                self.metrics.rehashed_passwords.inc()
            log.info("password hash upgraded to the current argon2 parameters",
                     charge_point_id=charge_point_id)
        return replaced

    async def _failure(self, charge_point_id: str, ip_key: str, why: str, *, known: bool
                       ) -> None:
        now = time.monotonic()
        log.warning("charge point authentication failed", charge_point_id=charge_point_id,
                    source_ip=ip_key, reason=why)
        if known:
            try:
                await registry.record_auth_failure(self.pool, charge_point_id, ip_key,
                                                   utc_now())
            except Exception:
                log.exception("could not record the failed login",
                              charge_point_id=charge_point_id)
        for scope, limiter, key in (("station", self.station_limiter, charge_point_id),
                                    ("source_ip", self.ip_limiter, ip_key)):
            count = limiter.failure(key, now)
            if count is None:
                continue
            log.warning("too many failed logins, cooling down", scope=scope,
                        charge_point_id=charge_point_id, source_ip=ip_key, failures=count,
                        cooldown_s=limiter.cooldown_s)
            self._spawn(self._alert(charge_point_id, {
                "alert": "repeated_failed_authentication",
                "scope": scope,
                "source_ip": ip_key,
                "failures": count,
                "window_s": limiter.window_s,
                "cooldown_s": limiter.cooldown_s,
                "last_reason": why,
                "known_station": known,
                "gateway_id": self.gateway_id,
            }))

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("could not publish a security alert")

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for alerts still being published (on shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
