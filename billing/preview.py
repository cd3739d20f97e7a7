"""Price a session under a tariff from their JSON, as operators test tariffs:
``chargeflow tariff price`` and ``POST /v1/tariffs/preview`` both call :func:`preview`.

>>> cdr = preview(
...     {"country_code": "NL", "party_id": "CFL", "id": "T1", "currency": "EUR",
...      "last_updated": "2026-01-01T00:00:00Z",
...      "elements": [{"price_components": [
...          {"type": "ENERGY", "price": "0.30", "vat": 21, "step_size": 1}]}]},
...     {"time_zone": "Europe/Amsterdam",
...      "start": "2026-03-01T10:00:00Z", "stop": "2026-03-01T11:00:00Z",
...      "readings": [{"time": "2026-03-01T10:00:00Z", "energy_wh": 0, "power_w": 7400},
...                   {"time": "2026-03-01T11:00:00Z", "energy_wh": 7400, "power_w": 0}]})
>>> cdr["total_cost"], cdr["total_energy"]
({'excl_vat': Decimal('2.22'), 'incl_vat': Decimal('2.69')}, Decimal('7.4'))
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec

from billing.cost import price_session
from billing.session_usage import UsageError, parse_usage
from billing.tariffs import TariffError, parse_tariff

_ENCODER = msgspec.json.Encoder(decimal_format="number")


class PreviewError(ValueError):
    """The tariff or the session cannot be priced; the message says which and why."""


def decode_json(raw: bytes | str, what: str) -> Any:
    """JSON with exact numbers (Decimal, never float)."""
    try:
        return json.loads(raw, parse_float=Decimal)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PreviewError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise PreviewError(f"{what} is nested too deeply") from None


def preview(tariff_data: object, session_data: object) -> dict[str, Any]:
    """The CDR (:meth:`billing.priced.PricedSession.to_cdr`) of the session under the
    tariff; :class:`PreviewError` when either is invalid or the tariff is not in force
    when the session starts."""
    try:
        tariff = parse_tariff(tariff_data)
    except TariffError as exc:
        raise PreviewError(str(exc)) from None
    try:
        usage = parse_usage(session_data)
    except UsageError as exc:
        raise PreviewError(f"invalid session: {exc}") from None
    if not tariff.valid_at(usage.start):
        raise PreviewError(
            "the tariff is not in force when the session starts "
            "(its start_date_time/end_date_time exclude it)"
        )
    return price_session(tariff, usage).to_cdr()


def encode_cdr(cdr: dict[str, Any]) -> bytes:
    """The CDR as JSON, amounts and volumes as JSON numbers written exactly."""
    return _ENCODER.encode(cdr)
