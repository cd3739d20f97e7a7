"""The stateful step of the sessions flow: :class:`SessionsLogic`, one charge point's
state folded batch by batch through :mod:`flows.sessions.logic`, its snapshot pickled."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import datetime, timedelta

from bytewax.operators import StatefulBatchLogic

from bus.times import utc_now
from flows.sessions import logic
from flows.sessions.logic import ChargePointState, Event, Output, SessionRules

_NOTIFY_SLACK = timedelta(milliseconds=10)


class SessionsLogic(StatefulBatchLogic[list[Event], list[Output], bytes]):
    """The per-charge-point state of the ``sessions`` step.

    ``on_batch`` folds the charge point's events of one Bytewax batch through
    :func:`logic.apply_batch` (one session snapshot per transaction and batch) and
    emits their rows as one list (fewer items through Bytewax than one per row).
    ``snapshot`` (end of every epoch, for the charge points seen in it) pickles the
    state: an independent copy like ``stateful_map``'s deep copy, but several times
    cheaper.

    A station that goes silent (offline, powered off) sends no more events, so
    its event time stands still: ``notify_at``/``on_notify`` close its idle
    sessions by the wall clock instead (:func:`logic.expire_silent`).
    """

    def __init__(
        self, rules: SessionRules, resume: bytes | None, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.rules = rules
        self.state: ChargePointState | None = None if resume is None else pickle.loads(resume)
        self._clock = clock
        # Wall clock of the last message of this charge point. Not in the snapshot:
        # after a restart the silence is counted from the restart, so a flow that
        # was down (or is catching up) never closes sessions whose messages are
        # still waiting in Kafka.
        self._last_heard = clock()
        self._expired_for = timedelta(-1)  # silence already expired since then

    def on_batch(self, values: list[list[Event]]) -> tuple[list[list[Output]], bool]:
        events = values[0] if len(values) == 1 else [e for chunk in values for e in chunk]
        self.state, rows = logic.apply_batch(self.state, events, self.rules)
        self._last_heard = self._clock()
        self._expired_for = timedelta(-1)
        return ([rows] if rows else []), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        """When a silent station's waiting session must close (wall clock):
        :func:`logic.next_deadline` of event time after the last message heard."""
        if self.state is None:
            return None
        wait = logic.next_deadline(self.state, self.rules)
        if wait is None or wait <= self._expired_for:
            return None  # nothing waits, or expiring that far settled all it could
        # Just past the deadline: the idle rule is "more than idle_timeout".
        return self._last_heard + wait + _NOTIFY_SLACK

    def on_notify(self) -> tuple[list[list[Output]], bool]:
        if self.state is None:
            return [], StatefulBatchLogic.RETAIN
        silent_for = self._clock() - self._last_heard
        self.state, rows = logic.expire_silent(self.state, silent_for, self.rules)
        self._expired_for = silent_for
        return ([rows] if rows else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


def sessions_logic(rules: SessionRules, resume: bytes | None) -> SessionsLogic:
    return SessionsLogic(rules, resume)
