"""What a behaviour is: hooks the station calls, each a no-op unless overridden."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ocpp.exceptions import OCPPError


@dataclass(frozen=True, slots=True)
class Ignore:
    """Never answer the CALL (the CSMS times out)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the CALL with this payload (camelCase, as on the wire)."""

    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer the CALL with a CALLERROR."""

    error: OCPPError


# What a behaviour makes of a CALL; None: the station's handler answers it.
Verdict = Ignore | Reply | Fail


@dataclass(frozen=True, slots=True)
class Effect:
    """How a behaviour bends a connector's physics at one instant; the defaults bend
    nothing. Several effects compose (:meth:`then`)."""

    thermal_factor: float = 1.0  # x the temperature rise per kW
    pole_drops_v: tuple[float, float, float] = (0.0, 0.0, 0.0)  # extra drop at full load
    grid_factors: tuple[float, float, float] = (1.0, 1.0, 1.0)  # x the supply (0: phase lost)
    delivered_factor: float = 1.0  # share of what the EV asks that gets through
    register_factor: float = 1.0  # share of the energy the station's register counts
    register_jump_wh: float = 0.0  # added to the station's register at this instant

    def then(self, other: Effect) -> Effect:
        return Effect(
            self.thermal_factor * other.thermal_factor,
            tuple(a + b for a, b in zip(self.pole_drops_v, other.pole_drops_v, strict=True)),  # type: ignore[arg-type]
            tuple(a * b for a, b in zip(self.grid_factors, other.grid_factors, strict=True)),  # type: ignore[arg-type]
            self.delivered_factor * other.delivered_factor,
            self.register_factor * other.register_factor,
            self.register_jump_wh + other.register_jump_wh,
        )


NO_EFFECT = Effect()


class Behaviour:
    """One way a station departs from a healthy one. Override the hooks you need."""

    def on_call(self, action: str, payload: Mapping[str, Any]) -> Verdict | None:
        """A CALL from the CSMS, before the ocpp library validates and dispatches it."""
        return None

    def effect(self, connector_id: int, at: datetime) -> Effect | None:
        """How the connector's physics are bent at ``at`` (telemetry time)."""
        return None

    def refuses_start(self, connector_id: int, at: datetime) -> bool:
        """True: a session authorised at ``at`` never starts (stays Preparing)."""
        return False

    def skips_heartbeat(self, at: datetime) -> bool:
        """True: the heartbeat due at ``at`` is not sent."""
        return False


class Behaviours:
    """A station's behaviours, asked in order."""

    def __init__(self, behaviours: Iterable[Behaviour] = ()) -> None:
        self._all = tuple(behaviours)

    def on_call(self, action: str, payload: Mapping[str, Any]) -> Verdict | None:
        for behaviour in self._all:
            verdict = behaviour.on_call(action, payload)
            if verdict is not None:
                return verdict
        return None

    def effect(self, connector_id: int, at: datetime) -> Effect:
        combined = NO_EFFECT
        for behaviour in self._all:
            effect = behaviour.effect(connector_id, at)
            if effect is not None:
                combined = combined.then(effect)
        return combined

    def refuses_start(self, connector_id: int, at: datetime) -> bool:
        return any(b.refuses_start(connector_id, at) for b in self._all)

    def skips_heartbeat(self, at: datetime) -> bool:
        return any(b.skips_heartbeat(at) for b in self._all)

    def __add__(self, other: Behaviours) -> Behaviours:
        return Behaviours((*self._all, *other._all))
