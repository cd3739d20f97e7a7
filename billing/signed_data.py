"""A session's signed meter values (Eichrecht) as the OCPI 2.2.1 CDR ``signed_data``.

OCPI 2.2.1 ``SignedData``: ``encoding_method`` (e.g. ``OCMF``), ``encoding_method_version``?,
``public_key``?, ``signed_values`` (1..*: ``nature``, ``plain_data``, ``signed_data``),
``url``?. The mapping:

- ``nature`` from the OCPP reading context: ``Transaction.Begin`` -> ``Start``,
  ``Transaction.End`` -> ``End``, any other -> ``Intermediate``; values ordered Start,
  then by time, End last.
- ``signed_data``: exactly what the station sent (an OCMF string, base64...), never
  re-encoded or cut: a verifier checks the signature over those bytes (OCPI calls it a
  base64 blob; an OCMF string from a 1.6 station is kept as it is all the same).
- ``plain_data``: the plain register the station sent with it (``"12.345 kWh"``), else the
  payload section of an OCMF string (``OCMF|<payload>|<signature>``), else the signed data
  itself (the field is required, and that is what a verifier decodes).
- One ``SignedData`` has one encoding: that of the first value which names one
  (``UNKNOWN`` when none does); values of another named encoding are left out. The public
  key is the first one a kept value carries. No ``encoding_method_version`` (OCMF's
  ``FV`` is a string like ``"1.0"``, OCPI's field an integer) and no ``url``.

>>> from datetime import UTC, datetime
>>> at = datetime(2026, 1, 5, 10, tzinfo=UTC)
>>> begin = SignedValue(at, "Transaction.Begin", 'OCMF|{"RD":[{"RV":1.2}]}|{"SD":"30"}', "OCMF")
>>> end = SignedValue(at.replace(hour=11), "Transaction.End", "OCMF|{}|{}", "OCMF",
...     public_key="PK", plain_value=Decimal("13.5"), unit="kWh")
>>> data = ocpi_signed_data([end, begin])
>>> data["encoding_method"], data["public_key"]
('OCMF', 'PK')
>>> [(v["nature"], v["plain_data"]) for v in data["signed_values"]]
[('Start', '{"RD":[{"RV":1.2}]}'), ('End', '13.5 kWh')]
>>> ocpi_signed_data([]) is None
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from bus.measurands import ENERGY_REGISTER

OCMF = "OCMF"
UNKNOWN_ENCODING = "UNKNOWN"
_NATURES = {"Transaction.Begin": "Start", "Transaction.End": "End"}
_ORDER = {"Start": 0, "Intermediate": 1, "End": 2}


@dataclass(frozen=True)
class SignedValue:
    """One stored signed meter value of a session."""

    measured_at: datetime
    context: str  # the OCPP reading context (Transaction.Begin, Sample.Periodic...)
    signed_data: str  # as the station sent it
    encoding_method: str | None = None
    public_key: str | None = None
    plain_value: Decimal | None = None  # the plain register, when sent with it
    unit: str = ""
    unit_multiplier: int = 0
    measurand: str = ENERGY_REGISTER


def nature(context: str) -> str:
    """The OCPI ``nature`` of a value read in an OCPP ``context``.

    >>> nature("Transaction.Begin"), nature("Transaction.End"), nature("Sample.Periodic")
    ('Start', 'End', 'Intermediate')
    """
    return _NATURES.get(context, "Intermediate")


def plain_data(value: SignedValue) -> str:
    """The value in plain text (module docstring), the multiplier applied.

    >>> at = datetime(2026, 1, 5)
    >>> plain_data(SignedValue(at, "", "x", plain_value=Decimal("12.5"), unit="Wh",
    ...     unit_multiplier=3))
    '12500 Wh'
    >>> plain_data(SignedValue(at, "", 'OCMF|{"FV":"1.0"}|{"SD":"AB"}'))
    '{"FV":"1.0"}'
    >>> plain_data(SignedValue(at, "", "A1B2C3"))
    'A1B2C3'
    """
    if value.plain_value is not None:
        number = value.plain_value.scaleb(value.unit_multiplier)
        return f"{number:f} {value.unit}".strip()
    if value.signed_data.startswith(OCMF + "|"):
        sections = value.signed_data.split("|")
        if len(sections) >= 3:
            return "|".join(sections[1:-1])  # the payload, whatever a '|' in it
    return value.signed_data


def ocpi_signed_data(values: Iterable[SignedValue]) -> dict[str, Any] | None:
    """The CDR's ``signed_data`` of a session's signed values; None without any."""
    ordered = sorted(values, key=lambda v: (_ORDER[nature(v.context)], v.measured_at))
    if not ordered:
        return None
    encoding = next((v.encoding_method for v in ordered if v.encoding_method), None)
    kept = [v for v in ordered if v.encoding_method in (None, encoding)]
    out: dict[str, Any] = {"encoding_method": encoding or UNKNOWN_ENCODING}
    public_key = next((v.public_key for v in kept if v.public_key), None)
    if public_key is not None:
        out["public_key"] = public_key
    out["signed_values"] = [
        {"nature": nature(v.context), "plain_data": plain_data(v), "signed_data": v.signed_data}
        for v in kept
    ]
    return out
