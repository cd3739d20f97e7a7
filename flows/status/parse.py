"""Envelopes into status facts: the ``ConnectorStatus`` facts of OCPP calls (both
versions, via ``Envelope.normalized``) and the station's connection events."""

from __future__ import annotations

from dataclasses import dataclass

from bus.envelope import Envelope, Kind, normalized_facts
from bus.normalized import ConnectorStatus
from flows.connection import ConnectionChange, connection_change

StatusFact = ConnectorStatus | ConnectionChange


@dataclass(frozen=True, slots=True)
class StatusEvent:
    charge_point_id: str
    facts: tuple[StatusFact, ...]


def parse_envelope(envelope: Envelope) -> StatusEvent | None:
    """The status facts in one envelope; None when there are none."""
    facts: list[StatusFact] = []
    if envelope.kind == Kind.OCPP_CALL:
        facts = [f for f in normalized_facts(envelope) if isinstance(f, ConnectorStatus)]
    elif envelope.kind == Kind.STATION_CONNECTION:
        facts = [connection_change(envelope)]
    if not facts:
        return None
    return StatusEvent(envelope.charge_point_id, tuple(facts))
