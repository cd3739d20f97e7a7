"""Charge point authentication at the WebSocket upgrade (``Authenticator``; its parts:
``credentials``, ``limits``, ``admission``). Size: a seventh of it is the policy below,
the rest is the one login decision that applies it.

Policy (reasoning: docs/gateway-security.md):

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
- Hashes use ``store.stations.PASSWORD_HASHER`` (argon2id, m=19 MiB, t=2, p=1); a
  stored hash made with other parameters is re-hashed with the current ones at the
  station's next successful argon2 login (only if the stored hash is still the one
  checked).
- Nothing here logs a password, an ``Authorization`` header, a MAC or the key.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any

import structlog

from bus.times import utc_now
from ingest.gateway.admission import AdmittedLogin, FairVerifier, LoginAdmission
from ingest.gateway.credentials import (
    cache_key_from_secret,
    credential_mac,
    parse_basic_auth,
    return_large_allocations_to_the_os,
    verify_and_rehash,
)
from ingest.gateway.limits import FailureLimiter, source_key
from ingest.gateway.services import GatewayMetrics
from store import stations
from store.station_batches import AuthSuccess, StationWrites

log = structlog.get_logger("chargeflow.gateway.security")

REALM = 'Basic realm="chargeflow OCPP", charset="UTF-8"'


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
        station_writes: StationWrites | None = None,
    ) -> None:
        self.pool = pool
        self.station_writes = station_writes
        self.gateway_id = gateway_id
        self.tls = tls
        # Per station id: alerts and slower failures only, never a block.
        self.station_limiter = station_limiter
        # Per source: cool-downs.
        self.ip_limiter = ip_limiter
        self.cache_ttl_s = cache_ttl_s
        self.failure_delay_s = failure_delay_s
        self._alert = alert
        self._hasher = stations.PASSWORD_HASHER
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

    def _cached(self, station: stations.StationCredentials, mac: bytes, now: datetime) -> bool:
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

    async def _verify(
        self, password_hash: str, password: str, source: str, priority: bool
    ) -> tuple[bool, str | None]:
        await self._verifier.acquire(source, priority)
        try:
            self.argon2_verifications += 1
            if self.metrics is not None:
                self.metrics.password_checks.labels("argon2").inc()
            started = time.monotonic()
            result = await asyncio.to_thread(
                verify_and_rehash, self._hasher, password_hash, password
            )
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
        admitted = AdmittedLogin(self.admission, time.monotonic())
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
        admitted: AdmittedLogin,
    ) -> AuthOutcome:
        source = source_key(source_ip)
        credentials = parse_basic_auth(authorization)
        blocked = self.ip_limiter.blocked_for(source, time.monotonic())

        station = await stations.get_station_credentials(self.pool, charge_point_id)
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
        return await self._check_password(
            charge_point_id,
            station,
            station.password_hash,
            credentials[1],
            source,
            blocked,
            admitted,
        )

    async def _check_password(
        self,
        charge_point_id: str,
        station: stations.StationCredentials,
        stored: str,
        password: str,
        source: str,
        blocked: float,
        admitted: AdmittedLogin,
    ) -> AuthOutcome:
        """Verified credential (one HMAC), else argon2; a success is recorded."""
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
            await self._record_success(charge_point_id, source, mac)
        except Exception:  # bookkeeping only
            log.exception("could not record the login", charge_point_id=charge_point_id)
        return AuthOutcome(None, "authenticated")

    async def _record_success(self, charge_point_id: str, source: str, mac: bytes) -> None:
        """Failures reset, known address and verified credential: batched with the other
        logins' (committed before the login goes on) when the gateway has the writers."""
        if self.station_writes is None:
            await stations.record_auth_success(self.pool, charge_point_id, utc_now(), source, mac)
        else:
            await self.station_writes.auth_success.write(
                AuthSuccess(charge_point_id, utc_now(), source, mac)
            )

    async def _store_rehash(self, charge_point_id: str, old_hash: str, new_hash: str) -> bool:
        try:
            replaced = await stations.replace_password_hash(
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
                await stations.record_auth_failure(self.pool, charge_point_id, source, utc_now())
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
