"""Rate limits of the gateway: the per-connection message budget (``TokenBucket``) and
the failed-login counts per station id and per source address (``FailureLimiter``,
``source_key``). What a limit's crossing means is ``security``'s policy."""

from __future__ import annotations

import ipaddress
import time
from collections import deque


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
