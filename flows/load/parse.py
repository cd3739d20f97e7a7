"""Envelopes into load facts (:mod:`flows.load.facts`).

* **Power** per (connector, transaction, instant) from ``Power.Active.Import``
  samples, in W (:func:`bus.measurands.to_w`: ``W`` or none given, or ``kW``, times
  ``10^unit_multiplier``). Per instant the value without phase wins (``Outlet``
  preferred over other locations); when a station only reports per phase
  (``L1``/``L2``/``L3`` or ``L1-N``...), the phases are summed. Samples located at
  the ``EV`` are ignored.
* **Registers**: the total ``Energy.Active.Import.Register`` (no phase) per instant,
  in Wh (:func:`bus.measurands.to_wh`).
* **Idle**: a connector reports a status that delivers no energy
  (:data:`NOT_DELIVERING`), or its transaction ends.
* Smart meter readings (``meter.readings``) and station connection events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from bus.envelope import Envelope, Kind, decode_envelope, decode_facts_envelope, normalized_facts
from bus.measurands import CABLE, ENERGY_REGISTER, EV, OUTLET, POWER, phase_of, to_w, to_wh
from bus.normalized import (
    ConnectorStatus,
    MeterSample,
    Normalized,
    TransactionEnd,
    TransactionStart,
    to_decimal,
)
from flows.connection import connection_change
from flows.errors import InvalidEvent
from flows.load.facts import (
    ConnectorIdle,
    Fact,
    LoadEvent,
    PowerReading,
    RegisterReading,
    TransactionOpened,
)
from flows.load.sources import BILLING_METER, METER, OCPP

NOT_DELIVERING = frozenset(
    {
        "Available",
        "Preparing",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    }
)
_LOCATION_RANK = {OUTLET: 2, CABLE: 1}


def _watts(sample: MeterSample) -> float | None:
    # Load is summed and averaged in float W; the exact conversion stays in Decimal.
    watts = to_w(sample.value, sample.unit, sample.unit_multiplier)
    return None if watts is None else float(watts)


def _location_rank(sample: MeterSample) -> int:
    return _LOCATION_RANK.get(sample.location, 0)


def power_readings(samples: Iterable[MeterSample], source: str = OCPP) -> list[PowerReading]:
    """One reading per (connector, transaction, instant): the total without phase, else
    the sum of the per-phase values.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 5, tzinfo=UTC)
    >>> def s(v, phase=None, unit="W", mult=0):
    ...     return MeterSample(charge_point_id="CP", evse_id=1, connector_id=1, timestamp=t,
    ...         measurand=POWER, phase=phase, unit=unit, unit_multiplier=mult,
    ...         context="Sample.Periodic", location="Outlet", value=Decimal(v))
    >>> phases = [s("3.6", "L1", "kW"), s("3600", "L2-N"), s("36", "L3", mult=2)]
    >>> [r.power_w for r in power_readings(phases)]
    [10800.0]
    >>> [r.power_w for r in power_readings([s("7", "L1", "kW"), s("11", None, "kW")])]
    [11000.0]
    """
    return [r for r in _readings(samples, source) if type(r) is PowerReading]


_Instant = tuple[int | None, str | None, datetime]  # (connector, transaction, time)
_PowerGroups = dict[_Instant, list[MeterSample]]


def _add_power(groups: _PowerGroups, source: str, out: list[Any]) -> None:
    for (evse, tx, at), group in groups.items():
        value: float | None = None
        if len(group) == 1 and group[0].phase is None:  # the usual case: one total
            value = _watts(group[0])
        else:
            totals = [(s, w) for s in group if s.phase is None and (w := _watts(s)) is not None]
            if totals:
                totals.sort(key=lambda sw: _location_rank(sw[0]))
                value = totals[-1][1]
            else:
                phases: dict[str, float] = {}
                for s in sorted(group, key=_location_rank):
                    phase = phase_of(s.phase)
                    watts = _watts(s)
                    if phase is not None and watts is not None:
                        phases[phase] = watts
                if phases:
                    value = sum(phases.values())
        if value is not None:
            out.append(PowerReading(evse, tx, at, value, source))


def register_readings(samples: Iterable[MeterSample], source: str = OCPP) -> list[RegisterReading]:
    """The total import register (no phase) per (connector, transaction, instant), in Wh."""
    return [r for r in _readings(samples, source) if type(r) is RegisterReading]


def _readings(samples: Iterable[MeterSample], source: str = OCPP) -> list[Fact]:
    """``[*power_readings(samples), *register_readings(samples)]`` in one pass."""
    groups: _PowerGroups = {}
    found: dict[_Instant, tuple[int, Decimal]] = {}
    for s in samples:
        if s.location == EV:
            continue
        measurand = s.measurand
        if measurand == POWER:
            key = (s.evse_id, s.transaction_id, s.timestamp)
            group = groups.get(key)
            if group is None:
                groups[key] = [s]
            else:
                group.append(s)
        elif measurand == ENERGY_REGISTER and s.phase is None:
            wh = to_wh(s.value, s.unit, s.unit_multiplier)
            if wh is None:
                continue
            key = (s.evse_id, s.transaction_id, s.timestamp)
            rank = _LOCATION_RANK.get(s.location, 0)
            seen = found.get(key)
            if seen is None or rank >= seen[0]:
                found[key] = (rank, wh)
    out: list[Fact] = []
    _add_power(groups, source, out)
    for (evse, tx, at), (_, wh) in found.items():
        out.append(RegisterReading(evse, tx, at, wh, source))
    return out


def _ocpp_facts(normalized: Iterable[Normalized]) -> list[Fact]:
    opened: list[Fact] = []
    idle: list[Fact] = []
    samples: list[MeterSample] = []
    for f in normalized:
        if isinstance(f, MeterSample):
            samples.append(f)
        elif isinstance(f, TransactionStart):
            if f.evse_id is not None:
                opened.append(TransactionOpened(f.transaction_id, f.evse_id))
        elif isinstance(f, TransactionEnd):
            idle.append(ConnectorIdle(f.evse_id, f.transaction_id, f.timestamp))
        elif isinstance(f, ConnectorStatus) and f.status in NOT_DELIVERING:
            idle.append(ConnectorIdle(f.evse_id, None, f.timestamp))
    if not samples:
        return [*opened, *idle]
    if not opened and not idle:
        return _readings(samples)
    return [*opened, *_readings(samples), *idle]


def _meter_facts(envelope: Envelope) -> list[Fact]:
    p = envelope.payload
    connector = p.get("connector_id")
    power = p.get("power_w")
    energy = to_decimal(p.get("energy_wh"))
    if (
        not isinstance(connector, int)
        or isinstance(connector, bool)
        or connector < 0
        or isinstance(power, bool)
        or not isinstance(power, int | float)
    ):
        raise InvalidEvent("meter reading needs connector_id (int >= 0) and power_w (number)")
    source = BILLING_METER if p.get("is_billing_meter") is True else METER
    at = envelope.measured_at
    facts: list[Fact] = [PowerReading(connector, None, at, float(power), source)]
    if energy is not None:
        facts.append(RegisterReading(connector, None, at, energy, source))
    return facts


def parse_envelope(envelope: Envelope) -> LoadEvent | None:
    """The load facts in one envelope; None when it carries none (e.g. Heartbeat)."""
    facts: list[Fact]
    if envelope.kind == Kind.OCPP_CALL:
        facts = _ocpp_facts(normalized_facts(envelope))
    elif envelope.kind == Kind.METER_READING:
        facts = _meter_facts(envelope)
    elif envelope.kind == Kind.STATION_CONNECTION:
        facts = [connection_change(envelope)]
    else:
        return None
    if not facts:
        return None
    return LoadEvent(envelope.charge_point_id, envelope.measured_at, tuple(facts))


def decode_event(data: bytes | None) -> LoadEvent | None:
    """``parse_envelope(decode_envelope(data))``, faster for OCPP envelopes that carry
    normalised facts (their raw payload is only checked to be a JSON object, not
    decoded). Raises :class:`bus.envelope.EnvelopeError` and :class:`InvalidEvent`
    exactly as those two do: anything unusual takes their path.

    >>> from datetime import UTC, datetime
    >>> from bus.envelope import encode_envelope
    >>> from bus.normalized import normalize_v16
    >>> t = datetime(2026, 1, 5, 10, tzinfo=UTC)
    >>> payload = {"connectorId": 2, "meterValue": [{"timestamp": "2026-01-05T10:00:00Z",
    ...     "sampledValue": [{"value": "7.4", "unit": "kW", "measurand": POWER}]}]}
    >>> env = Envelope(message_id="m1", charge_point_id="CP1", received_at=t,
    ...     measured_at=t, kind=Kind.OCPP_CALL, ocpp_version="1.6", action="MeterValues",
    ...     payload=payload, normalized=normalize_v16("CP1", "MeterValues", payload, None, t))
    >>> event = decode_event(encode_envelope(env))
    >>> event == parse_envelope(env), [(f.connector_id, f.power_w) for f in event.facts]
    (True, [(2, 7400.0)])
    """
    env = decode_facts_envelope(data)
    if env is None or env.normalized is None:
        return parse_envelope(decode_envelope(data))  # raises the EnvelopeError, if any
    found = _ocpp_facts(env.normalized)
    if not found:
        return None
    return LoadEvent(env.charge_point_id, env.measured_at, tuple(found))
