"""Charge point authentication at the WebSocket upgrade, failure limits and the
per-connection message budget. Policy (the reasoning is in docs/gateway-security.md):

- A station must be provisioned (``stations`` row). Unknown id -> HTTP 404, as
  OCPP-J asks for an unrecognised charge point identity; such attempts count against
  the source address like a wrong password, so ids cannot be enumerated quickly.
- ``security_profile`` per station: 1 (default) = HTTP Basic, username = charge point
  id, password checked against the argon2 hash; 2 = the same, and only over TLS
  (plain ``ws://`` -> 403); 0 = no authentication, only when set explicitly for that
  station. A profile 1/2 station without a stored password cannot log in (401).
- Missing, malformed or wrong credentials -> 401 with ``WWW-Authenticate: Basic``.
- Cool-downs apply to the failing *source* (the TCP peer address; IPv6 by /64):
  ``auth_failure_limit_ip`` failures within ``auth_failure_window_s`` cool that source
  down for ``auth_cooldown_s``: its attempts get 429 with ``Retry-After`` and no
  argon2 work. Two exceptions, so that nobody can lock a genuine station out: a
  password that matches the station's verified-credential record (below) is
  admitted, and a login from the station's known address (where it last logged in
  successfully, ``stations.last_auth_ip``, kept in the database) is always verified.
- Failures per *station id* never block: ``auth_failure_limit_station`` failures in
  the window raise a security alert, and while the id stays over the limit each
  further wrong password is answered ``auth_failure_delay_s`` later (slows guessing
  per connection). A correct password is admitted at once.
- Every crossing of a limit publishes a ``security.alert``. A success clears the
  station's failure count (not the source's: a valid credential of one station must
  not reset the count of guesses against others).
- argon2 runs in worker threads, at most ``max_concurrent_verifications`` at once,
  never on the event loop. Waiting logins are served fairly: logins from a station's
  known address first, the others round-robin by source address, so a source flooding
  logins cannot starve the rest. At most ``max_pending_verifications`` wait in the
  round-robin lanes; more are refused at once with 503 and ``Retry-After`` (the
  estimated time to work off the queue, with jitter). A 503 is not a failed login.
- At most ``max_concurrent_logins`` logins are authenticated at once; more wait in
  FIFO order while the expected wait is within a sixth of the handshake timeout,
  beyond that they get 503 with a jittered ``Retry-After`` (``LoginAdmission``), so a
  storm is worked off at full speed instead of collapsing into handshake timeouts.
- Verified credentials: after an argon2 success the gateway stores
  HMAC-SHA256(cache key, id, stored hash, password) in ``station_verified_credentials``.
  The key is the ``auth_cache_key`` setting (a secret shared by all replicas, never
  in the database); without it a random per-process key is used, so the records do
  not outlive the process. A login whose HMAC matches, while the station verified or
  was seen (``last_seen_at``) within ``auth_cache_ttl_s``, costs one HMAC: a
  reconnect storm after a restart needs no argon2 at all. Bound to the stored hash,
  so a new password applies at once.
- Hashes use ``store.registry.PASSWORD_HASHER`` (argon2id, m=19 MiB, t=2, p=1); a
  stored hash made with other parameters is re-hashed with the current ones at the
  station's next successful argon2 login (only if the stored hash is still the one
  checked).
- Nothing here logs a password, an ``Authorization`` header, a MAC or the key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ctypes
import hashlib
import hmac
import ipaddress
import math
import random
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    cool the key down for ``cooldown_s`` (what a cool-down means is the caller's
    business). In memory, per replica, bounded in size."""

    def __init__(
        self, limit: int, window_s: float, cooldown_s: float, max_keys: int = 100_000
    ) -> None:
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
        """Count a failure; returns the failure count when this one starts a cool-down
        (a failure during the cool-down extends it, without a new start)."""
        if not self.enabled:
            return None
        if self.blocked_for(key, now) > 0:
            self._blocked_until[key] = now + self.cooldown_s
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


