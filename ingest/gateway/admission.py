"""Queues in front of login work: ``LoginAdmission`` bounds the logins being
authenticated at once (FIFO, refusing with a Retry-After when the expected wait is too
long), ``FairVerifier`` hands out argon2 slots (known addresses first, the others
round-robin by source). The policy around them is in ``security``."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import OrderedDict, deque


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


class AdmittedLogin:
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
