"""OCPP measurands, phases and units: the one place that turns a sampled value into
Wh or W.

Stations write units as OCPP spells them (``Wh``, ``kWh``, ``W``, ``kW``) with a
power-of-ten ``multiplier``; some vary the case or add spaces. The conversions are
exact (Decimal) and cached per (unit, multiplier), since every meter sample of every
flow goes through them.

>>> to_wh(Decimal("12.5"), "kWh", 0), to_wh(Decimal("125"), "Wh", 2), to_wh(Decimal(1), "W", 0)
(Decimal('12500.0'), Decimal('12500'), None)
>>> to_w(Decimal("3.6"), "kW", 0), to_w(Decimal("36"), "W", 2), to_w(Decimal(7), "", 0)
(Decimal('3600.0'), Decimal('3600'), Decimal('7'))
>>> phase_of("L2-N"), phase_of("L3"), phase_of("L1-L2"), phase_of(None)
('L2', 'L3', None, None)
"""

from __future__ import annotations

import functools
from decimal import Decimal

ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
POWER_OFFERED = "Power.Offered"
CURRENT = "Current.Import"
VOLTAGE = "Voltage"
TEMPERATURE = "Temperature"
SOC = "SoC"

# Where a value was measured (OCPP Location; absent means Outlet) and why it was
# sampled (ReadingContext; absent means Sample.Periodic).
OUTLET = "Outlet"
CABLE = "Cable"
EV = "EV"
SAMPLE_PERIODIC = "Sample.Periodic"
TRANSACTION_BEGIN = "Transaction.Begin"
TRANSACTION_END = "Transaction.End"

PHASES = ("L1", "L2", "L3")
# A phase-to-neutral value belongs to its line; line-to-line values (L1-L2) to none.
_PHASE_OF = {"L1": "L1", "L2": "L2", "L3": "L3", "L1-N": "L1", "L2-N": "L2", "L3-N": "L3"}

_ENERGY_FACTORS = {"wh": Decimal(1), "kwh": Decimal(1000)}
# OCPP's default unit for power measurands is W: an empty unit means W.
_POWER_FACTORS = {"w": Decimal(1), "": Decimal(1), "kw": Decimal(1000)}


def phase_of(phase: str | None) -> str | None:
    """The line (L1, L2, L3) a sampled phase belongs to; None for none or line-to-line."""
    return _PHASE_OF.get(phase or "")


@functools.lru_cache(maxsize=1024)
def _factor(unit: str, multiplier: int, power: bool) -> Decimal | None:
    factor = (_POWER_FACTORS if power else _ENERGY_FACTORS).get(unit.strip().lower())
    if factor is None:
        return None
    return factor if multiplier == 0 else factor * Decimal(10) ** multiplier


def energy_factor(unit: str, multiplier: int) -> Decimal | None:
    """What an energy value in ``unit`` times 10^``multiplier`` is multiplied by to be
    in Wh; None for a unit that is not energy."""
    return _factor(unit, multiplier, False)


def to_wh(value: Decimal, unit: str, multiplier: int) -> Decimal | None:
    """An energy reading in Wh (``unit`` Wh or kWh, times 10^multiplier); None otherwise."""
    factor = _factor(unit, multiplier, False)
    return None if factor is None else value * factor


def to_w(value: Decimal, unit: str, multiplier: int) -> Decimal | None:
    """A power reading in W (``unit`` W, kW or empty, times 10^multiplier); None otherwise."""
    factor = _factor(unit, multiplier, True)
    return None if factor is None else value * factor