def source_key(address: str | None) -> str:
    """The unit a cool-down applies to: an IPv4 address, or the /64 of an IPv6 one
    (one host usually holds a whole /64); IPv4-mapped IPv6 counts as IPv4."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def cache_key_from_secret(secret: str | None) -> bytes:
    """The HMAC key of verified credentials: derived from the ``auth_cache_key``
    setting, or random for this process when it is not set."""
    if not secret:
        return secrets.token_bytes(32)
    return hashlib.sha256(b"chargeflow station credential cache\0" + secret.encode()).digest()


def credential_mac(key: bytes, charge_point_id: str, password_hash: str, password: str) -> bytes:
    """HMAC-SHA256 of one verified credential, bound to the stored hash (a new
    password, or a re-hash, gives another MAC)."""
    message = "\0".join((charge_point_id, password_hash, password)).encode()
    return hmac.new(key, message, hashlib.sha256).digest()


class FairVerifier:
    """At most ``slots`` verifications at once. Waiting callers are served: priority
    callers first (FIFO), then the others round-robin by source, FIFO within a
    source. ``max_pending`` bounds the round-robin waiters (0 = unbounded)."""

    def __init__(self, slots: int, max_pending: int) -> None:
        self.slots = max(1, slots)
        self.max_pending = max_pending
        self._running = 0
        self._priority: deque[asyncio.Future[None]] = deque()
        self._lanes: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self.pending = 0  # waiting in the round-robin lanes

    @property
    def waiting(self) -> int:
        return self.pending + len(self._priority)

    def full(self, priority: bool) -> bool:
        return not priority and self.max_pending > 0 and self.pending >= self.max_pending

    async def acquire(self, source: str, priority: bool) -> None:
        if self._running < self.slots and not self.waiting:
            self._running += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if priority:
            self._priority.append(future)
        else:
            self._lanes.setdefault(source, deque()).append(future)
            self.pending += 1
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over as the caller gave up
            else:
                self._forget(future, source, priority)
            raise

    def _forget(self, future: asyncio.Future[None], source: str, priority: bool) -> None:
        if priority:
            if future in self._priority:
                self._priority.remove(future)
            return
        lane = self._lanes.get(source)
        if lane is not None and future in lane:
            lane.remove(future)
            self.pending -= 1
            if not lane:
                del self._lanes[source]

    def _next(self) -> asyncio.Future[None] | None:
        if self._priority:
            return self._priority.popleft()
        while self._lanes:
            source, lane = next(iter(self._lanes.items()))
            future = lane.popleft()
            self.pending -= 1
            if lane:
                self._lanes.move_to_end(source)
            else:
                del self._lanes[source]
            return future
        return None

    def release(self) -> None:
        """Hand the slot to the next waiter, or free it."""
        while (future := self._next()) is not None:
            if not future.done():
                future.set_result(None)
                return
        self._running -= 1


class LoginAdmission:
    """At most ``limit`` logins being authenticated at once (database look-ups, HMAC
    or argon2 hand-off); more wait in FIFO order, as long as the expected wait (the
    logins ahead at the measured service rate: ``limit`` / the moving average of one
    login's duration) stays within ``max_wait_s``, well inside the opening-handshake
    timeout. Beyond that a login is refused at once with a ``Retry-After`` jittered
    over ``max_wait_s``..2x, when the queue in front of it will have been worked off.
    The gateway thus always has work queued and completes logins at full speed.
    Without this a storm of thousands of handshakes all waited for the database
    pool, the slowest hit the handshake timeout, their cancelled queries cost
    connections, and fewer logins completed the more stations tried (measured: 427
    of 10,000 back after 600 s)."""

    def __init__(self, limit: int, max_wait_s: float = 10.0) -> None:
        self.limit = limit
        self.max_wait_s = max_wait_s
        self._slots = asyncio.Semaphore(max(1, limit))
        self.waiting = 0
        self.login_seconds = 0.05  # moving average of one admitted login (wall time)

    def expected_wait_s(self) -> float:
        return (self.waiting + 1) * self.login_seconds / max(1, self.limit)

    async def enter(self) -> int | None:
        """None = admitted (call ``done`` with the admission time after); else the
        Retry-After seconds."""
        if self.limit <= 0:
            return None
        if (self.waiting or self._slots.locked()) and self.expected_wait_s() > self.max_wait_s:
            return max(1, math.ceil(random.uniform(self.max_wait_s, 2 * self.max_wait_s)))
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        return None

    def done(self, admitted_at: float, now: float) -> None:
        if self.limit <= 0:
            return
        self._slots.release()
        self.login_seconds += 0.05 * (now - admitted_at - self.login_seconds)


class _Admitted:
    """One admitted login; ``release`` (idempotent) gives its place back: when done,
    or before it queues for argon2 (that queue is bounded on its own, and waiting in
    it must not keep logins that cost an HMAC out)."""

    def __init__(self, admission: LoginAdmission, admitted_at: float) -> None:
        self.admission = admission
        self.admitted_at = admitted_at
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission.done(self.admitted_at, time.monotonic())


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
        cache_key: str | None = None,
        failure_delay_s: float = 1.0,
        max_concurrent_logins: int = 0,
        max_login_wait_s: float = 10.0,
    ) -> None:
        self.pool = pool
        self.gateway_id = gateway_id
        self.tls = tls
        # Per station id: alerts and slower failures only, never a block.
        self.station_limiter = station_limiter
        # Per source: cool-downs.
        self.ip_limiter = ip_limiter
        self.cache_ttl_s = cache_ttl_s
        self.failure_delay_s = failure_delay_s
        self._alert = alert
        self._hasher = registry.PASSWORD_HASHER
        return_large_allocations_to_the_os()
        self.persistent_cache = bool(cache_key)
        self._cache_key = cache_key_from_secret(cache_key)
        self._verifier = FairVerifier(max_concurrent_verifications, max_pending_verifications)
        self.max_pending_verifications = max_pending_verifications
        self.admission = LoginAdmission(max_concurrent_logins, max_login_wait_s)
        self._verify_seconds = 0.05  # moving average of one verification (wall time)
        self.metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        self.argon2_verifications = 0  # for tests and metrics
        self.cached_logins = 0
        self.rehashed = 0

    def _cached(self, station: registry.StationCredentials, mac: bytes, now: datetime) -> bool:
        """The password matches the station's verified credential, still fresh."""
        if station.credential_mac is None or station.verified_at is None:
            return False
        last_sign = max(station.verified_at, station.last_seen_at or station.verified_at)
        if last_sign + timedelta(seconds=self.cache_ttl_s) <= now:
            return False
        return hmac.compare_digest(station.credential_mac, mac)

    def _busy(self, priority: bool) -> int | None:
        """Retry-After seconds when the verification queue is full, else None."""
        if not self._verifier.full(priority):
            return None
        drain_s = (self._verifier.waiting + 1) * self._verify_seconds / self._verifier.slots
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

    async def _verify(
        self, password_hash: str, password: str, source: str, priority: bool
    ) -> tuple[bool, str | None]:
        await self._verifier.acquire(source, priority)
        try:
            self.argon2_verifications += 1
            if self.metrics is not None:
                self.metrics.password_checks.labels("argon2").inc()
            started = time.monotonic()
            result = await asyncio.to_thread(self._verify_and_rehash, password_hash, password)
            self._verify_seconds += 0.2 * (time.monotonic() - started - self._verify_seconds)
            return result
        finally:
            self._verifier.release()

    def _rate_limited(self, blocked_s: float) -> AuthOutcome:
        return AuthOutcome(
            HTTPStatus.TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many failed logins from this address; try again later\n",
            retry_after_s=max(1, math.ceil(blocked_s)),
        )

    async def authenticate(
        self, charge_point_id: str, authorization: str | None, source_ip: str | None
    ) -> AuthOutcome:
        retry_after = await self.admission.enter()
        if retry_after is not None:
            return self._busy_outcome(retry_after)
        admitted = _Admitted(self.admission, time.monotonic())
        try:
            outcome = await self._authenticate(charge_point_id, authorization, source_ip, admitted)
        finally:
            admitted.release()
        if (
            outcome.status == HTTPStatus.UNAUTHORIZED
            and self.station_limiter.blocked_for(charge_point_id, time.monotonic()) > 0
        ):
            await asyncio.sleep(self.failure_delay_s)  # the id is under attack
        return outcome

    def _busy_outcome(self, retry_after: int) -> AuthOutcome:
        if self.metrics is not None:
            self.metrics.busy_handshakes.inc()
        return AuthOutcome(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "busy",
            "Too many logins in progress; retry later\n",
            retry_after_s=retry_after,
        )

    async def _authenticate(
        self,
        charge_point_id: str,
        authorization: str | None,
        source_ip: str | None,
        admitted: _Admitted,
    ) -> AuthOutcome:
        source = source_key(source_ip)
        credentials = parse_basic_auth(authorization)
        blocked = self.ip_limiter.blocked_for(source, time.monotonic())

        station = await registry.get_station_credentials(self.pool, charge_point_id)
        if station is None:
            if blocked > 0:
                return self._rate_limited(blocked)
            await self._failure(charge_point_id, source, "unknown_station", known=False)
            return AuthOutcome(
                HTTPStatus.NOT_FOUND, "unknown_station", "Unknown charge point identity\n"
            )
        if station.security_profile == 0:
            return AuthOutcome(None, "profile_0")
        if station.security_profile >= 2 and not self.tls:
            return AuthOutcome(
                HTTPStatus.FORBIDDEN,
                "tls_required",
                "This charge point must connect over TLS (wss://)\n",
            )
        if (
            credentials is None
            or credentials[0] != charge_point_id
            or station.password_hash is None
        ):
            if blocked > 0:
                return self._rate_limited(blocked)
            why = (
                "no_credentials"
                if credentials is None
                else "username_mismatch"
                if credentials[0] != charge_point_id
                else "no_password_provisioned"
            )
            await self._failure(charge_point_id, source, why, known=True)
            return AuthOutcome(
                HTTPStatus.UNAUTHORIZED,
                "unauthorized",
                "HTTP Basic authentication required: username = charge point id\n",
            )
        password = credentials[1]
        stored = station.password_hash
        mac = credential_mac(self._cache_key, charge_point_id, stored, password)
        if self._cached(station, mac, utc_now()):
            self.cached_logins += 1
            if self.metrics is not None:
                self.metrics.password_checks.labels("verified_credential").inc()
            ok, new_hash = True, None
        else:
            known_address = station.last_auth_ip == source
            if blocked > 0 and not known_address:
                return self._rate_limited(blocked)  # no argon2 work for a cooled source
            retry_after = self._busy(known_address)
            if retry_after is not None:
                return self._busy_outcome(retry_after)
            admitted.release()
            ok, new_hash = await self._verify(stored, password, source, known_address)
        if not ok:
            await self._failure(charge_point_id, source, "wrong_password", known=True)
            return AuthOutcome(HTTPStatus.UNAUTHORIZED, "unauthorized", "Invalid credentials\n")
        if new_hash is not None and await self._store_rehash(charge_point_id, stored, new_hash):
            stored = new_hash
            mac = credential_mac(self._cache_key, charge_point_id, stored, password)
        self.station_limiter.success(charge_point_id)
        try:
            await registry.record_auth_success(self.pool, charge_point_id, utc_now(), source, mac)
        except Exception:  # bookkeeping only
            log.exception("could not record the login", charge_point_id=charge_point_id)
        return AuthOutcome(None, "authenticated")

    async def _store_rehash(self, charge_point_id: str, old_hash: str, new_hash: str) -> bool:
        try:
            replaced = await registry.replace_password_hash(
                self.pool, charge_point_id, old_hash, new_hash
            )
        except Exception:  # the old hash still works; next login tries again
            log.exception("could not store the re-hashed password", charge_point_id=charge_point_id)
            return False
        if replaced:
            self.rehashed += 1
            if self.metrics is not None:
                self.metrics.rehashed_passwords.inc()
            log.info(
                "password hash upgraded to the current argon2 parameters",
                charge_point_id=charge_point_id,
            )
        return replaced

    async def _failure(self, charge_point_id: str, source: str, why: str, *, known: bool) -> None:
        now = time.monotonic()
        log.warning(
            "charge point authentication failed",
            charge_point_id=charge_point_id,
            source_ip=source,
            reason=why,
        )
        if known:
            try:
                await registry.record_auth_failure(self.pool, charge_point_id, source, utc_now())
            except Exception:
                log.exception("could not record the failed login", charge_point_id=charge_point_id)
        for scope, limiter, key, consequence in (
            ("station", self.station_limiter, charge_point_id, "slowed"),
            ("source_ip", self.ip_limiter, source, "cooled_down"),
        ):
            count = limiter.failure(key, now)
            if count is None:
                continue
            log.warning(
                "too many failed logins",
                scope=scope,
                consequence=consequence,
                charge_point_id=charge_point_id,
                source_ip=source,
                failures=count,
                for_s=limiter.cooldown_s,
            )
            self._spawn(
                self._alert(
                    charge_point_id,
                    {
                        "alert": "repeated_failed_authentication",
                        "scope": scope,
                        "consequence": consequence,
                        "source_ip": source,
                        "failures": count,
                        "window_s": limiter.window_s,
                        "cooldown_s": limiter.cooldown_s,
                        "last_reason": why,
                        "known_station": known,
                        "gateway_id": self.gateway_id,
                    },
                )
            )

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
