"""Behaviours for one action's CALLs: refuse it, fail it, or never answer it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ocpp.exceptions import NotSupportedError

from ingest.simulator.behaviours.base import Behaviour, Fail, Ignore, Reply, Verdict

# The refusing status per action (others answer Rejected).
REFUSAL = {
    "UnlockConnector": "UnlockFailed",
    "ReserveNow": "Rejected",
    "ClearChargingProfile": "Unknown",
    "SendLocalList": "Failed",
    "DataTransfer": "Rejected",
}


class ActionBehaviour(Behaviour):
    """A behaviour for the CALLs of one action."""

    def __init__(self, action: str) -> None:
        self.action = action

    def on_call(self, action: str, payload: Mapping[str, Any]) -> Verdict | None:
        return self.verdict() if action == self.action else None

    def verdict(self) -> Verdict:
        raise NotImplementedError


class Reject(ActionBehaviour):
    """Answer with the action's refusing status."""

    def verdict(self) -> Verdict:
        return Reply({"status": REFUSAL.get(self.action, "Rejected")})


class NotSupported(ActionBehaviour):
    """Answer with CALLERROR NotSupported."""

    def verdict(self) -> Verdict:
        return Fail(NotSupportedError(f"{self.action} is not supported here"))


class Silent(ActionBehaviour):
    """Never answer (a broken station: the CSMS times out)."""

    def verdict(self) -> Verdict:
        return Ignore()
