"""What German calibration law (Eichrecht) asks of a bill whose meter signed its values.

A certified meter signs its start and end registers and the driver checks the invoice
against them, so:

- the billed energy is signed End - signed Start (:func:`signed_span_wh`), never a
  figure "fixed" with another meter's: :func:`signed_energy_decision` bills a session
  only when its energy is that span, or when the station's own register is (then the
  span is billed and a billing smart meter the sessions flow chose is overridden);
  otherwise the session is held for a clerk, naming both figures;
- the station's clock is not certified for tariffing, so a CDR priced with TIME or
  PARKING_TIME components on such a station says so (:func:`compliance_warnings`,
  chargeflow's own CDR field ``compliance_warnings``). chargeflow does not know which
  stations have a certified clock: every station whose meter signs is flagged.

The span is read from the plain registers sent with the signed
``Energy.Active.Import.Register`` values (the first Start, the last End); without both
(no End yet, no plain register, not an energy unit) there is nothing to check. The OCMF
payload is not parsed for its reading.

>>> from datetime import UTC, datetime
>>> at = datetime(2026, 1, 5, 10, tzinfo=UTC)
>>> begin = SignedValue(at, "Transaction.Begin", "OCMF|a|b", "OCMF",
...     plain_value=Decimal("1000.000"), unit="kWh")
>>> end = SignedValue(at, "Transaction.End", "OCMF|c|d", "OCMF",
...     plain_value=Decimal("1021.5"), unit="kWh")
>>> signed_span_wh([end, begin])
21500
>>> signed_span_wh([begin]) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from billing.signed_data import SignedValue, nature
from billing.tariffs import Tariff, TariffDimensionType
from bus.measurands import ENERGY_REGISTER, to_wh
from bus.sessions import SessionClosed

_TIME_DIMENSIONS = (TariffDimensionType.TIME, TariffDimensionType.PARKING_TIME)


def _register_wh(value: SignedValue) -> Decimal | None:
    if value.plain_value is None or value.measurand != ENERGY_REGISTER:
        return None
    # OCPP's default unit of an energy register is Wh.
    return to_wh(value.plain_value, value.unit or "Wh", value.unit_multiplier)


def signed_span_wh(values: Iterable[SignedValue]) -> int | None:
    """Signed End - signed Start in whole Wh (floored, as the sessions flow floors its
    figures); None without a signed Start and End register.

    >>> from datetime import UTC, datetime
    >>> at = datetime(2026, 1, 5, tzinfo=UTC)
    >>> signed_span_wh([SignedValue(at, "Transaction.Begin", "x", plain_value=Decimal(500)),
    ...     SignedValue(at, "Transaction.End", "y", plain_value=Decimal("1700.9"))])
    1200
    >>> signed_span_wh([SignedValue(at, "Transaction.Begin", "x"),
    ...     SignedValue(at, "Transaction.End", "y")]) is None  # no plain registers
    True
    """
    by_time = sorted(values, key=lambda v: v.measured_at)
    starts = [v for v in by_time if nature(v.context) == "Start"]
    ends = [v for v in by_time if nature(v.context) == "End"]
    if not starts or not ends:
        return None
    start, end = _register_wh(starts[0]), _register_wh(ends[-1])
    if start is None or end is None:
        return None
    return math.floor(end - start)


class SignedEnergy(StrEnum):
    UNSIGNED = "unsigned"  # no signed span: nothing to check
    AGREES = "agrees"  # the session's energy is the signed span
    STATION_REGISTER = "station_register"  # bill the station's register, the span
    HOLD = "hold"  # neither: a clerk decides


@dataclass(frozen=True)
class SignedEnergyDecision:
    outcome: SignedEnergy
    signed_span_wh: int | None = None
    reason: str | None = None  # a hold's review reason


def _figure(wh: int | None) -> str:
    return "none" if wh is None else f"{wh} Wh"


def signed_energy_decision(
    session: SessionClosed, values: Iterable[SignedValue]
) -> SignedEnergyDecision:
    """Whether the session bills its signed span (module docstring).

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 5, 10, tzinfo=UTC)
    >>> signed = [SignedValue(t, "Transaction.Begin", "x", plain_value=Decimal(500_000)),
    ...     SignedValue(t, "Transaction.End", "y", plain_value=Decimal(521_000))]
    >>> s = SessionClosed(message_id="m", session_id="s", charge_point_id="CP",
    ...     connector_id=1, transaction_id="1", started_at=t, stopped_at=t, closed_at=t,
    ...     energy_wh=21_400, energy_source="smart_meter", quality="exact",
    ...     station_energy_wh=21_000, smart_meter_energy_wh=21_400)
    >>> signed_energy_decision(s, signed).outcome
    <SignedEnergy.STATION_REGISTER: 'station_register'>
    >>> from msgspec.structs import replace
    >>> held = signed_energy_decision(replace(s, station_energy_wh=21_400), signed)
    >>> held.outcome, "21000 Wh" in held.reason, "21400 Wh (smart_meter)" in held.reason
    (<SignedEnergy.HOLD: 'hold'>, True, True)
    """
    span = signed_span_wh(values)
    if span is None:
        return SignedEnergyDecision(SignedEnergy.UNSIGNED)
    if session.energy_wh == span:
        return SignedEnergyDecision(SignedEnergy.AGREES, span)
    if session.station_energy_wh == span:
        return SignedEnergyDecision(SignedEnergy.STATION_REGISTER, span)
    source = str(session.energy_source or "no source")
    reason = (
        f"signed meter values (Eichrecht) bill {span} Wh (signed End - Start),"
        f" the session's energy is {_figure(session.energy_wh)} ({source}),"
        f" the station register {_figure(session.station_energy_wh)}"
    )
    return SignedEnergyDecision(SignedEnergy.HOLD, span, reason)


def compliance_warnings(
    tariff: Tariff, values: Sequence[SignedValue], billed_energy_wh: int
) -> list[str]:
    """What a CDR billed on a station whose meter signs its values breaks of Eichrecht:
    time-based price components (the clock is not certified), an energy that is not the
    signed span (a clerk's release or correction may bill one). No signed values: none.

    >>> from datetime import UTC, datetime
    >>> from billing.tariffs import parse_tariff
    >>> tariff = parse_tariff({"country_code": "DE", "party_id": "CFL", "id": "T",
    ...     "currency": "EUR", "last_updated": "2026-01-01T00:00:00Z", "elements": [
    ...     {"price_components": [{"type": "ENERGY", "price": "0.4", "step_size": 1},
    ...         {"type": "PARKING_TIME", "price": "6", "step_size": 60}]}]})
    >>> at = datetime(2026, 1, 5, tzinfo=UTC)
    >>> [w[:48] for w in compliance_warnings(tariff, [SignedValue(at, "Transaction.Begin",
    ...     "x")], 1000)]
    ['time-based price components (PARKING_TIME) of ta']
    >>> compliance_warnings(tariff, [], 1000)
    []
    """
    if not values:
        return []
    warnings = []
    timed = sorted(
        {
            component.type.value
            for element in tariff.elements
            for component in element.price_components
            if component.type in _TIME_DIMENSIONS
        }
    )
    if timed:
        warnings.append(
            f"time-based price components ({', '.join(timed)}) of tariff {tariff.id} billed"
            " on a station with signed (calibration-law) meter values whose clock is not"
            " certified for tariffing"
        )
    span = signed_span_wh(values)
    if span is not None and span != billed_energy_wh:
        warnings.append(
            f"billed energy {billed_energy_wh} Wh is not the signed span {span} Wh"
            " (signed End - Start)"
        )
    return warnings
