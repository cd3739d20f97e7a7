"""Retry policies, one per kind of dependency, on tenacity.

Every wait for a dependency to come back (a database write during an outage, a Kafka
publish, an MQTT reconnect) uses one of :data:`DATABASE`, :data:`KAFKA` and :data:`MQTT`:
capped exponential backoff with jitter. Try ``n`` fails, then the wait is
``initial_s * 2**(n-1)`` capped at ``max_s``, times a random factor in [0.5, 1]: clients
that failed together spread out, and no wait is ever longer than the cap the operator
set. A process sets the cap from its settings (``Backoff.capped``); which exceptions
mean "the dependency is away" stays with the caller, who knows its client library.

``retrying``/``async_retrying`` give tenacity's iterators::

    for attempt in retrying(DATABASE.capped(settings.max_backoff_s),
                            (psycopg.OperationalError,), before_sleep=log_it):
        with attempt:
            write()
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import tenacity
from tenacity import RetryCallState

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter (module docstring)."""

    initial_s: float
    max_s: float

    def __post_init__(self) -> None:
        if not (self.initial_s > 0 and self.max_s > 0):
            raise ValueError("backoff must be positive")

    def capped(self, max_s: float, initial_s: float | None = None) -> Backoff:
        """This policy with the operator's cap (the first wait never above it)."""
        start = self.initial_s if initial_s is None else initial_s
        return replace(self, max_s=max_s, initial_s=min(start, max_s))

    def base(self, failures: int) -> float:
        """The wait after ``failures`` failed tries, before jitter."""
        return min(self.max_s, self.initial_s * 2 ** min(max(failures - 1, 0), 30))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        return self.base(failures) * (rng or random).uniform(0.5, 1.0)

    def wait(self, rng: random.Random | None = None) -> Callable[[RetryCallState], float]:
        """A tenacity ``wait``."""
        return lambda state: self.delay(state.attempt_number, rng)


# The policies. Databases restart in seconds; Kafka clients reconnect on their own, so
# the cap stays within a delivery budget; MQTT brokers, like databases, come back slower.
DATABASE = Backoff(initial_s=0.1, max_s=10.0)
KAFKA = Backoff(initial_s=0.2, max_s=5.0)
MQTT = Backoff(initial_s=0.2, max_s=10.0)


class _StopWhen(tenacity.stop.stop_base):
    def __init__(self, predicate: Callable[[], bool]) -> None:
        self._predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._predicate()


def retrying(
    backoff: Backoff,
    retry_on: ExceptionTypes,
    *,
    attempts: int | None = None,
    before_sleep: Callable[[RetryCallState], None] | None = None,
) -> tenacity.Retrying:
    """Blocking retries of ``retry_on`` (forever, or ``attempts`` tries, then the last
    error is raised); other exceptions propagate at once."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=backoff.wait(),
        stop=tenacity.stop_after_attempt(attempts) if attempts else tenacity.stop_never,
        before_sleep=before_sleep,
        reraise=True,
    )


def async_retrying(
    backoff: Backoff,
    retry_on: ExceptionTypes,
    *,
    attempts: int | None = None,
    before_sleep: Callable[[RetryCallState], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    stop_when: Callable[[], bool] | None = None,
) -> tenacity.AsyncRetrying:
    """As :func:`retrying`, in asyncio; ``sleep`` may end early (a stop request), and
    once ``stop_when()`` is true the last error is raised instead of trying again."""
    stop: tenacity.stop.stop_base = (
        tenacity.stop_after_attempt(attempts) if attempts else tenacity.stop_never
    )
    if stop_when is not None:
        stop = stop | _StopWhen(stop_when)
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(retry_on),
        wait=backoff.wait(),
        stop=stop,
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


def failure(state: RetryCallState) -> BaseException | None:
    """The exception of the try that just failed (for a ``before_sleep`` log line)."""
    return state.outcome.exception() if state.outcome is not None else None


def next_wait(state: RetryCallState) -> float:
    """The wait before the next try (for a ``before_sleep`` log line)."""
    return state.next_action.sleep if state.next_action is not None else 0.0
