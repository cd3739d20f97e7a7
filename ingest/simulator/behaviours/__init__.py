"""Behaviours: the ways a simulated station departs from a healthy one.

A behaviour is a :class:`base.Behaviour` subclass overriding the hooks it needs; the
station asks its behaviours at each hook, in order. Hooks today:

- ``on_call(action, payload)``: a CALL from the CSMS, before the ocpp library
  validates and dispatches it; return ``Ignore()`` (never answer), ``Reply(payload)``,
  ``Fail(ocpp error)``, or None to let the version's handler answer.

To add a behaviour (a fault of the fault library, say):

1. write it as one small class in a module of this package (``calls.py`` holds the
   per-action ones: reject, not_supported, ignore);
2. register its name in ``BEHAVIOURS`` below: the name is what configuration selects
   (``FleetConfig.command_behaviour`` maps an action to one of them);
3. when it needs a hook the station does not call yet (telemetry, statuses, the
   connection), add the hook to ``Behaviour`` and ``Behaviours`` with a no-op default
   and call it at one place in ``sessions.py`` or ``station.py``; the behaviour acts on
   the station only through ``port.StationPort``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ingest.simulator.behaviours.base import Behaviour, Behaviours
from ingest.simulator.behaviours.calls import NotSupported, Reject, Silent

# Name -> the behaviour for an action's CALLs.
BEHAVIOURS: dict[str, Callable[[str], Behaviour]] = {
    "reject": Reject,
    "not_supported": NotSupported,
    "ignore": Silent,
}


def command_behaviours(by_action: Mapping[str, str]) -> Behaviours:
    """The behaviours of ``FleetConfig.command_behaviour`` (action -> name)."""
    unknown = sorted(set(by_action.values()) - set(BEHAVIOURS))
    if unknown:
        raise ValueError(f"unknown command behaviours {unknown}; known: {sorted(BEHAVIOURS)}")
    return Behaviours(BEHAVIOURS[name](action) for action, name in by_action.items())
