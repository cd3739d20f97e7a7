"""When to ping a station and when its connection is dead; no I/O.

A WebSocket peer proves it is alive by what it sends. A pong can only be read once
every frame before it on the TCP stream has been read, and the gateway reads a
station's frames only as fast as it answers them (CALLs one at a time, then at most
``max_queued_frames`` buffered before websockets stops reading the socket: TCP
backpressure). A keepalive that times pongs out while the gateway itself is behind
(websockets' own ``ping_timeout``) therefore closes the busiest, perfectly healthy
stations (close 1011 "keepalive ping timeout") exactly when the gateway is
overloaded. This keepalive counts only the time the gateway spends waiting for the
station:

- any frame the gateway takes from the station is proof of life (an outstanding
  ping is then forgotten);
- a ping is sent only when the station has sent nothing for ``interval_s`` and the
  gateway is waiting for its next frame (nothing unread, so the pong will be read);
- the connection is dead when a ping stays unanswered for ``timeout_s`` of time the
  gateway spent waiting for a frame; time spent handling this station's CALLs does
  not count;
- it is dead too when what the gateway writes to the station stays unread: the
  connection's write buffer was seen non-empty at every check for ``timeout_s``
  (a station that stopped reading, or a peer that vanished, while the gateway has an
  answer for it: the gateway then waits for the station, not the other way round).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    NOTHING = "nothing"
    PING = "ping"
    CLOSE = "close"


@dataclass(slots=True)
class Keepalive:
    """One connection's keepalive state; the caller reports what happens and asks
    :meth:`due` what to do (times are one monotonic clock, in seconds)."""

    interval_s: float
    timeout_s: float
    last_heard: float  # when the gateway last took a frame or a pong from the station
    waiting_since: float | None = None  # the gateway waits for the next frame since then
    ping_sent: float | None = None  # an unanswered ping went out then
    unread_since: float | None = None  # our writes were seen waiting unread since then

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    def waiting(self, now: float) -> None:
        """The gateway is ready for the station's next frame."""
        self.waiting_since = now

    def frame(self, now: float) -> None:
        """The gateway took a frame from the station (it is alive); busy until
        :meth:`waiting` again."""
        self.last_heard = now
        self.waiting_since = None
        self.ping_sent = None

    def pinged(self, now: float) -> None:
        self.ping_sent = now

    def pong(self, now: float) -> None:
        self.last_heard = now
        self.ping_sent = None

    def writes(self, now: float, pending: bool) -> None:
        """What the connection's write buffer looked like at a check."""
        if not pending:
            self.unread_since = None
        elif self.unread_since is None:
            self.unread_since = now

    def due(self, now: float) -> Action:
        if (
            self.enabled
            and self.timeout_s > 0
            and self.unread_since is not None
            and now - self.unread_since >= self.timeout_s
        ):
            return Action.CLOSE
        if not self.enabled or self.waiting_since is None:
            return Action.NOTHING  # the station's frames wait for us: it is not silent
        if self.ping_sent is not None:
            if self.timeout_s <= 0:
                return Action.NOTHING
            waited = now - max(self.ping_sent, self.waiting_since)
            return Action.CLOSE if waited >= self.timeout_s else Action.NOTHING
        if now - self.last_heard >= self.interval_s:
            return Action.PING
        return Action.NOTHING

    def next_check_in(self, now: float) -> float:
        """Seconds until :meth:`due` can next return something other than NOTHING
        (at least a small step, so a timer never spins)."""
        if self.unread_since is not None and self.timeout_s > 0:
            left = self.timeout_s - (now - self.unread_since)
        elif self.ping_sent is not None and self.waiting_since is not None:
            left = self.timeout_s - (now - max(self.ping_sent, self.waiting_since))
        else:
            left = self.interval_s - (now - self.last_heard)
        return max(left, min(self.interval_s, 0.05))
